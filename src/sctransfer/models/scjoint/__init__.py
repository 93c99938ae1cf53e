"""scJoint: RNA -> ATAC label transfer by co-training one encoder on both modalities.

The settings (:class:`SCJointConfig`, :data:`PRESETS`) load without torch; the model loads on first access.
"""

from typing import TYPE_CHECKING

from ..._utils._lazy import lazy_attributes
from ._config import PRESETS, SCJointConfig, SCJointPreset

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._model import SCJoint
    from ._module import SCJointModule

__all__ = ["PRESETS", "SCJoint", "SCJointConfig", "SCJointModule", "SCJointPreset"]

__getattr__, __dir__ = lazy_attributes(
    __name__, {"SCJoint": "._model:SCJoint", "SCJointModule": "._module:SCJointModule"}, globals()
)
