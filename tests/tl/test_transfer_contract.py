"""One result contract for every label-transfer method, and the bad inputs every method refuses."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import sctransfer as sct
from tests.conftest import assert_unchanged, snapshot

FAST = {
    "ensemble": {},
    "knn": {},
    "castle": {"n_features": 20},
    "scjoint": {"max_epochs": 2, "max_epochs_stage3": 1, "batch_size": 64,
                "trainer_kwargs": {"enable_progress_bar": False}},
}  # fmt: skip


@pytest.fixture()
def pair():
    rna, atac = sct.datasets.simulate_multiome(n_cells=240, n_genes=220, n_types=3, random_state=2)
    return rna, atac


@pytest.mark.parametrize("method", list(FAST))
def test_every_method_writes_one_contract(pair, method, tmp_path):
    rna, atac = pair
    before = snapshot(rna)
    sct.tl.label_transfer(rna, atac, labels_key="cell_type", method=method, key_added="lt", **FAST[method])
    labels = atac.obs["lt"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    classes = atac.uns["lt"]["classes"]
    assert classes == ["type_0", "type_1", "type_2"]
    assert set(labels.cat.categories) <= {*classes, "unknown"}
    conf = atac.obs["lt_confidence"].to_numpy()
    assert ((conf >= 0) & (conf <= 1)).all()
    assert atac.obsm["lt_proba"].shape == (atac.n_obs, 3)
    uns = atac.uns["lt"]
    assert uns["params"]["method"] == method and uns["params"]["key_added"] == "lt"
    assert uns["seconds"] > 0 and uns["version"] == sct.__version__
    assert uns["feature_matching"] == "exact" and uns["n_shared_features"] == 220
    for key in uns["keys"]["obs"]:
        assert key in atac.obs
    for key in uns["keys"]["obsm"]:
        assert key in atac.obsm
    # the reference changes only in its embedding, named after key_added
    new_rna_keys = set(rna.obsm) - set(before["obsm"])
    assert new_rna_keys <= {"X_lt"}
    if method != "castle":
        assert "X_lt" in atac.obsm
    # plain params survive h5ad
    atac.write_h5ad(tmp_path / "q.h5ad")
    back = ad.read_h5ad(tmp_path / "q.h5ad")
    assert (back.obs["lt"] == labels).all()


def test_rerun_with_the_same_key_leaves_no_stale_keys(pair):
    rna, atac = pair
    sct.tl.label_transfer(
        rna, atac, labels_key="cell_type", method="scjoint", key_added="lt", **FAST["scjoint"]
    )
    assert "lt_similarity" in atac.obs
    sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="castle", key_added="lt", n_features=20)
    assert "lt_similarity" not in atac.obs and "lt_probability" not in atac.obs
    assert "X_lt" not in atac.obsm
    assert atac.uns["lt"]["params"]["method"] == "castle"


def test_default_is_the_ensemble_and_rejects_nothing_on_clean_data(pair):
    rna, atac = pair
    sct.tl.label_transfer(rna, atac, labels_key="cell_type")
    assert atac.uns["sct_label"]["params"]["method"] == "ensemble"
    truth = atac.obs["cell_type"].astype(str).to_numpy()
    assert sct.metrics.accuracy(truth, atac.obs["sct_label"]) > 0.8


def test_counts_and_lognormalised_input_give_the_same_ensemble(pair):
    import scanpy as sc

    rna, atac = pair
    logged = [a.copy() for a in (rna, atac)]
    for a in logged:
        sc.pp.normalize_total(a, target_sum=1e4)
        sc.pp.log1p(a)
    a = sct.tl.label_transfer(rna, atac, labels_key="cell_type", copy=True)
    b = sct.tl.label_transfer(*logged, labels_key="cell_type", copy=True)
    assert a.uns["sct_label"]["input_scales"] == {"reference": "counts", "query": "counts"}
    assert b.uns["sct_label"]["input_scales"] == {"reference": "log", "query": "log"}
    np.testing.assert_allclose(a.obsm["sct_label_proba"], b.obsm["sct_label_proba"], atol=1e-4)


def test_gene_symbols_are_matched_across_case(pair):
    rna, atac = pair
    mouse_like = atac.copy()
    mouse_like.var_names = [n.capitalize() for n in mouse_like.var_names.str.upper()]
    rna = rna.copy()
    rna.var_names = rna.var_names.str.upper()
    sct.tl.label_transfer(rna, mouse_like, labels_key="cell_type")
    assert mouse_like.uns["sct_label"]["feature_matching"] == "case-insensitive"
    assert mouse_like.uns["sct_label"]["n_shared_features"] == 220


def test_few_shared_features_warn(pair):
    rna, atac = pair
    narrow = atac.copy()
    narrow.var_names = [*atac.var_names[:30], *(f"other_{i}" for i in range(atac.n_vars - 30))]
    with pytest.warns(UserWarning, match="share only 30 features"):
        sct.tl.label_transfer(rna, narrow, labels_key="cell_type", method="knn", n_neighbors=10)


def test_shared_obs_names_are_allowed(pair):
    rna, atac = pair
    atac = atac.copy()
    atac.obs_names = rna.obs_names[: atac.n_obs]
    sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn")
    assert atac.obs["sct_label"].notna().all()


def _bad(pair, case):
    rna, atac = (a.copy() for a in pair)
    kwargs = {"labels_key": "cell_type"}
    if case == "no shared features":
        atac.var_names = [f"other_{i}" for i in range(atac.n_vars)]
    elif case == "all NaN labels":
        rna.obs["cell_type"] = np.nan
    elif case == "one class":
        rna.obs["cell_type"] = "a"
    elif case == "integer labels":
        rna.obs["cell_type"] = rna.obs["cell_type"].cat.codes.astype(int)
    elif case == "duplicate var_names":
        atac.var_names = ["g"] * atac.n_vars
    elif case == "duplicate obs_names":
        rna.obs_names = ["c"] * rna.n_obs
    elif case == "scaled values":
        import scanpy as sc

        sc.pp.log1p(atac)
        sc.pp.scale(atac)
    elif case == "peaks":
        atac.var_names = [f"chr1_{i * 1000}_{i * 1000 + 500}" for i in range(atac.n_vars)]
    elif case == "missing key":
        kwargs["labels_key"] = "nope"
    return rna, atac, kwargs


BAD = {
    "no shared features": (ValueError, "share no features"),
    "all NaN labels": (ValueError, "all NaN"),
    "one class": (ValueError, "at least 2"),
    "integer labels": (ValueError, "holds numbers"),
    "duplicate var_names": (ValueError, "duplicated var_names"),
    "duplicate obs_names": (ValueError, "duplicated obs_names"),
    "scaled values": (ValueError, "negative values"),
    "peaks": (ValueError, "gene_activity"),
    "missing key": (KeyError, "not found"),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("method", ["ensemble", "knn", "castle"])
def test_bad_input_is_refused_and_inputs_are_unchanged(pair, case, method):
    rna, atac, kwargs = _bad(pair, case)
    before_r, before_q = snapshot(rna), snapshot(atac)
    error, match = BAD[case]
    with pytest.raises(error, match=match):
        sct.tl.label_transfer(rna, atac, method=method, **kwargs)
    assert_unchanged(rna, before_r)
    assert_unchanged(atac, before_q)


def test_a_query_view_is_refused(pair):
    rna, atac = pair
    with pytest.raises(ValueError, match="view"):
        sct.tl.label_transfer(rna, atac[:50], labels_key="cell_type")
    out = sct.tl.label_transfer(rna, atac[:50], labels_key="cell_type", copy=True)
    assert out.n_obs == 50


def test_query_rep_is_recorded_and_checked(pair):
    rna, atac = pair
    atac = atac.copy()
    atac.obsm["X_own"] = np.random.default_rng(0).normal(size=(atac.n_obs, 4))
    sct.tl.label_transfer(rna, atac, labels_key="cell_type", query_rep="X_own")
    assert atac.uns["sct_label"]["params"]["query_rep"] == "X_own"
    assert atac.uns["sct_label"]["query_graph"] == "joint PCA and query_rep"
    before = snapshot(atac)
    with pytest.raises(ValueError, match="method='ensemble' only"):
        sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn", query_rep="X_own")
    with pytest.raises(KeyError, match=r"not in the query's \.obsm"):
        sct.tl.label_transfer(rna, atac, labels_key="cell_type", query_rep="X_lsi")
    assert_unchanged(atac, before)
