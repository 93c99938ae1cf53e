"""Names of the keys sctransfer writes into AnnData objects (one place for each name)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelTransferKeys:
    """Keys written by :func:`sctransfer.tl.label_transfer` for a given ``key_added``."""

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
        """``.obsm`` key holding per-class vote fractions (a DataFrame, one column per class)."""
        return f"{self.key_added}_proba"

    @property
    def uns(self) -> str:
        """``.uns`` key holding the parameters and run information."""
        return self.key_added


#: ``.obsm`` key of the joint embedding written by the ``knn`` label-transfer method.
JOINT_EMBEDDING_KEY = "X_sct_joint"
#: Label written for cells that a method declines to classify.
UNKNOWN_LABEL = "unknown"
