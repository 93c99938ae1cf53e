import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from mudata import MuData

import sctransfer as sct
from sctransfer._utils._keys import LabelTransferKeys
from tests.conftest import assert_unchanged, requires_real_data, snapshot

FAST_SCJOINT = {"max_epochs": 3, "max_epochs_stage3": 2, "batch_size": 64,
                "trainer_kwargs": {"enable_progress_bar": False}}  # fmt: skip


def test_ensemble_is_the_default_method(multiome):
    rna, atac = multiome
    assert sct.tl.label_transfer(rna, atac, labels_key="cell_type") is None
    keys = LabelTransferKeys("sct_label")
    uns = atac.uns[keys.uns]
    assert uns["params"]["method"] == "ensemble" and uns["params"]["gene_case"] == "auto"
    classes = sorted(rna.obs["cell_type"].unique())
    assert uns["classes"] == classes
    labels = atac.obs[keys.label]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert set(labels.cat.categories) <= {*classes, "unknown"}
    proba = atac.obsm[keys.proba]
    assert proba.shape == (atac.n_obs, len(classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert atac.obs[keys.confidence].between(0, 1).all()
    assert keys.embedding == "X_sct_label"
    assert atac.obsm[keys.embedding].shape[0] == atac.n_obs
    assert rna.obsm[keys.embedding].shape == (rna.n_obs, atac.obsm[keys.embedding].shape[1])
    assert uns["keys"]["obs"][:2] == [keys.label, keys.confidence]
    assert {keys.proba, keys.embedding} <= set(uns["keys"]["obsm"])
    assert uns["seconds"] > 0 and uns["version"] == sct.__version__
    truth = atac.obs["cell_type"].astype(str).to_numpy()
    assert sct.metrics.accuracy(truth, labels) > 0.8


def test_writes_documented_keys(multiome, tmp_path):
    rna, atac = multiome
    assert sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn") is None
    labels = atac.obs["sct_label"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert list(labels.cat.categories) == sorted(rna.obs["cell_type"].unique())
    conf = atac.obs["sct_label_confidence"].to_numpy()
    assert conf.min() > 0 and conf.max() <= 1
    proba = atac.obsm["sct_label_proba"]
    assert atac.uns["sct_label"]["classes"] == list(labels.cat.categories)
    assert proba.shape == (atac.n_obs, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # the confidence is the vote fraction of the winning label
    np.testing.assert_allclose(proba.max(axis=1), conf)
    assert atac.obsm["X_sct_label"].shape[0] == atac.n_obs
    assert rna.obsm["X_sct_label"].shape == (rna.n_obs, atac.obsm["X_sct_label"].shape[1])
    params = atac.uns["sct_label"]["params"]
    assert params["labels_key"] == "cell_type" and params["method"] == "knn" and params["n_neighbors"] == 30
    assert atac.uns["sct_label"]["knn_backend"] == "exact"  # backend="auto" on small data
    # everything survives a round trip through h5ad
    atac.write_h5ad(tmp_path / "atac.h5ad")
    back = ad.read_h5ad(tmp_path / "atac.h5ad")
    assert back.uns["sct_label"]["params"]["labels_key"] == "cell_type"
    assert (back.obs["sct_label"] == atac.obs["sct_label"]).all()


def test_knn_auto_backend_above_its_limit_uses_the_ivf_index(multiome, monkeypatch):
    from sctransfer.kernels import _knn

    rna, atac = multiome
    exact = sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn", backend="exact", copy=True)
    monkeypatch.setattr(_knn, "AUTO_EXACT_MAX_PAIRS", 1)
    approx = sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn", copy=True)
    assert approx.uns["sct_label"]["knn_backend"] == "ivf"
    same = (approx.obs["sct_label"].astype(str) == exact.obs["sct_label"].astype(str)).mean()
    assert same >= 0.98


def test_recovers_simulated_types(multiome):
    rna, atac = multiome
    truth = atac.obs["cell_type"].astype(str).to_numpy()
    sct.tl.label_transfer(rna, atac, labels_key="cell_type", n_neighbors=15, method="knn")
    assert sct.metrics.accuracy(truth, atac.obs["sct_label"]) > 0.8


def test_same_seed_same_result(multiome):
    rna, atac = multiome
    first = sct.tl.label_transfer(rna, atac, labels_key="cell_type", random_state=3, copy=True, method="knn")
    second = sct.tl.label_transfer(rna, atac, labels_key="cell_type", random_state=3, copy=True, method="knn")
    np.testing.assert_array_equal(first.obsm["X_sct_label"], second.obsm["X_sct_label"])
    np.testing.assert_array_equal(first.obs["sct_label_confidence"], second.obs["sct_label_confidence"])
    assert (first.obs["sct_label"] == second.obs["sct_label"]).all()


def test_copy_leaves_inputs_untouched(multiome):
    rna, atac = multiome
    before_rna, before_atac = snapshot(rna), snapshot(atac)
    out = sct.tl.label_transfer(rna, atac, labels_key="cell_type", copy=True, key_added="pred", method="knn")
    assert_unchanged(rna, before_rna)
    assert_unchanged(atac, before_atac)
    assert "pred" in out.obs and "pred_confidence" in out.obs and "pred" in out.uns


def test_in_place_changes_only_documented_keys(multiome):
    rna, atac = multiome
    before_rna, before_atac = snapshot(rna), snapshot(atac)
    sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn")
    np.testing.assert_array_equal(snapshot(rna)["X"], before_rna["X"])
    np.testing.assert_array_equal(snapshot(atac)["X"], before_atac["X"])
    pd.testing.assert_frame_equal(rna.obs, before_rna["obs"])
    assert set(atac.obs.columns) - set(before_atac["obs"].columns) == {"sct_label", "sct_label_confidence"}
    assert set(rna.obsm) == {"X_sct_label"}
    assert set(atac.obsm) == {"X_sct_label", "sct_label_proba"}


def test_mudata_form(multiome):
    rna, atac = multiome
    mdata = MuData({"rna": rna, "atac": atac})
    sct.tl.label_transfer(mdata, labels_key="cell_type", method="knn")
    assert "sct_label" in mdata["atac"].obs
    assert "atac:sct_label" in mdata.obs.columns
    assert mdata["atac"].uns["sct_label"]["params"]["atac_mod"] == "atac"
    copied = sct.tl.label_transfer(
        MuData({"expr": rna.copy(), "chrom": atac.copy()}), labels_key="cell_type", rna_mod="expr",
        atac_mod="chrom", copy=True, method="knn",
    )  # fmt: skip
    assert isinstance(copied, MuData) and "sct_label" in copied["chrom"].obs


def test_mudata_errors(multiome):
    rna, atac = multiome
    mdata = MuData({"rna": rna, "atac": atac})
    with pytest.raises(KeyError, match="modality 'peaks'"):
        sct.tl.label_transfer(mdata, labels_key="cell_type", atac_mod="peaks")
    with pytest.raises(ValueError, match="not both"):
        sct.tl.label_transfer(mdata, atac, labels_key="cell_type")


def test_unlabelled_reference_cells_do_not_vote(multiome):
    rna, atac = multiome
    labels = rna.obs["cell_type"].astype(object)
    labels.iloc[::2] = np.nan
    rna.obs["cell_type"] = labels
    with pytest.warns(UserWarning, match=r"200 of 400 reference cells have no label"):
        sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn")
    assert atac.uns["sct_label"]["n_labelled_reference_cells"] == rna.n_obs - (rna.n_obs + 1) // 2
    assert rna.obsm["X_sct_label"].shape[0] == rna.n_obs
    assert not atac.obs["sct_label"].isna().any()


def test_unknown_option_is_a_clear_error(multiome):
    rna, atac = multiome
    with pytest.raises(ValueError, match="unknown option"):
        sct.tl.label_transfer(rna, atac, labels_key="cell_type", n_comp=5, method="knn")
    with pytest.raises(ValueError, match="method must be one of"):
        sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="magic")


def test_unknown_threshold_rejects_low_confidence_cells(multiome):
    rna, atac = multiome
    sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn", unknown_threshold=0.99)
    low = atac.obs["sct_label_confidence"] < 0.99
    assert low.any()
    assert (atac.obs["sct_label"][low] == "unknown").all()
    assert (atac.obs["sct_label"][~low] != "unknown").all()
    assert atac.uns["sct_label"]["n_unknown"] == int(low.sum())
    assert atac.uns["sct_label"]["params"]["unknown_threshold"] == 0.99


def test_scjoint_method(multiome):
    rna, atac = multiome
    sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="scjoint", **FAST_SCJOINT)
    uns = atac.uns["sct_label"]
    assert uns["params"]["method"] == "scjoint" and uns["params"]["unknown_threshold"] == 0.4
    assert uns["params"]["preset"] == "default" and "faithful" not in uns["params"]
    assert uns["config"]["center_loss"] == "clamped" and uns["config"]["unknown_threshold"] == 0.4
    assert atac.obsm["X_sct_label"].shape == (atac.n_obs, 64)
    assert rna.obsm["X_sct_label"].shape == (rna.n_obs, 64)
    assert "X_scjoint" not in atac.obsm
    assert atac.obs["sct_label_probability"].between(0, 1).all()
    assert atac.obs["sct_label_similarity"].between(-1, 1).all()
    rejected = atac.obs["sct_label"] == "unknown"
    assert (atac.obs.loc[rejected, "sct_label_confidence"] < 0.4).all()
    assert (atac.obs.loc[~rejected, "sct_label_confidence"] >= 0.4).all()
    truth = atac.obs["cell_type"].astype(str).to_numpy()[~rejected]
    assert sct.metrics.accuracy(truth, atac.obs["sct_label"][~rejected]) > 0.7


def test_scjoint_faithful_and_seeded(multiome):
    rna, atac = multiome
    runs = [
        sct.tl.label_transfer(
            rna,
            atac,
            labels_key="cell_type",
            method="scjoint",
            preset="faithful",
            random_state=1,
            copy=True,
            **FAST_SCJOINT,
        )
        for _ in range(2)
    ]
    assert runs[0].uns["sct_label"]["params"]["unknown_threshold"] is None
    assert runs[0].uns["sct_label"]["params"]["preset"] == "faithful"
    assert runs[0].uns["sct_label"]["config"]["input_transform"] == "binary"
    np.testing.assert_array_equal(runs[0].obsm["X_sct_label"], runs[1].obsm["X_sct_label"])
    assert (runs[0].obs["sct_label"] == runs[1].obs["sct_label"]).all()
    assert "unknown" not in set(runs[0].obs["sct_label"])


@pytest.mark.parametrize("method", ["scjoint", "castle"])
def test_deprecated_aliases_warn_and_equal_the_faithful_preset(multiome, method):
    rna, atac = multiome
    options = {"labels_key": "cell_type", "method": method, "copy": True}
    if method == "scjoint":
        options.update(FAST_SCJOINT)
    new = sct.tl.label_transfer(rna, atac, preset="faithful", **options)
    aliases = [{"faithful": True}] + ([{"reference": True}] if method == "castle" else [])
    for alias in aliases:
        with pytest.warns(FutureWarning, match="preset='faithful'"):
            old = sct.tl.label_transfer(rna, atac, **alias, **options)
        np.testing.assert_array_equal(old.obsm["sct_label_proba"], new.obsm["sct_label_proba"])
        assert (old.obs["sct_label"] == new.obs["sct_label"]).all()
        params = old.uns["sct_label"]["params"]
        assert params["preset"] == "faithful" and not {"faithful", "reference"} & set(params)
    with pytest.raises(ValueError, match="contradict"), pytest.warns(FutureWarning):
        sct.tl.label_transfer(rna, atac, faithful=False, preset="faithful", **options)
    if method == "castle":
        with pytest.warns(FutureWarning, match="reference=True is deprecated"):
            old = sct.tl.castle(rna, atac, labels_key="cell_type", reference=True, copy=True)
        new = sct.tl.castle(rna, atac, labels_key="cell_type", preset="faithful", copy=True)
        np.testing.assert_array_equal(old.obsm["castle_proba"], new.obsm["castle_proba"])
        assert old.uns["castle"]["settings"]["preset"] == "faithful"


def test_scjoint_through_mudata(multiome):
    rna, atac = multiome
    mdata = MuData({"rna": rna, "atac": atac})
    sct.tl.label_transfer(mdata, labels_key="cell_type", method="scjoint", **FAST_SCJOINT)
    assert "X_sct_label" in mdata["atac"].obsm and "X_sct_label" in mdata["rna"].obsm
    assert "atac:sct_label" in mdata.obs


def test_one_input_scale_check_replaces_normalize(multiome):
    """Counts are log-normalised and log-normalised values used as they are; ``normalize=`` is gone."""
    import warnings

    import scanpy as sc

    rna, atac = multiome
    from_counts = sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn", copy=True)
    assert from_counts.uns["sct_label"]["input_scales"] == {"reference": "counts", "query": "counts"}
    lognorm = rna.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # log-normalised input is expected, not warned about
        from_log = sct.tl.label_transfer(lognorm, atac, labels_key="cell_type", method="knn", copy=True)
    assert from_log.uns["sct_label"]["input_scales"] == {"reference": "log", "query": "counts"}
    np.testing.assert_allclose(from_log.obsm["sct_label_proba"], from_counts.obsm["sct_label_proba"])
    with pytest.raises(ValueError, match="unknown option for method='knn'"):
        sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn", normalize=False)


def test_gene_case(multiome):
    rna, atac = multiome
    expected = sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn", copy=True)
    atac.var_names = [g.upper() for g in atac.var_names]
    sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn")
    assert atac.uns["sct_label"]["feature_matching"] == "case-insensitive"
    np.testing.assert_array_equal(atac.obsm["sct_label_proba"], expected.obsm["sct_label_proba"])
    with pytest.raises(ValueError, match="share no features"):
        sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn", gene_case="exact")


# ---- bad input: each raises a clear error and leaves both inputs unchanged ----


def _bad_cases():
    def no_shared(rna, atac):
        atac.var_names = [f"peak_{i}" for i in range(atac.n_vars)]
        return {}, ValueError, "share no features"

    def missing_key(rna, atac):
        return {"labels_key": "celltype"}, KeyError, "not found"

    def all_nan(rna, atac):
        rna.obs["cell_type"] = np.nan
        return {}, ValueError, "no values"

    def one_class(rna, atac):
        rna.obs["cell_type"] = "T cell"
        return {}, ValueError, "1 class"

    def nan_values(rna, atac):
        X = rna.X.toarray()
        X[0, 0] = np.nan
        rna.X = sp.csr_matrix(X)
        return {}, ValueError, "NaN or infinite"

    def inf_values(rna, atac):
        X = atac.X.toarray()
        X[1, 1] = np.inf
        atac.X = X
        return {}, ValueError, "NaN or infinite"

    def negative_values(rna, atac):
        X = atac.X.toarray()
        X[2, 3] = -1.0
        atac.X = sp.csr_matrix(X)
        return {}, ValueError, "negative"

    def peaks_instead_of_genes(rna, atac):
        atac.var_names = [f"chr1_{1000 * i}_{1000 * i + 500}" for i in range(atac.n_vars)]
        return {}, ValueError, "gene_activity"

    def knn_is_not_faithful(rna, atac):
        return {"preset": "faithful"}, ValueError, r"has no faithful preset.*\['castle', 'scjoint'\]"

    def knn_is_not_faithful_alias(rna, atac):
        return {"faithful": True}, ValueError, "has no faithful preset"

    def unknown_preset(rna, atac):
        return (
            {"method": "scjoint", "preset": "paper"},
            ValueError,
            r"preset must be one of \['default', 'faithful'\]",
        )

    def bad_threshold(rna, atac):
        return {"unknown_threshold": "high"}, ValueError, "unknown_threshold"

    def too_many_neighbours(rna, atac):
        return {"n_neighbors": rna.n_obs + 1}, ValueError, "n_neighbors"

    def missing_layer(rna, atac):
        return {"layer": "counts"}, KeyError, "layer 'counts'"

    return [no_shared, missing_key, all_nan, one_class, nan_values, inf_values, negative_values,
            too_many_neighbours, missing_layer, peaks_instead_of_genes, knn_is_not_faithful,
            knn_is_not_faithful_alias, unknown_preset, bad_threshold]  # fmt: skip


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda f: f.__name__)
def test_bad_input(multiome, case):
    rna, atac = multiome
    kwargs, error, message = case(rna, atac)
    kwargs = {"labels_key": "cell_type", "method": "knn", **kwargs}
    before_rna, before_atac = snapshot(rna), snapshot(atac)
    with pytest.raises(error, match=message):
        sct.tl.label_transfer(rna, atac, **kwargs)
    assert_unchanged(rna, before_rna)
    assert_unchanged(atac, before_atac)


@pytest.mark.parametrize("which", ["reference", "query"])
def test_empty_anndata(multiome, which):
    rna, atac = multiome
    if which == "reference":
        rna = rna[:0].copy()
    else:
        atac = atac[:0].copy()
    with pytest.raises(ValueError, match="empty"):
        sct.tl.label_transfer(rna, atac, labels_key="cell_type")


# measured on this protocol without rejection: joint PCA + kNN 0.65 / 0.39; scJoint 0.616 / 0.350
# (benchmarks/label_transfer_mop.py; its faithful preset 0.522 / 0.241); the default 0.669 / 0.424
MOP_METHODS = {
    "knn": ({"method": "knn"}, 0.6, 0.33),
    "scjoint": ({"method": "scjoint", "unknown_threshold": None}, 0.58, 0.3),
    "ensemble": ({"unknown_threshold": None}, 0.62, 0.38),
}


@requires_real_data
@pytest.mark.realdata
@pytest.mark.parametrize("method", list(MOP_METHODS))
def test_mop_unpaired(method):
    options, min_accuracy, min_macro_f1 = MOP_METHODS[method]
    ref, query = sct.datasets.mop_snareseq2(split="unpaired")
    truth = query.obs["cell_type_coarse"].astype(str).to_numpy()
    query.obs = query.obs.drop(columns=["cell_type_coarse", "cell_type_fine"])
    with sct.settings.override(progress_bar=False):
        sct.tl.label_transfer(ref, query, labels_key="cell_type_coarse", **options)
    assert query.uns["sct_label"]["params"]["method"] == method
    report = sct.metrics.label_transfer_report(
        truth, query.obs["sct_label"], reference_labels=ref.obs["cell_type_coarse"]
    )
    assert report.accuracy > min_accuracy
    assert report.macro_f1 > min_macro_f1
