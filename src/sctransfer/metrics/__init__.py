"""Array-level metrics (label transfer; alignment and prediction metrics join as methods land)."""

from ._alignment import (
    alignment_umap,
    batch_mixing_entropy,
    divergence_score,
    entropy_score,
    knn_kl_divergence,
    knn_purity,
    silhouette_score,
)
from ._label_transfer import (
    LabelTransferReport,
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    evaluable_labels,
    label_transfer_report,
    macro_f1,
    per_class_report,
)

__all__ = [
    "LabelTransferReport",
    "accuracy",
    "alignment_umap",
    "balanced_accuracy",
    "batch_mixing_entropy",
    "confusion_matrix",
    "divergence_score",
    "entropy_score",
    "evaluable_labels",
    "knn_kl_divergence",
    "knn_purity",
    "label_transfer_report",
    "macro_f1",
    "per_class_report",
    "silhouette_score",
]
