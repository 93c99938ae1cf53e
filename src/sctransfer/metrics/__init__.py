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
from ._prediction import PredictionR2, condition_degs, prediction_r2, r2_mean, r2_var

__all__ = [
    "LabelTransferReport",
    "PredictionR2",
    "accuracy",
    "alignment_umap",
    "balanced_accuracy",
    "batch_mixing_entropy",
    "condition_degs",
    "confusion_matrix",
    "divergence_score",
    "entropy_score",
    "evaluable_labels",
    "knn_kl_divergence",
    "knn_purity",
    "label_transfer_report",
    "macro_f1",
    "per_class_report",
    "prediction_r2",
    "r2_mean",
    "r2_var",
    "silhouette_score",
]
