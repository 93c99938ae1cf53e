"""Label-transfer metrics: accuracy, macro-F1, balanced accuracy, per-class report and confusion matrix.

All functions take label arrays. Query cells whose true type is absent from the reference cannot be
predicted correctly by any transfer method, so when ``reference_labels`` is given they are left out of
every score and counted instead (``n_excluded``). Cells without a true label (NaN/None) are left out too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._utils._keys import REJECTION_LABELS

Labels = Iterable[Any] | np.ndarray | pd.Series


@dataclass
class EvaluableLabels:
    """True and predicted labels of the cells that can be scored, plus what was left out."""

    y_true: np.ndarray
    y_pred: np.ndarray
    n_cells: int
    n_missing_truth: int
    n_excluded: int
    excluded_types: list[str] = field(default_factory=list)


def _as_str_array(values: Labels) -> tuple[np.ndarray, np.ndarray]:
    series = pd.Series(list(values) if not isinstance(values, pd.Series | np.ndarray) else values)
    missing = series.isna().to_numpy()
    return series.astype(str).to_numpy(dtype=object), missing


def evaluable_labels(
    y_true: Labels, y_pred: Labels, *, reference_labels: Labels | None = None
) -> EvaluableLabels:
    """Keep the cells that can be scored.

    Parameters
    ----------
    y_true
        True label per query cell; missing values (NaN/None) are left out.
    y_pred
        Predicted label per query cell (may contain the rejection label ``"unknown"``).
    reference_labels
        Labels (or the set of classes) of the reference. Query cells whose true type is not among them are
        left out and counted in ``n_excluded``. ``None`` keeps every cell.

    Returns
    -------
    The filtered labels as strings with the counts of what was left out.
    """
    true, missing = _as_str_array(y_true)
    pred, _ = _as_str_array(y_pred)
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in length ({true.size} vs {pred.size}).")
    keep = ~missing
    excluded_types: list[str] = []
    n_excluded = 0
    if reference_labels is not None:
        ref, ref_missing = _as_str_array(reference_labels)
        ref_classes = set(ref[~ref_missing])
        absent = keep & ~np.isin(true, list(ref_classes))
        n_excluded = int(absent.sum())
        excluded_types = sorted(set(true[absent]))
        keep &= ~absent
    return EvaluableLabels(
        y_true=true[keep],
        y_pred=pred[keep],
        n_cells=int(true.size),
        n_missing_truth=int(missing.sum()),
        n_excluded=n_excluded,
        excluded_types=excluded_types,
    )


def confusion_matrix(
    y_true: Labels, y_pred: Labels, *, reference_labels: Labels | None = None, normalize: bool = False
) -> pd.DataFrame:
    """Confusion matrix with true types as rows and predicted labels as columns.

    Parameters
    ----------
    y_true, y_pred, reference_labels
        As in :func:`evaluable_labels`.
    normalize
        Divide each row by its total (rows then sum to 1).

    Returns
    -------
    A DataFrame of counts (or row fractions). Rows are the sorted true types; columns are the union of
    true types and predicted labels, sorted, with the rejection labels (``"unknown"``,
    ``"Not Classified"``) last when present.
    """
    ev = evaluable_labels(y_true, y_pred, reference_labels=reference_labels)
    return _confusion(ev.y_true, ev.y_pred, normalize=normalize)


def _confusion(true: np.ndarray, pred: np.ndarray, *, normalize: bool = False) -> pd.DataFrame:
    rows = sorted(set(true))
    cols = sorted((set(true) | set(pred)) - REJECTION_LABELS)
    cols += sorted(REJECTION_LABELS & set(pred))
    r = pd.Categorical(true, categories=rows).codes
    c = pd.Categorical(pred, categories=cols).codes
    counts = np.zeros((len(rows), len(cols)), dtype=np.int64)
    np.add.at(counts, (r, c), 1)
    df = pd.DataFrame(counts, index=pd.Index(rows, name="true"), columns=pd.Index(cols, name="predicted"))
    if normalize:
        totals = df.sum(axis=1).replace(0, 1)
        df = df.div(totals, axis=0)
    return df


def _per_class(true: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    classes = sorted((set(true) | set(pred)) - REJECTION_LABELS)
    rows = []
    for cls in classes:
        is_true = true == cls
        is_pred = pred == cls
        tp = int(np.sum(is_true & is_pred))
        support = int(is_true.sum())
        n_pred = int(is_pred.sum())
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append((cls, precision, recall, f1, support, n_pred))
    return pd.DataFrame(
        rows, columns=["label", "precision", "recall", "f1", "support", "n_predicted"]
    ).set_index("label")


def accuracy(y_true: Labels, y_pred: Labels, *, reference_labels: Labels | None = None) -> float:
    """Fraction of scored cells whose predicted label equals the true one (rejected cells count as wrong)."""
    ev = evaluable_labels(y_true, y_pred, reference_labels=reference_labels)
    return float(np.mean(ev.y_true == ev.y_pred)) if ev.y_true.size else float("nan")


def macro_f1(y_true: Labels, y_pred: Labels, *, reference_labels: Labels | None = None) -> float:
    """Unweighted mean F1 over the classes seen in the true or predicted labels.

    The rejection labels (``"unknown"``, ``"Not Classified"``) are not classes: a rejected cell is a
    missed cell of its true type.
    This matches scikit-learn's ``f1_score(average="macro")`` when nothing is rejected.
    """
    ev = evaluable_labels(y_true, y_pred, reference_labels=reference_labels)
    if not ev.y_true.size:
        return float("nan")
    return float(_per_class(ev.y_true, ev.y_pred)["f1"].mean())


def balanced_accuracy(y_true: Labels, y_pred: Labels, *, reference_labels: Labels | None = None) -> float:
    """Mean recall over the true types present (scikit-learn's ``balanced_accuracy_score``)."""
    ev = evaluable_labels(y_true, y_pred, reference_labels=reference_labels)
    if not ev.y_true.size:
        return float("nan")
    per_class = _per_class(ev.y_true, ev.y_pred)
    return float(per_class.loc[per_class["support"] > 0, "recall"].mean())


def per_class_report(
    y_true: Labels, y_pred: Labels, *, reference_labels: Labels | None = None
) -> pd.DataFrame:
    """Precision, recall, F1, support and number of predictions per class (one row per class)."""
    ev = evaluable_labels(y_true, y_pred, reference_labels=reference_labels)
    return _per_class(ev.y_true, ev.y_pred)


@dataclass
class LabelTransferReport:
    """Scores of one label transfer; :meth:`to_dict` gives plain types for JSON or ``.uns``."""

    accuracy: float
    macro_f1: float
    balanced_accuracy: float
    n_cells: int
    n_evaluated: int
    n_excluded: int
    n_missing_truth: int
    n_rejected: int
    excluded_types: list[str]
    per_class: pd.DataFrame
    confusion: pd.DataFrame

    def to_dict(self, *, tables: bool = False) -> dict[str, Any]:
        """Plain-type dictionary; ``tables=True`` adds the per-class report as a dict of lists."""
        out: dict[str, Any] = {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "balanced_accuracy": self.balanced_accuracy,
            "n_cells": self.n_cells,
            "n_evaluated": self.n_evaluated,
            "n_excluded": self.n_excluded,
            "n_missing_truth": self.n_missing_truth,
            "n_rejected": self.n_rejected,
            "excluded_types": list(self.excluded_types),
        }
        if tables:
            pc = self.per_class.reset_index()
            out["per_class"] = {col: pc[col].tolist() for col in pc.columns}
        return out

    def __str__(self) -> str:
        lines = [
            f"accuracy          {self.accuracy:.3f}",
            f"macro-F1          {self.macro_f1:.3f}",
            f"balanced accuracy {self.balanced_accuracy:.3f}",
            f"cells scored      {self.n_evaluated} of {self.n_cells}"
            f" ({self.n_excluded} with a type absent from the reference, {self.n_missing_truth} unlabelled,"
            f" {self.n_rejected} rejected)",
        ]
        return "\n".join(lines)


def label_transfer_report(
    y_true: Labels, y_pred: Labels, *, reference_labels: Labels | None = None
) -> LabelTransferReport:
    """All label-transfer scores at once.

    Parameters
    ----------
    y_true
        True label per query cell; missing values are left out.
    y_pred
        Predicted label per query cell.
    reference_labels
        Labels of the reference; query cells of a type absent from it are left out and counted.

    Returns
    -------
    A :class:`LabelTransferReport` with accuracy, macro-F1, balanced accuracy, the per-class table, the
    confusion matrix and the counts of cells left out or rejected.
    """
    ev = evaluable_labels(y_true, y_pred, reference_labels=reference_labels)
    if ev.y_true.size:
        per_class = _per_class(ev.y_true, ev.y_pred)
        acc = float(np.mean(ev.y_true == ev.y_pred))
        f1 = float(per_class["f1"].mean())
        bacc = float(per_class.loc[per_class["support"] > 0, "recall"].mean())
    else:
        per_class = _per_class(ev.y_true, ev.y_pred)
        acc = f1 = bacc = float("nan")
    return LabelTransferReport(
        accuracy=acc,
        macro_f1=f1,
        balanced_accuracy=bacc,
        n_cells=ev.n_cells,
        n_evaluated=int(ev.y_true.size),
        n_excluded=ev.n_excluded,
        n_missing_truth=ev.n_missing_truth,
        n_rejected=int(np.isin(ev.y_pred, list(REJECTION_LABELS)).sum()),
        excluded_types=ev.excluded_types,
        per_class=per_class,
        confusion=_confusion(ev.y_true, ev.y_pred),
    )
