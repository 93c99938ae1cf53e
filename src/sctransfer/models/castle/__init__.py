"""CaSTLe: cross-dataset cell-type classification with discretised genes and XGBoost."""

from ._model import CaSTLe
from ._settings import CaSTLeSettings

__all__ = ["CaSTLe", "CaSTLeSettings"]
