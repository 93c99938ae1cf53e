"""The ensemble label-transfer model (the default method of :func:`sctransfer.tl.label_transfer`)."""

from ._model import EnsembleSettings, EnsembleTransfer

__all__ = ["EnsembleSettings", "EnsembleTransfer"]
