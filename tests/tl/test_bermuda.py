import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import sctransfer as sct
from sctransfer.kernels import metaneighbor as kernel_metaneighbor
from sctransfer.models.bermuda import PRESETS
from tests.conftest import assert_unchanged, snapshot

FAST = {"enable_progress_bar": False, "enable_model_summary": False}


@pytest.fixture
def counts():
    rna, _ = sct.datasets.simulate_multiome(n_cells=300, n_genes=80, n_types=3, n_batches=2, random_state=0)
    return rna


def test_metaneighbor_verb_matches_the_kernel(counts):
    before = snapshot(counts)
    sct.tl.metaneighbor(counts, batch_key="batch", cluster_key="cell_type", fast=False)
    entry = counts.uns["metaneighbor"]
    assert entry["clusters"][0].startswith("batch_0|")
    assert len(entry["clusters"]) == 6 and entry["similarity"].shape == (6, 6)
    X = counts.X.toarray()
    X = np.log1p(X / X.sum(1, keepdims=True) * 1e4)
    nodes = (counts.obs["batch"].astype(str) + "|" + counts.obs["cell_type"].astype(str)).astype("category")
    want = kernel_metaneighbor(X, counts.obs["batch"].cat.codes.to_numpy().astype(int),
                               nodes.cat.codes.to_numpy().astype(int), fast=False)  # fmt: skip
    np.testing.assert_allclose(entry["similarity"], want.to_numpy(), atol=1e-6)
    # the same type in two batches is the best match
    S = sct.tl._bermuda.similarity_frame(counts)
    assert S.loc["batch_0|type_1"].idxmax() == "batch_1|type_1"
    del counts.uns["metaneighbor"]
    assert_unchanged(counts, before)


@pytest.mark.parametrize("fast", [True, False])
def test_metaneighbor_ranks_counts_as_their_log_normalised_values(counts, fast):
    """The verb ranks the values as given: log-normalising (increasing within a cell) changes no rank."""
    from sctransfer.kernels._pca import log_normalize

    logged = counts.copy()
    logged.X = log_normalize(counts.X)
    for adata in (counts, logged):
        sct.tl.metaneighbor(adata, batch_key="batch", cluster_key="cell_type", fast=fast)
    np.testing.assert_array_equal(
        counts.uns["metaneighbor"]["similarity"], logged.uns["metaneighbor"]["similarity"]
    )


def test_fast_metaneighbor_ranks_large_integers_exactly(counts):
    """In-memory integers above 2**24 are ranked as float64 (float32 would tie some of them)."""
    big = counts.copy()
    big.X = (counts.X.toarray().astype(np.int64) * 3 + 2**25) * (counts.X.toarray() > 0)
    floats = big.copy()
    floats.X = big.X.astype(np.float64)
    for adata in (big, floats):
        sct.tl.metaneighbor(adata, batch_key="batch", cluster_key="cell_type")
    np.testing.assert_array_equal(
        big.uns["metaneighbor"]["similarity"], floats.uns["metaneighbor"]["similarity"]
    )


def test_bermuda_writes_documented_keys_only(counts, tmp_path):
    before = snapshot(counts)
    sct.tl.bermuda(counts, batch_key="batch", n_neighbors=10, max_epochs=5, **FAST)
    Z = counts.obsm["X_bermuda"]
    assert Z.shape == (counts.n_obs, 20) and np.isfinite(Z).all()
    clusters = counts.obs["bermuda_cluster"]
    assert all(str(c).split("|")[0] in {"batch_0", "batch_1"} for c in clusters.cat.categories)
    info = counts.uns["bermuda"]
    assert info["params"]["batch_key"] == "batch" and info["params"]["normalised_counts"] is True
    assert info["epochs_trained"] == 5 and len(info["genes"]) > 0
    assert all(len(p) == 2 for p in info["cluster_pairs"])
    counts.write_h5ad(tmp_path / "out.h5ad")  # params are plain types
    back = ad.read_h5ad(tmp_path / "out.h5ad")
    assert back.uns["bermuda"]["params"]["config"]["batch_size"] == PRESETS["default"].batch_size
    del counts.obsm["X_bermuda"], counts.obs["bermuda_cluster"], counts.uns["bermuda"]
    assert_unchanged(counts, before)


def test_bermuda_with_given_clusters_copy_and_determinism(counts):
    before = snapshot(counts)
    out = sct.tl.bermuda(counts, batch_key="batch", cluster_key="cell_type", max_epochs=4, copy=True, **FAST)
    assert_unchanged(counts, before)
    assert set(out.obs["bermuda_cluster"].cat.categories) == {
        f"batch_{b}|type_{t}" for b in range(2) for t in range(3)
    }
    again = sct.tl.bermuda(
        counts, batch_key="batch", cluster_key="cell_type", max_epochs=4, copy=True, **FAST
    )
    np.testing.assert_array_equal(out.obsm["X_bermuda"], again.obsm["X_bermuda"])
    pairs = {tuple(sorted(p)) for p in out.uns["bermuda"]["cluster_pairs"]}
    assert ("batch_0|type_0", "batch_1|type_0") in pairs


def test_bermuda_aligns_batches_better_than_no_correction(counts):
    import scanpy as sc

    sct.tl.bermuda(counts, batch_key="batch", cluster_key="cell_type", max_epochs=200, **FAST)
    base = counts.copy()
    sc.pp.normalize_total(base, target_sum=1e4)
    sc.pp.log1p(base)
    sc.pp.pca(base, n_comps=20, random_state=0)
    batches = counts.obs["batch"].to_numpy()
    types = counts.obs["cell_type"].to_numpy()
    mixed = sct.metrics.batch_mixing_entropy(counts.obsm["X_bermuda"], batches)
    raw = sct.metrics.batch_mixing_entropy(base.obsm["X_pca"], batches)
    assert mixed > raw + 0.1
    # the cell types stay as separable as in the uncorrected PCA
    purity = sct.metrics.knn_purity(counts.obsm["X_bermuda"], types)
    assert purity > sct.metrics.knn_purity(base.obsm["X_pca"], types) - 0.05


def test_bermuda_accepts_lognormalised_input(counts):
    import scanpy as sc

    sc.pp.normalize_total(counts, target_sum=1e4)
    sc.pp.log1p(counts)
    sct.tl.bermuda(counts, batch_key="batch", cluster_key="cell_type", max_epochs=2, **FAST)
    assert counts.uns["bermuda"]["params"]["normalised_counts"] is False


def _bad(counts, case):
    if case == "missing batch key":
        return counts, {"batch_key": "nope"}, KeyError, "not found"
    if case == "one batch":
        counts.obs["batch"] = "b"
        return counts, {"batch_key": "batch"}, ValueError, "single batch"
    if case == "single-cell batch":
        counts.obs["batch"] = counts.obs["batch"].astype(str)
        counts.obs.iloc[0, counts.obs.columns.get_loc("batch")] = "lonely"
        return counts, {"batch_key": "batch"}, ValueError, "single cell"
    if case == "NaN values":
        X = counts.X.toarray()
        X[0, 0] = np.nan
        counts.X = sp.csr_matrix(X)
        return counts, {"batch_key": "batch"}, ValueError, "NaN"
    if case == "negative values":
        X = counts.X.toarray()
        X[0, 0] = -1
        counts.X = sp.csr_matrix(X)
        return counts, {"batch_key": "batch"}, ValueError, "negative"
    if case == "missing cluster key":
        return counts, {"batch_key": "batch", "cluster_key": "nope"}, KeyError, "not found"
    if case == "single cluster in a batch":
        counts.obs["one"] = "c"
        return counts, {"batch_key": "batch", "cluster_key": "one"}, ValueError, "single cluster"
    if case == "no pair above threshold":
        return (
            counts,
            {"batch_key": "batch", "cluster_key": "cell_type", "similarity_threshold": 1.0},
            None,
            None,
        )
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["missing batch key", "one batch", "single-cell batch", "NaN values", "negative values", "missing cluster key",
     "single cluster in a batch"],
)  # fmt: skip
def test_bermuda_bad_input(counts, case):
    adata, kwargs, error, match = _bad(counts, case)
    before = snapshot(adata)
    with pytest.raises(error, match=match):
        sct.tl.bermuda(adata, max_epochs=1, n_neighbors=10, **kwargs, **FAST)
    assert_unchanged(adata, before)


def test_no_pair_above_threshold_is_explained_or_allowed(counts):
    # shuffle the types within one batch so that no cluster of batch_1 matches batch_0 well
    rng = np.random.default_rng(0)
    mask = (counts.obs["batch"] == "batch_1").to_numpy()
    counts.obs["noise"] = counts.obs["cell_type"].astype(str)
    counts.obs.loc[mask, "noise"] = rng.permutation(counts.obs.loc[mask, "noise"].to_numpy())
    before = snapshot(counts)
    with pytest.raises(ValueError, match="lower similarity_threshold"):
        sct.tl.bermuda(counts, batch_key="batch", cluster_key="noise", similarity_threshold=0.99, **FAST)
    assert_unchanged(counts, before)
    sct.tl.bermuda(
        counts, batch_key="batch", cluster_key="noise", similarity_threshold=0.99, allow_no_pairs=True,
        max_epochs=1, **FAST,
    )  # fmt: skip
    assert counts.uns["bermuda"]["cluster_pairs"] == []


def test_a_batch_smaller_than_a_minibatch_is_aligned_with_repeated_cells(counts):
    # 24 cells of batch_1 (8 per type), under one minibatch of 50 cells per cluster: the clusters of the
    # small batch are drawn with replacement, as documented, and the input stays as it was
    keep = (counts.obs["batch"] == "batch_0").to_numpy()
    for t in counts.obs["cell_type"].cat.categories:
        rows = np.flatnonzero(
            ((counts.obs["batch"] == "batch_1") & (counts.obs["cell_type"] == t)).to_numpy()
        )
        keep[rows[:8]] = True
    small = counts[keep].copy()
    assert (small.obs["batch"] == "batch_1").sum() == 24
    before = snapshot(small)
    out = sct.tl.bermuda(small, batch_key="batch", cluster_key="cell_type", max_epochs=2, copy=True, **FAST)
    assert_unchanged(small, before)
    Z = out.obsm["X_bermuda"]
    assert Z.shape == (small.n_obs, 20) and np.isfinite(Z).all()
    assert out.uns["bermuda"]["params"]["config"]["batch_size"] > 8


def test_tiny_leiden_clusters_join_their_neighbours_cluster():
    from sctransfer.tl._bermuda import absorb_small_clusters

    # cells 0-5 in cluster 0, 6-11 in cluster 2, cell 12 alone in cluster 1 with neighbours in cluster 2
    membership = np.array([0] * 6 + [2] * 6 + [1])
    neighbors = np.array([[i, (i + 1) % 6, (i + 2) % 6] for i in range(6)]
                         + [[6 + i, 6 + (i + 1) % 6, 6 + (i + 2) % 6] for i in range(6)]
                         + [[12, 7, 8]])  # fmt: skip
    out = absorb_small_clusters(membership, neighbors, min_size=2)
    np.testing.assert_array_equal(out, [0] * 6 + [1] * 7)  # consecutive codes, the single cell joined
    # nothing to absorb, or everything small: the clusters are kept (renumbered)
    np.testing.assert_array_equal(
        absorb_small_clusters(np.array([3, 3, 5, 5]), neighbors[:4], 2), [0, 0, 1, 1]
    )
    np.testing.assert_array_equal(absorb_small_clusters(np.array([0, 1]), neighbors[:2], 5), [0, 1])


def test_saved_verb_model_maps_cells_given_with_all_their_genes(counts, tmp_path):
    """The verb's model holds the log values of its genes only; a saved one maps new cells given as the
    verb was (counts of every gene, matched by name: any order, extra genes ignored) and leaves them be."""
    path = tmp_path / "model"
    work = counts.copy()
    sct.tl.bermuda(
        work,
        batch_key="batch",
        cluster_key="cell_type",
        n_top_genes=20,
        max_epochs=2,
        save_model=path,
        **FAST,
    )
    model = sct.models.BERMUDA.load(path)
    genes = work.uns["bermuda"]["genes"]
    assert model.genes_ == genes and len(genes) < counts.n_vars and not model.normalised_
    query = counts.copy()
    before = snapshot(query)
    z = model.get_latent_representation(query)
    assert_unchanged(query, before)  # nothing registered into the caller's AnnData
    shuffled = query[:, query.var_names[::-1]].copy()
    np.testing.assert_array_equal(model.get_latent_representation(shuffled), z)
    # the verb's own cells land where training put them (up to Harmony's batch-diversity term): their
    # genes were normalised by the totals of all genes, as in the verb (by the selected genes' totals
    # alone, the mean difference was 0.28 of the mean)
    trained = work.obsm["X_bermuda"]
    assert np.abs(z - trained).mean() < 0.02 * np.abs(trained).mean()
    with pytest.raises(ValueError, match="lacks 1 of the model's"):
        model.get_latent_representation(query[:, [g for g in query.var_names if g != genes[0]]].copy())
