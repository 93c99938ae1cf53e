import numpy as np
import pytest

from sctransfer.kernels._harmony import harmony, harmony_transform


def shifted_batches(n_per=200, seed=0):
    """Three well separated types in two batches; the second batch is shifted by a constant offset."""
    rng = np.random.default_rng(seed)
    centres = np.array([[6.0, 0, 0, 0, 0], [0, 6.0, 0, 0, 0], [0, 0, 6.0, 0, 0]])
    Z, types, batches = [], [], []
    for b, offset in enumerate([np.zeros(5), np.array([0, 0, 0, 3.0, 3.0])]):
        for t, centre in enumerate(centres):
            Z.append(centre + offset + rng.normal(scale=0.5, size=(n_per, 5)))
            types += [t] * n_per
            batches += [b] * n_per
    return np.vstack(Z), np.asarray(types), np.asarray(batches)


def type_gap(Z, types, batches):
    """Mean distance between the two batches' means of each type."""
    return np.mean([
        np.linalg.norm(Z[(types == t) & (batches == 0)].mean(0) - Z[(types == t) & (batches == 1)].mean(0))
        for t in np.unique(types)
    ])  # fmt: skip


def test_harmony_removes_a_batch_shift_and_keeps_the_types():
    Z, types, batches = shifted_batches()
    fit = harmony(Z, batches, random_state=0)
    assert type_gap(fit.corrected, types, batches) < 0.25 * type_gap(Z, types, batches)
    # the types stay apart: every cell's type is its nearest type mean's
    means = np.stack([fit.corrected[types == t].mean(0) for t in range(3)])
    nearest = np.argmin(((fit.corrected[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == types).mean() > 0.99
    assert fit.terms.shape == (fit.centroids.shape[0], 2, 5) and 1 <= fit.n_iter <= 10


def test_harmony_is_deterministic_under_a_seed():
    Z, _, batches = shifted_batches()
    a = harmony(Z, batches, random_state=3)
    b = harmony(Z, batches, random_state=3)
    np.testing.assert_array_equal(a.corrected, b.corrected)


def test_transform_corrects_new_cells_like_the_fit():
    Z, _, batches = shifted_batches()
    fit = harmony(Z, batches, random_state=0)
    new, new_types, new_batches = shifted_batches(n_per=50, seed=1)
    mapped = harmony_transform(new, new_batches, fit.centroids, fit.terms, fit.sigma)
    assert type_gap(mapped, new_types, new_batches) < 0.25 * type_gap(new, new_types, new_batches)
    # on the fitted cells the transform is close to the fit (it lacks only the diversity term)
    again = harmony_transform(Z, batches, fit.centroids, fit.terms, fit.sigma)
    assert np.abs(again - fit.corrected).mean() < 0.1 * np.abs(Z - fit.corrected).mean() + 1e-12


@pytest.mark.parametrize("theta", [0.0, 2.0])
def test_one_cluster_is_a_plain_mean_shift(theta):
    Z, _, batches = shifted_batches()
    fit = harmony(Z, batches, n_clusters=1, theta=theta, ridge=0.0, random_state=0)
    # with one cluster and no ridge the batch terms remove each batch's mean offset exactly
    gap = fit.corrected[batches == 0].mean(0) - fit.corrected[batches == 1].mean(0)
    np.testing.assert_allclose(gap, 0.0, atol=1e-8)
