"""Array-level kernels (numba / BLAS) with no AnnData: nearest neighbours, votes and MetaNeighbor."""

from ._knn import Neighbors, knn, knn_vote
from ._metaneighbor import metaneighbor, select_cluster_pairs

__all__: list[str] = ["Neighbors", "knn", "knn_vote", "metaneighbor", "select_cluster_pairs"]
