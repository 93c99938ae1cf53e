"""Array-level kernels (numba / BLAS) with no AnnData: nearest neighbours, votes, MetaNeighbor and MMD.

The torch MMD loads on first access, so that ``import sctransfer`` does not import torch.
"""

from typing import TYPE_CHECKING

from .._utils._lazy import lazy_attributes
from ._knn import AUTO_EXACT_MAX_PAIRS, TARGET_RECALL, Neighbors, knn, knn_vote
from ._metaneighbor import metaneighbor, select_cluster_pairs

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._mmd import mmd2, multiscale_rbf

__all__: list[str] = [
    "AUTO_EXACT_MAX_PAIRS",
    "TARGET_RECALL",
    "Neighbors",
    "knn",
    "knn_vote",
    "metaneighbor",
    "mmd2",
    "multiscale_rbf",
    "select_cluster_pairs",
]

__getattr__, __dir__ = lazy_attributes(
    __name__, {"mmd2": "._mmd:mmd2", "multiscale_rbf": "._mmd:multiscale_rbf"}, globals()
)
