"""trVAE: conditional VAE with MMD for condition transfer (perturbation prediction) and reference mapping.

The settings (:class:`TRVAEConfig`, :data:`PRESETS`) load without torch; the model loads on first access.
"""

from typing import TYPE_CHECKING

from ..._utils._lazy import lazy_attributes
from ._config import PRESETS, TRVAEConfig, TRVAEPreset

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._model import TRVAE
    from ._module import TRVAEModule, condition_mmd

__all__ = ["PRESETS", "TRVAE", "TRVAEConfig", "TRVAEModule", "TRVAEPreset", "condition_mmd"]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "TRVAE": "._model:TRVAE",
        "TRVAEModule": "._module:TRVAEModule",
        "condition_mmd": "._module:condition_mmd",
    },
    globals(),
)
