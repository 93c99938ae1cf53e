"""Names of the keys sctransfer writes into AnnData objects (one place for each name)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelTransferKeys:
    """Keys written by :func:`sctransfer.tl.label_transfer` (all methods) and :func:`sctransfer.tl.castle`."""

    key_added: str = "sct_label"

    @property
    def label(self) -> str:
        """``.obs`` column holding the transferred label."""
        return self.key_added

    @property
    def confidence(self) -> str:
        """``.obs`` column holding the per-cell confidence."""
        return f"{self.key_added}_confidence"

    @property
    def proba(self) -> str:
        """``.obsm`` key holding per-class probabilities (columns in ``.uns[key]["classes"]`` order)."""
        return f"{self.key_added}_proba"

    @property
    def embedding(self) -> str:
        """``.obsm`` key holding the joint embedding (query and reference)."""
        return f"X_{self.key_added}"

    @property
    def uns(self) -> str:
        """``.uns`` key holding the parameters and run information."""
        return self.key_added

    def extra(self, suffix: str) -> str:
        """``.obs`` column of a method's further per-cell value (for example ``"similarity"``)."""
        return f"{self.key_added}_{suffix}"


#: Label written for cells that a method declines to classify.
UNKNOWN_LABEL = "unknown"
#: Label :meth:`sctransfer.models.CaSTLe.predict` writes for cells that no one-vs-rest classifier claims
#: (as CaSTLe's reference scripts do); :func:`sctransfer.tl.castle` writes ``"unknown"``.
NOT_CLASSIFIED_LABEL = "Not Classified"
#: Labels that mean "declined to classify" (the second is what CaSTLe's model and reference scripts
#: write); metrics and plots treat them as rejections, never as classes.
REJECTION_LABELS = frozenset({UNKNOWN_LABEL, NOT_CLASSIFIED_LABEL})


#: ``.uns`` key of the parameters written by :func:`sctransfer.pp.gene_activity`.
GENE_ACTIVITY_KEY = "gene_activity"


#: default ``key_added`` of :func:`sctransfer.tl.trvae` (``.uns["trvae"]``, ``.obsm["X_trvae"]``).
TRVAE_KEY = "trvae"


def embedding_uns_key(key_added: str) -> str:
    """``.uns`` key of an embedding's parameters: ``key_added`` without its ``"X_"`` prefix (as scanpy)."""
    return key_added[2:] if key_added.startswith("X_") and len(key_added) > 2 else key_added
