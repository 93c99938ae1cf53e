"""trVAE: conditional VAE with MMD for condition transfer (perturbation prediction) and reference mapping."""

from ._model import PRESETS, TRVAE, TRVAEConfig
from ._module import TRVAEModule, condition_mmd

__all__ = ["PRESETS", "TRVAE", "TRVAEConfig", "TRVAEModule", "condition_mmd"]
