"""Tools: the user verbs, in place on AnnData/MuData."""

from ._bermuda import bermuda, metaneighbor
from ._castle import castle
from ._label_transfer import label_transfer
from ._trvae import trvae

__all__ = ["bermuda", "castle", "label_transfer", "metaneighbor", "trvae"]
