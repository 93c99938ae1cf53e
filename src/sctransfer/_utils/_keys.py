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
#: Label CaSTLe writes for cells that no one-vs-rest classifier claims (as its reference scripts do).
NOT_CLASSIFIED_LABEL = "Not Classified"
#: Labels that mean "declined to classify" (the second is what CaSTLe's reference scripts write);
#: metrics treat them as rejections, never as classes.
REJECTION_LABELS = frozenset({UNKNOWN_LABEL, NOT_CLASSIFIED_LABEL})


@dataclass(frozen=True)
class CaSTLeKeys(LabelTransferKeys):
    """Keys written by :func:`sctransfer.tl.castle` for a given ``key_added`` (default ``"castle"``).

    The label goes to ``.obs[f"{key_added}_label"]``; the confidence, probabilities and ``.uns`` entry
    follow :class:`LabelTransferKeys`.
    """

    key_added: str = "castle"

    @property
    def label(self) -> str:
        """``.obs`` column holding the predicted label."""
        return f"{self.key_added}_label"


#: ``.uns`` key of the parameters written by :func:`sctransfer.pp.gene_activity`.
GENE_ACTIVITY_KEY = "gene_activity"


#: ``.obsm`` key of the latent representation written by :func:`sctransfer.tl.trvae` (its ``key_added``).
TRVAE_EMBEDDING_KEY = "X_trvae"


def embedding_uns_key(key_added: str) -> str:
    """``.uns`` key of an embedding's parameters: ``key_added`` without its ``"X_"`` prefix (as scanpy)."""
    return key_added[2:] if key_added.startswith("X_") and len(key_added) > 2 else key_added
