"""Array-level kernels (numba / BLAS) with no AnnData: nearest neighbours, votes, MetaNeighbor and MMD."""

from ._knn import Neighbors, knn, knn_vote
from ._metaneighbor import metaneighbor, select_cluster_pairs
from ._mmd import mmd2, multiscale_rbf

__all__: list[str] = [
    "Neighbors",
    "knn",
    "knn_vote",
    "metaneighbor",
    "mmd2",
    "multiscale_rbf",
    "select_cluster_pairs",
]
