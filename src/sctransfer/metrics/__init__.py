"""Array-level metrics (label transfer; alignment and prediction metrics join as methods land)."""

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
    "balanced_accuracy",
    "confusion_matrix",
    "evaluable_labels",
    "label_transfer_report",
    "macro_f1",
    "per_class_report",
]
