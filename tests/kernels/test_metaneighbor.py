import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import rankdata

from sctransfer.datasets._files import _fetch, is_available
from sctransfer.kernels import metaneighbor, select_cluster_pairs

FIXTURES = "bermuda_fixtures"


# ------------------------------------------------------------------------------------------------
# straightforward NumPy references
# ------------------------------------------------------------------------------------------------
def spearman_network(X):
    """Spearman correlation of all cell pairs (Pearson on average ranks; integer arithmetic first)."""
    Y = 2.0 * rankdata(X, axis=1) - (X.shape[1] + 1)  # doubled centred ranks: integers
    ss = (Y**2).sum(axis=1)
    rho = (Y @ Y.T) / np.sqrt(np.outer(ss, ss))
    np.fill_diagonal(rho, 1.0)
    return rho


def brute_auroc(scores, positive):
    """Mann-Whitney AUROC by comparing every positive with every negative (ties count one half)."""
    pos, neg = scores[positive], scores[~positive]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def reference_metaneighbor(X, batches, clusters, fast, symmetric=True):
    X = np.asarray(X.todense() if sp.issparse(X) else X, dtype=np.float64)
    labels = np.unique(clusters)
    cluster_batch = np.array([batches[clusters == c][0] for c in labels])
    onehot = (clusters[:, None] == labels[None, :]).astype(np.float64)
    rho = spearman_network(X)
    if fast:
        batch_onehot = (batches[:, None] == np.unique(batches)[None, :]).astype(np.float64)
        votes = (rho + 1.0) @ onehot
        degree = (rho + 1.0) @ batch_onehot
        study = np.searchsorted(np.unique(batches), cluster_batch)
        scores = votes / degree[:, study]
    else:
        ranks = rankdata(rho.ravel()).reshape(rho.shape)
        ranks /= ranks.max()
        scores = (ranks @ onehot) / ranks.sum(axis=1, keepdims=True)
    n = labels.size
    nv = np.zeros((n, n))
    for i, label in enumerate(labels):
        in_batch = batches == cluster_batch[i]
        for c in range(n):
            nv[i, c] = brute_auroc(scores[in_batch, c], clusters[in_batch] == label)
    if symmetric:
        nv = (nv + nv.T) / 2
    nv[cluster_batch[:, None] == cluster_batch[None, :]] = 0.0
    return nv


def random_data(seed, n_cells=90, n_genes=25, sparse=False):
    rng = np.random.default_rng(seed)
    batches = np.repeat([0, 1, 2], [30, 35, 25])
    clusters = np.concatenate([rng.integers(0, 3, 30), rng.integers(3, 6, 35), 10 + rng.integers(0, 2, 25)])
    centres = rng.gamma(1.0, 1.0, size=(12, n_genes))
    X = rng.poisson(centres[clusters] * rng.gamma(2.0, 1.0, size=(n_cells, 1)) + 0.3).astype(np.float64)
    X += rng.normal(scale=1e-3, size=X.shape) * (X > 0)  # nonzero entries continuous, zeros tie
    X[X.sum(axis=1) == 0, 0] = 1.0
    return (sp.csr_matrix(X) if sparse else X), batches, clusters


# ------------------------------------------------------------------------------------------------
# both versions against the references
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_metaneighbor_matches_numpy_reference(fast, sparse):
    X, batches, clusters = random_data(seed=1, sparse=sparse)
    X_before = X.copy()
    result = metaneighbor(X, batches, clusters, fast=fast)
    expected = reference_metaneighbor(X, batches, clusters, fast=fast)
    assert list(result.index) == [0, 1, 2, 3, 4, 5, 10, 11]
    assert list(result.columns) == list(result.index)
    np.testing.assert_allclose(result.to_numpy(), expected, atol=1e-6, rtol=0)
    # inputs unchanged
    if sparse:
        assert (X != X_before).nnz == 0
    else:
        np.testing.assert_array_equal(X, X_before)


@pytest.mark.parametrize("fast", [False, True])
def test_metaneighbor_asymmetric_and_ties(fast):
    X, batches, clusters = random_data(seed=2)
    X = np.round(X)  # many tied genes within each cell
    result = metaneighbor(X, batches, clusters, fast=fast, symmetric=False)
    expected = reference_metaneighbor(X, batches, clusters, fast=fast, symmetric=False)
    np.testing.assert_allclose(result.to_numpy(), expected, atol=1e-6, rtol=0)


def test_metaneighbor_finds_shared_cell_types():
    rng = np.random.default_rng(3)
    centres = rng.gamma(1.0, 2.0, size=(3, 40))
    types = np.tile(np.repeat([0, 1, 2], 20), 2)
    batches = np.repeat([0, 1], 60)
    clusters = types + 3 * batches
    X = rng.poisson(centres[types] + 0.2)
    X[X.sum(axis=1) == 0, 0] = 1
    for fast in (False, True):
        sim = metaneighbor(X, batches, clusters, fast=fast)
        pairs = select_cluster_pairs(sim, [0, 0, 0, 1, 1, 1], threshold=0.9)
        assert set(zip(pairs.cluster_1, pairs.cluster_2, strict=True)) == {(0, 3), (1, 4), (2, 5)}


@pytest.mark.parametrize("sparse", [False, True])
def test_fast_metaneighbor_by_chunks_matches_reference(monkeypatch, sparse):
    """Ranked 7 cells at a time (13 chunks), the fast version still matches the reference, and the
    result is that of one chunk to rounding."""
    import sctransfer.kernels._metaneighbor as mn

    X, batches, clusters = random_data(seed=6, sparse=sparse)
    whole = metaneighbor(X, batches, clusters, fast=True).to_numpy()
    monkeypatch.setattr(mn, "_CHUNK_ROWS", 7)
    chunked = metaneighbor(X, batches, clusters, fast=True).to_numpy()
    np.testing.assert_allclose(chunked, whole, atol=1e-12, rtol=0)
    np.testing.assert_allclose(chunked, reference_metaneighbor(X, batches, clusters, fast=True), atol=1e-6)


def test_fast_metaneighbor_reads_a_backed_matrix_once_by_chunks(monkeypatch, tmp_path):
    """A backed matrix is read chunk by chunk, each chunk once, never whole; the result is the in-memory one."""
    import anndata as ad

    import sctransfer._utils._validation as validation
    import sctransfer.kernels._metaneighbor as mn

    X, batches, clusters = random_data(seed=7, sparse=True)
    X = X.astype(np.float32)
    expected = metaneighbor(X, batches, clusters, fast=True).to_numpy()
    ad.AnnData(X).write_h5ad(tmp_path / "x.h5ad")
    backed = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
    reads = []
    read_chunk = validation.read_chunk

    def counted(matrix, start, stop):
        reads.append((start, stop))
        return read_chunk(matrix, start, stop)

    def refused(*args, **kwargs):
        raise AssertionError("the whole matrix was read")

    monkeypatch.setattr(validation, "read_chunk", counted)
    monkeypatch.setattr(validation, "read_rows", refused)
    monkeypatch.setattr(mn, "_CHUNK_ROWS", 16)
    result = metaneighbor(backed.X, batches, clusters, fast=True).to_numpy()
    backed.file.close()
    assert reads == [(start, min(start + 16, 90)) for start in range(0, 90, 16)]
    np.testing.assert_allclose(result, expected, atol=1e-12, rtol=0)


def test_exact_metaneighbor_reads_a_backed_matrix_whole(tmp_path):
    import anndata as ad

    X, batches, clusters = random_data(seed=7, sparse=True)
    X = X.astype(np.float32)
    ad.AnnData(X).write_h5ad(tmp_path / "x.h5ad")
    backed = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
    result = metaneighbor(backed.X, batches, clusters, fast=False).to_numpy()
    backed.file.close()
    np.testing.assert_array_equal(result, metaneighbor(X, batches, clusters, fast=False).to_numpy())


def test_fast_metaneighbor_names_constant_cells_of_any_chunk(monkeypatch):
    import sctransfer.kernels._metaneighbor as mn

    X, batches, clusters = random_data(seed=8)
    X[[3, 50, 88]] = 2.0
    monkeypatch.setattr(mn, "_CHUNK_ROWS", 16)
    with pytest.raises(ValueError, match=r"3 cell\(s\) \(rows \[3, 50, 88\]\) have the same value"):
        metaneighbor(X, batches, clusters, fast=True)


def test_ranks_are_held_as_the_smallest_integers_that_fit():
    from sctransfer.kernels._metaneighbor import _rank_integers

    # doubled centred ranks lie in [-(G - 1), G - 1]; minus the row's zero value, twice that
    assert _rank_integers(16_384, relative=True) == np.int16
    assert _rank_integers(16_385, relative=True) == np.int32
    assert _rank_integers(32_768, relative=False) == np.int16
    assert _rank_integers(32_769, relative=False) == np.int32


# ------------------------------------------------------------------------------------------------
# cluster-pair selection
# ------------------------------------------------------------------------------------------------
def test_select_cluster_pairs_or_rule_and_threshold():
    # cluster 0 (batch a) is the best hit of 2 and 3 (batch b); 2's best hit is 0, 3's best hit is 0, but
    # 0's best hit is 2 only: (0, 3) is still a candidate (OR rule)
    S = np.array(
        [
            [0.0, 0.0, 0.95, 0.92],
            [0.0, 0.0, 0.50, 0.60],
            [0.95, 0.50, 0.0, 0.0],
            [0.92, 0.60, 0.0, 0.0],
        ]
    )
    pairs = select_cluster_pairs(S, ["a", "a", "b", "b"], threshold=0.9)
    assert set(zip(pairs.cluster_1, pairs.cluster_2, strict=True)) == {(0, 2), (0, 3)}
    np.testing.assert_allclose(pairs.similarity, [0.95, 0.92])
    # (1, 3) is a best hit of 1 but below the threshold
    assert len(select_cluster_pairs(S, ["a", "a", "b", "b"], threshold=0.5)) == 3
    assert select_cluster_pairs(S, ["a", "a", "b", "b"], threshold=0.99).empty


def _fixture_pairs(name, n_first_batch, threshold):
    path = _fetch(FIXTURES, name, download=False)
    sim = pd.read_csv(path)
    sim.index = sim.columns.astype(int)
    sim.columns = sim.index
    batches = np.where(sim.index <= n_first_batch, 0, 1)
    # consistency with the file: within-batch blocks are the zero blocks
    assert (sim.to_numpy()[batches[:, None] == batches[None, :]] == 0).all()
    pairs = select_cluster_pairs(sim, batches, threshold)
    return set(zip(pairs.cluster_1.tolist(), pairs.cluster_2.tolist(), strict=True))


requires_fixtures = pytest.mark.skipif(
    not (
        is_available(FIXTURES, "pancreas_pancreas_metaneighbor.csv")
        and is_available(FIXTURES, "pbmc_pbmc_metaneighbor.csv")
    ),
    reason="BERMUDA fixtures not found: set SCTRANSFER_DATA_DIR to the shared data folder",
)


@requires_fixtures
def test_bermuda_fixture_pairs_pancreas():
    # Muraro: clusters 1-9, Baron: 10-21
    pairs_090 = {
        (1, 12),
        (2, 14),
        (2, 15),
        (3, 12),
        (4, 11),
        (4, 21),
        (5, 17),
        (5, 18),
        (6, 16),
        (7, 19),
        (9, 20),
    }
    assert _fixture_pairs("pancreas_pancreas_metaneighbor.csv", 9, 0.90) == pairs_090
    assert _fixture_pairs("pancreas_pancreas_metaneighbor.csv", 9, 0.85) == pairs_090 | {
        (2, 13),
        (3, 10),
        (8, 14),
    }


@requires_fixtures
def test_bermuda_fixture_pairs_pbmc():
    # pbmc8k: clusters 1-12, t3k: 13-19
    pairs_085 = {(3, 15), (4, 13), (5, 18), (8, 17), (8, 18), (9, 18)}
    assert _fixture_pairs("pbmc_pbmc_metaneighbor.csv", 12, 0.85) == pairs_085
    assert _fixture_pairs("pbmc_pbmc_metaneighbor.csv", 12, 0.90) == pairs_085 - {(4, 13)}


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
def _bad_cases():
    X, batches, clusters = random_data(seed=4)
    one_cell = clusters.copy()
    one_cell[0] = 99
    one_cluster = clusters.copy()
    one_cluster[batches == 2] = 10
    spanning = clusters.copy()
    spanning[batches == 1] = np.where(clusters[batches == 1] == 3, 0, clusters[batches == 1])
    constant = X.copy()
    constant[5] = 1.0
    nan = X.copy()
    nan[0, 0] = np.nan
    return {
        "mismatched lengths": ((X, batches[:-1], clusters), "batches has"),
        "one batch": ((X, np.zeros_like(batches), clusters), "one batch"),
        "cluster in one cell": ((X, batches, one_cell), "single cell"),
        "batch with one cluster": ((X, batches, one_cluster), "single cluster"),
        "cluster in two batches": ((X, batches, spanning), "several batches"),
        "float codes": ((X, batches, clusters.astype(float)), "integer codes"),
        "constant cell": ((constant, batches, clusters), "same value"),
        "nan": ((nan, batches, clusters), "NaN"),
        "one gene": ((X[:, :1], batches, clusters), "two genes"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_metaneighbor_bad_input(case):
    args, match = _bad_cases()[case]
    with pytest.raises(ValueError, match=match):
        metaneighbor(*args)


def test_exact_metaneighbor_refuses_large_networks():
    X, batches, clusters = random_data(seed=5)
    with pytest.raises(ValueError, match="fast=True"):
        metaneighbor(X, batches, clusters, max_memory_gb=1e-6)


def test_select_cluster_pairs_bad_input():
    S = np.array([[0.0, 0.9], [0.9, 0.0]])
    with pytest.raises(ValueError, match="square"):
        select_cluster_pairs(np.zeros((2, 3)), [0, 1], 0.9)
    with pytest.raises(ValueError, match="symmetric"):
        select_cluster_pairs(np.array([[0.0, 0.9], [0.8, 0.0]]), [0, 1], 0.9)
    with pytest.raises(ValueError, match="one batch per cluster"):
        select_cluster_pairs(S, [0, 1, 1], 0.9)
    with pytest.raises(ValueError, match="one batch"):
        select_cluster_pairs(S, [0, 0], 0.9)
    with pytest.raises(ValueError, match="finite"):
        select_cluster_pairs(S, [0, 1], float("nan"))
