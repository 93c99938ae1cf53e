"""Tools: the user verbs, in place on AnnData/MuData."""

from ._castle import castle
from ._label_transfer import label_transfer

__all__ = ["castle", "label_transfer"]
