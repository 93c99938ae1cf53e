"""Preprocessing: AnnData -> AnnData transformations (shared features, normalisation)."""

from ._gene_activity import gene_activity
from ._lsi import lsi

__all__: list[str] = ["gene_activity", "lsi"]
