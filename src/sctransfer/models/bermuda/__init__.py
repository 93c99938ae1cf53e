"""BERMUDA: batch alignment with an autoencoder and MMD between MetaNeighbor-matched clusters.

The settings (:class:`BERMUDAConfig`, :data:`PRESETS`) and the preprocessing load without torch; the model
loads on first access.
"""

from typing import TYPE_CHECKING

from ..._utils._lazy import lazy_attributes
from ._config import PRESETS, BERMUDAConfig, BERMUDAPreset

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._model import BERMUDA
    from ._module import BERMUDAModule

__all__ = ["BERMUDA", "PRESETS", "BERMUDAConfig", "BERMUDAModule", "BERMUDAPreset"]

__getattr__, __dir__ = lazy_attributes(
    __name__, {"BERMUDA": "._model:BERMUDA", "BERMUDAModule": "._module:BERMUDAModule"}, globals()
)
