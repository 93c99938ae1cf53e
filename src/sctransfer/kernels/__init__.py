"""Array-level kernels (numba / BLAS) with no AnnData: nearest neighbours and votes."""

from ._knn import Neighbors, knn, knn_vote

__all__: list[str] = ["Neighbors", "knn", "knn_vote"]
