import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import silhouette_score as sk_silhouette

import sctransfer as sct


def brute_kl(X, Y, k):
    n, d = X.shape
    m = Y.shape[0]
    dxx = cdist(X, X)
    np.fill_diagonal(dxx, np.inf)
    rho = np.sort(dxx, axis=1)[:, k - 1]
    nu = np.sort(cdist(X, Y), axis=1)[:, k - 1]
    return d / n * np.log(nu / rho).sum() + np.log(m / (n - 1))


def test_knn_kl_divergence_matches_brute_force():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(80, 2)), rng.normal(loc=1.0, size=(60, 2))
    assert sct.metrics.knn_kl_divergence(X, Y, k=5) == pytest.approx(brute_kl(X, Y, 5), rel=1e-10)
    with pytest.raises(ValueError, match="more than k"):
        sct.metrics.knn_kl_divergence(X[:5], Y, k=5)


def test_divergence_is_small_for_mixed_and_large_for_separated_batches():
    rng = np.random.default_rng(1)
    types = np.repeat(["a", "b"], 100)
    batches = np.tile(["x", "y"], 100)
    centers = np.where(types[:, None] == "a", 0.0, 10.0)
    mixed = centers + rng.normal(size=(200, 2))
    shifted = mixed + np.where(batches[:, None] == "y", 5.0, 0.0)
    low = sct.metrics.divergence_score(mixed, batches, types)
    high = sct.metrics.divergence_score(shifted, batches, types)
    assert low < 0.3 < high
    # no pair with 30 shared cells on each side
    assert np.isnan(sct.metrics.divergence_score(mixed[:40], batches[:40], types[:40]))


def test_entropy_score_only_looks_at_batch_specific_types():
    rng = np.random.default_rng(2)
    batches = np.repeat(["x", "y"], 100)
    types = np.array(["shared"] * 50 + ["only_x"] * 50 + ["shared"] * 100)
    X = rng.normal(size=(200, 2))
    assert sct.metrics.entropy_score(X, batches, np.full(200, "t"), k=20) == -1.0
    mixed = sct.metrics.entropy_score(X, batches, types, k=20)
    apart = X.copy()
    apart[50:100] += 100.0  # the x-only type sits far away from everything
    unmixed = sct.metrics.entropy_score(apart, batches, types, k=20)
    assert unmixed == pytest.approx(0.0, abs=1e-12)
    assert mixed > 0.4


def test_silhouette_matches_sklearn_and_reduces_dimensions():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(90, 5)) + np.repeat(np.eye(5)[:3] * 4, 30, axis=0)
    types = np.repeat(["a", "b", "c"], 30)
    assert sct.metrics.silhouette_score(X, types) == pytest.approx(sk_silhouette(X, types, metric="cosine"))
    wide = np.hstack([X, rng.normal(size=(90, 30))])
    assert np.isfinite(sct.metrics.silhouette_score(wide, types))
    with pytest.raises(ValueError, match="two cell types"):
        sct.metrics.silhouette_score(X, np.full(90, "a"))


def test_batch_mixing_entropy_and_purity_extremes():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 3))
    batches = np.tile(["x", "y"], 60)
    types = np.repeat(["a", "b"], 60)
    apart = X + np.where(batches[:, None] == "y", 100.0, 0.0)
    assert sct.metrics.batch_mixing_entropy(apart, batches, n_neighbors=10) == pytest.approx(0.0)
    assert sct.metrics.batch_mixing_entropy(X, batches, n_neighbors=10) > 0.8
    by_type = X + np.where(types[:, None] == "b", 100.0, 0.0)
    assert sct.metrics.knn_purity(by_type, types, n_neighbors=10) == pytest.approx(1.0)
    assert 0.3 < sct.metrics.knn_purity(X, types, n_neighbors=10) < 0.7
    with pytest.raises(ValueError, match="n_neighbors"):
        sct.metrics.knn_purity(X, types, n_neighbors=200)
    with pytest.raises(ValueError, match="two batches"):
        sct.metrics.batch_mixing_entropy(X, np.full(120, "x"))
    with pytest.raises(ValueError, match="one label per cell"):
        sct.metrics.knn_purity(X, types[:10])


def test_batch_mixing_entropy_is_normalised_for_more_batches():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 2))
    batches = np.tile(["a", "b", "c"], 100)
    value = sct.metrics.batch_mixing_entropy(X, batches, n_neighbors=30)
    assert 0.85 < value <= 1.0
