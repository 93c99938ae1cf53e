import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from sctransfer import metrics


def _random_labels(seed: int, n: int = 500):
    rng = np.random.default_rng(seed)
    classes = np.array(["a", "b", "c", "d"])
    y_true = classes[rng.integers(0, 4, n)]
    y_pred = np.where(rng.random(n) < 0.6, y_true, classes[rng.integers(0, 4, n)])
    return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_scikit_learn(seed):
    y_true, y_pred = _random_labels(seed)
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))
    assert metrics.macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert metrics.balanced_accuracy(y_true, y_pred) == pytest.approx(balanced_accuracy_score(y_true, y_pred))


def test_types_absent_from_reference_are_excluded_and_counted():
    y_true = np.array(["a", "a", "b", "x", "x", "y"])
    y_pred = np.array(["a", "b", "b", "a", "b", "a"])
    report = metrics.label_transfer_report(y_true, y_pred, reference_labels=["a", "b", "a"])
    assert report.n_excluded == 3
    assert report.excluded_types == ["x", "y"]
    assert report.n_evaluated == 3
    assert report.accuracy == pytest.approx(2 / 3)
    # without the reference every cell counts
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(2 / 6)


def test_missing_truth_is_left_out():
    y_true = np.array(["a", None, "b", np.nan], dtype=object)
    y_pred = np.array(["a", "a", "a", "b"])
    report = metrics.label_transfer_report(y_true, y_pred)
    assert report.n_missing_truth == 2
    assert report.n_evaluated == 2
    assert report.accuracy == pytest.approx(0.5)


def test_rejected_cells_are_misses_not_a_class():
    y_true = np.array(["a", "a", "b", "b"])
    y_pred = np.array(["a", "unknown", "b", "b"])
    report = metrics.label_transfer_report(y_true, y_pred)
    assert report.n_rejected == 1
    assert report.accuracy == pytest.approx(0.75)
    assert list(report.per_class.index) == ["a", "b"]
    # a: precision 1, recall 0.5 -> f1 2/3; b: f1 1
    assert report.macro_f1 == pytest.approx((2 / 3 + 1) / 2)
    assert report.confusion.columns[-1] == "unknown"


def test_confusion_matrix_counts_and_normalisation():
    y_true = ["a", "a", "b", "b", "b"]
    y_pred = ["a", "b", "b", "b", "c"]
    cm = metrics.confusion_matrix(y_true, y_pred)
    assert list(cm.index) == ["a", "b"]
    assert list(cm.columns) == ["a", "b", "c"]
    assert cm.loc["a", "a"] == 1 and cm.loc["a", "b"] == 1 and cm.loc["b", "c"] == 1
    assert int(cm.to_numpy().sum()) == 5
    normed = metrics.confusion_matrix(y_true, y_pred, normalize=True)
    np.testing.assert_allclose(normed.sum(axis=1).to_numpy(), 1.0)


def test_report_to_dict_is_plain():
    y_true, y_pred = _random_labels(0, 50)
    out = metrics.label_transfer_report(y_true, y_pred).to_dict(tables=True)
    assert isinstance(out["accuracy"], float)
    assert set(out["per_class"]) >= {"label", "precision", "recall", "f1", "support"}
    assert "accuracy" in str(metrics.label_transfer_report(y_true, y_pred))


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="differ in length"):
        metrics.accuracy(["a", "b"], ["a"])
