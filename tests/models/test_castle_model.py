import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from sklearn.metrics import normalized_mutual_info_score

import sctransfer as sct
from sctransfer.models.castle import _features as F
from sctransfer.models.castle._settings import BREAKS_LOG2


def lognorm_pair(n_cells=300, n_genes=150, n_types=4, seed=0):
    source, target = sct.datasets.simulate_multiome(
        n_cells=n_cells,
        n_genes=n_genes,
        n_types=n_types,
        modality_shift=0.3,
        atac_depth=1.0,
        random_state=seed,
    )
    for a in (source, target):
        sc.pp.normalize_total(a, target_sum=1e4)
        sc.pp.log1p(a)
    return source, target


@pytest.fixture
def pair():
    return lognorm_pair()


def fit(source, target=None, **kwargs):
    kwargs = {"n_features": 30, **kwargs}
    return sct.models.CaSTLe(**kwargs).fit(source, target, labels_key="cell_type")


# ---- array-level steps ----


def test_bins_are_right_closed_on_the_log2_scale():
    edges = F.edges_for_base(BREAKS_LOG2, 2)
    np.testing.assert_array_equal(edges, [-1, 0, 1, 6, np.inf])
    x = np.array([[0.0, 1e-9, 1.0, 1.0 + 1e-9, 6.0, 6.0 + 1e-9, 50.0]])
    np.testing.assert_array_equal(F.discretize(x, edges), [[0, 1, 1, 2, 2, 3, 3]])
    # sparse input gives the same bins
    np.testing.assert_array_equal(F.discretize(sp.csr_matrix(x), edges), [[0, 1, 1, 2, 2, 3, 3]])


def test_bins_move_with_the_log_base():
    edges = F.edges_for_base(BREAKS_LOG2, math.e)
    # log2(x + 1) = 1 and 6 are x = 1 and x = 63, i.e. ln(2) and ln(64) on the natural-log scale
    np.testing.assert_allclose(edges[1:4], [0.0, np.log(2), np.log(64)])
    x = np.log1p(np.array([[0.0, 0.5, 1.0, 1.01, 63.0, 63.5]]))
    np.testing.assert_array_equal(F.discretize(x, edges), [[0, 1, 1, 2, 2, 3]])
    edges10 = F.edges_for_base(BREAKS_LOG2, 10)
    np.testing.assert_allclose(edges10[2], np.log10(2))


def test_nmi_matches_the_arithmetic_normalisation():
    rng = np.random.default_rng(0)
    values = rng.choice([0.0, 0.5, 2.0, 8.0], size=(200, 6)) * (rng.random((200, 6)) < 0.6)
    labels = rng.integers(0, 3, 200)
    values[:, 0] = np.where(labels == 1, 3.0, 0.0)  # informative gene
    values[:, 1] = 0.0  # constant gene
    edges = F.edges_for_base(BREAKS_LOG2, 2)
    bins = F.discretize(values, edges)
    expected = [
        normalized_mutual_info_score(labels, bins[:, j], average_method="arithmetic") for j in range(6)
    ]
    assert expected[1] == 0.0  # a constant gene carries nothing
    np.testing.assert_allclose(F.nmi_per_column(values, labels, edges), expected, atol=1e-12)
    np.testing.assert_allclose(F.nmi_per_column(sp.csr_matrix(values), labels, edges), expected, atol=1e-12)
    assert np.argmax(F.nmi_per_column(values, labels, edges)) == 0


def test_nmi_by_hand():
    # bins (0, 0, 1, 1) against labels (0, 0, 0, 1): I = 1.5 ln2 - 0.75 ln3, H(B) = ln2, H(y) = ln4 - 0.75 ln3
    values = np.array([[0.0], [0.0], [0.5], [0.5]])
    labels = np.array([0, 0, 0, 1])
    mutual = 1.5 * np.log(2) - 0.75 * np.log(3)
    h_bins, h_labels = np.log(2), np.log(4) - 0.75 * np.log(3)
    expected = 2 * mutual / (h_bins + h_labels)
    got = F.nmi_per_column(values, labels, F.edges_for_base(BREAKS_LOG2, 2))
    np.testing.assert_allclose(got, [expected])


def test_union_of_rankings():
    by_mean = np.array([5, 4, 3, 2, 1, 0])
    by_nmi = np.array([0, 4, 1, 5, 2, 3])
    np.testing.assert_array_equal(F.union_top(by_mean, by_nmi, 3), [5, 4, 3, 0, 1])
    np.testing.assert_array_equal(F.union_top(by_mean, by_mean, 3), [5, 4, 3])
    # stable descending rank: ties keep their order
    np.testing.assert_array_equal(F.rank_descending(np.array([1.0, 3.0, 1.0, 3.0])), [1, 3, 0, 2])


def test_correlation_filter_reference_is_a_no_op():
    rng = np.random.default_rng(1)
    X = rng.random((50, 4))
    X[:, 2] = X[:, 0] * 2 + 1e-9  # r = 1 with gene 0
    X[:, 3] = 1.0  # constant
    corr = F.correlation_matrix([(X, 1.0)])
    assert F.correlation_keep(corr, 0.9, "reference").all()
    np.testing.assert_array_equal(F.correlation_keep(corr, 0.9, "pearson"), [True, True, False, True])
    X[:, 1] = -X[:, 0]  # anti-correlated counts too
    corr = F.correlation_matrix([(X, 1.0)])
    np.testing.assert_array_equal(F.correlation_keep(corr, 0.9, "pearson"), [True, False, False, True])


def test_correlation_matrix_of_scaled_blocks_in_chunks_is_the_stacked_one(monkeypatch):
    rng = np.random.default_rng(3)
    a = rng.random((70, 6)).astype(np.float32)
    b = rng.random((45, 6)).astype(np.float32)
    b[:, 5] = a[0, 5] = 0.0  # a constant column within one block only
    stacked = np.vstack([a * np.float64(2.0), b * np.float64(0.5)])
    monkeypatch.setattr(F, "_ROWS", 16)  # many chunks, the last ones short
    corr = F.correlation_matrix([(a, 2.0), (b, 0.5)])
    np.testing.assert_allclose(corr, np.corrcoef(stacked, rowvar=False), atol=1e-12)
    zero = np.zeros((5, 2), dtype=np.float32)
    zero[:, 0] = [1, 2, 3, 4, 5]
    assert np.isnan(F.correlation_matrix([(zero, 1.0)])[1]).all()  # a constant gene correlates with nothing


def test_design_matrix_encodings():
    bins = np.array([[0, 2], [1, 2], [2, 3]], dtype=np.int8)
    levels = F.observed_levels(bins)
    assert levels == [[0, 1, 2], [2, 3]]
    onehot = F.design_matrix(bins, levels, "onehot")
    np.testing.assert_array_equal(onehot, [[1, 0, 0, 1, 0], [0, 1, 0, 1, 0], [0, 0, 1, 0, 1]])
    treatment = F.design_matrix(bins, levels, "treatment")
    np.testing.assert_array_equal(treatment, [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 1]])
    names = F.design_columns(["A", "B"], levels, BREAKS_LOG2, "treatment")
    assert names == ["(Intercept)", "A(0,1]", "A(1,6]", "B(6,Inf]"]


def test_balanced_weights():
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 2])
    w = F.balanced_weights(labels, 3)
    totals = np.bincount(labels, weights=w)
    np.testing.assert_allclose(totals, labels.size / 3)


def test_thinning_drops_the_asked_fraction_whatever_the_column_order():
    rng = np.random.default_rng(0)
    X = sp.random(400, 50, density=0.3, random_state=0, format="csr", dtype=np.float64)
    names = [f"g{i}" for i in range(50)]
    thinned = F.thin(X, 0.25, np.random.default_rng(1), names)
    assert thinned.nnz == pytest.approx(0.75 * X.nnz, rel=0.05)
    assert (thinned != X.multiply(thinned > 0)).nnz == 0  # kept values are unchanged
    order = rng.permutation(50)
    shuffled = F.thin(X[:, order], 0.25, np.random.default_rng(1), [names[j] for j in order])
    np.testing.assert_array_equal(shuffled.toarray(), thinned.toarray()[:, order])
    dense = F.thin(X.toarray(), 0.25, np.random.default_rng(1), names)
    np.testing.assert_array_equal(dense, thinned.toarray())


def test_thinning_in_chunks_draws_what_one_draw_does(monkeypatch):
    X = sp.random(300, 40, density=0.3, random_state=2, format="csr", dtype=np.float32)
    names = [f"g{i}" for i in range(40)]
    whole = F.thin(X, 0.3, np.random.default_rng(5), names)
    monkeypatch.setattr(F, "_THIN_CHUNK", 97)  # many chunks, the last one short
    chunked = F.thin(X, 0.3, np.random.default_rng(5), names)
    np.testing.assert_array_equal(chunked.toarray(), whole.toarray())


def test_binning_sparse_values_is_binning_them_dense():
    edges = F.edges_for_base(BREAKS_LOG2, math.e)
    X = sp.random(60, 9, density=0.4, random_state=4, format="csr", dtype=np.float32)
    X.data *= 12.0
    expected = np.searchsorted(edges, X.toarray(), side="left") - 1
    expected[expected >= len(edges) - 1] = -1
    np.testing.assert_array_equal(F.discretize(X, edges), expected)
    np.testing.assert_array_equal(F.discretize(X.toarray(), edges), expected)
    unsorted = X[:, ::-1][:, ::-1]  # the same values, the indices stored out of order
    unsorted.has_canonical_format = False
    np.testing.assert_array_equal(F.discretize(unsorted, edges), expected)


def test_training_on_design_chunks_is_training_on_the_whole_design(monkeypatch):
    import xgboost as xgb

    from sctransfer.models.castle._model import _training_matrix

    rng = np.random.default_rng(2)
    bins = rng.integers(0, 4, size=(300, 12)).astype(np.int8)
    y = ((bins[:, 0] == 1) | (bins[:, 3] > 2)).astype(np.float32)
    rows, cols = np.arange(20, 300), np.array([0, 3, 5, 7])
    levels = F.observed_levels(bins[:, cols])
    weight = F.balanced_weights(y[rows].astype(np.int64), 2)
    params = {"tree_method": "hist", "objective": "binary:logistic", "nthread": 1, "seed": 0, "max_depth": 3}
    whole = xgb.DMatrix(F.design_matrix(bins[rows][:, cols], levels, "onehot"), label=y[rows], weight=weight)
    monkeypatch.setattr(F, "_ROWS", 64)  # five chunks, the last one short
    chunked = _training_matrix(xgb, bins, rows, cols, levels, "onehot", y[rows], weight, params)
    assert isinstance(chunked, xgb.QuantileDMatrix)
    a, b = (xgb.train(params, m, num_boost_round=5) for m in (whole, chunked))
    assert a.save_raw() == b.save_raw()


def test_prediction_by_row_chunks_is_the_same(pair, monkeypatch):
    source, target = pair
    model = fit(source, target)
    whole = model.predict_proba(target)
    monkeypatch.setattr(F, "_ROWS", 37)
    pd.testing.assert_frame_equal(model.predict_proba(target), whole)


def test_fit_out_of_memory_names_the_step_and_what_lowers_it(pair, monkeypatch):
    source, target = pair
    thin = F.thin

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 421. MiB")

    monkeypatch.setattr(F, "thin", out_of_memory)
    # a target that detects half the genes: the default preset thins the source to match it
    shallow = target.copy()
    shallow.X = thin(sp.csr_matrix(target.X), 0.5, np.random.default_rng(0), list(target.var_names))
    with pytest.raises(MemoryError, match=r"CaSTLe's fit on 300 source x 300 target cells.*GB.*subsample"):
        fit(source, shallow)


# ---- the model ----


def test_fit_predict_recovers_simulated_types(pair):
    source, target = pair
    clf = fit(source, target)
    pred = clf.predict(target)
    truth = target.obs["cell_type"].astype(str).to_numpy()
    assert np.mean(pred == truth) > 0.85
    proba = clf.predict_proba(target)
    assert list(proba.columns) == clf.classes_ == sorted(source.obs["cell_type"].unique())
    assert proba.index.equals(target.obs_names)
    assert ((proba >= 0) & (proba <= 1)).all().all()
    # rejected cells are exactly those with no probability above the threshold
    np.testing.assert_array_equal(pred == "Not Classified", proba.max(axis=1).to_numpy() <= 0.5)


def test_feature_union_size(pair):
    source, target = pair
    clf = fit(source, target, n_features=30)
    table = clf.features_
    assert sorted(table["model"].unique()) == clf.classes_
    for _, t in table.groupby("model"):
        assert 30 <= len(t) <= 60
        assert t["by_mean"].sum() == 30 and t["by_nmi"].sum() == 30
        assert len(t) == (t["by_mean"] | t["by_nmi"]).sum()
        assert t["gene"].is_unique
        assert (t["used"] == ~(t["correlated"] | t["single_bin"])).all()
    # the mean ranking is shared by every one-vs-rest classifier; the NMI genes are per type
    mean_sets = {frozenset(t.loc[t["by_mean"], "gene"]) for _, t in table.groupby("model")}
    assert len(mean_sets) == 1
    nmi_sets = {frozenset(t.loc[t["by_nmi"], "gene"]) for _, t in table.groupby("model")}
    assert len(nmi_sets) > 1


def test_detection_matching(pair):
    source, target = pair
    shallow = target.copy()
    shallow.X = F.thin(target.X, 0.4, np.random.default_rng(0), list(target.var_names))
    clf = fit(source, shallow)
    info = clf.fit_info_
    assert info["detected_per_cell_target"] < info["detected_per_cell_source"]
    expected = 1 - info["detected_per_cell_target"] / info["detected_per_cell_source"]
    assert info["source_dropout"] == pytest.approx(expected)
    # only a deeper source is thinned; the faithful preset and match_detection=False never thin
    assert fit(shallow, source).fit_info_["source_dropout"] == 0.0
    assert fit(source, shallow, preset="faithful").fit_info_["source_dropout"] == 0.0
    assert fit(source, shallow, match_detection=False).fit_info_["source_dropout"] == 0.0
    assert fit(source).fit_info_["source_dropout"] == 0.0


def test_multiclass_mode(pair):
    source, target = pair
    clf = fit(source, target, mode="multiclass")
    proba = clf.predict_proba(target)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert set(clf.features_["model"]) == {"multiclass"}
    assert "Not Classified" not in set(clf.predict(target))  # no rejection unless a threshold is set
    pred = fit(source, target, mode="multiclass", threshold=0.99).predict(target)
    assert "Not Classified" in set(pred)


def test_same_seed_same_model(pair):
    source, target = pair
    for kwargs in ({}, {"mode": "multiclass", "reference": True}):
        a = fit(source, target, **kwargs).predict_proba(target)
        b = fit(source, target, **kwargs).predict_proba(target)
        pd.testing.assert_frame_equal(a, b)
    # the faithful preset's multiclass subsample follows random_state
    one = fit(source, target, mode="multiclass", preset="faithful", random_state=1)
    two = fit(source, target, mode="multiclass", preset="faithful", random_state=2)
    assert one.fit_info_["n_known_label_cells"] == source.n_obs
    assert one.fit_info_["n_training_cells"] < source.n_obs
    assert not one.predict_proba(target).equals(two.predict_proba(target))


def test_save_load_round_trip(pair, tmp_path):
    source, target = pair
    for mode in ("one_vs_rest", "multiclass"):
        clf = fit(source, target, mode=mode, preset="faithful" if mode == "multiclass" else "default")
        clf.save(tmp_path / mode)
        back = sct.models.CaSTLe.load(tmp_path / mode)
        assert back.settings == clf.settings
        assert back.classes_ == clf.classes_
        pd.testing.assert_frame_equal(back.predict_proba(target), clf.predict_proba(target))
        np.testing.assert_array_equal(back.predict(target), clf.predict(target))
        pd.testing.assert_frame_equal(back.features_, clf.features_)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        clf.save(tmp_path / "multiclass")
    clf.save(tmp_path / "multiclass", overwrite=True)
    with pytest.raises(FileNotFoundError, match=r"CaSTLe\.save"):
        sct.models.CaSTLe.load(tmp_path / "nothing")


def test_gene_order_does_not_matter(pair):
    source, target = pair
    expected = fit(source, target).predict_proba(target)
    rng = np.random.default_rng(0)
    shuffled_target = target[:, rng.permutation(target.n_vars)].copy()
    shuffled_source = source[:, rng.permutation(source.n_vars)].copy()
    got = fit(shuffled_source, shuffled_target)
    # the mean ranking breaks ties by source gene order; the simulated values have no ties that matter
    pd.testing.assert_frame_equal(got.predict_proba(shuffled_target), expected)
    # a fitted model matches genes by name in any new data
    pd.testing.assert_frame_equal(fit(source, target).predict_proba(shuffled_target), expected)


def test_gene_case(pair):
    source, target = pair
    expected = fit(source, target).predict_proba(target)
    upper = target.copy()
    upper.var_names = [g.upper() for g in target.var_names]
    with pytest.raises(ValueError, match="gene_case='ignore'"):
        fit(source, upper)
    got = fit(source, upper, gene_case="ignore").predict_proba(upper)
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
    # a name that collides when case is ignored is an error, not a silent choice
    clash = source.copy()
    clash.var_names = ["GENE_0", "gene_0", *source.var_names[2:]]
    with pytest.raises(ValueError, match="differ only in case"):
        fit(clash, target, gene_case="ignore")


def test_predict_needs_the_model_genes(pair):
    source, target = pair
    clf = fit(source, target)
    used = clf.features_.loc[clf.features_["used"], "gene"].iloc[0]
    with pytest.raises(ValueError, match="missing from the data to predict"):
        clf.predict(target[:, target.var_names != used].copy())
    with pytest.raises(ValueError, match="not fitted"):
        sct.models.CaSTLe().predict(target)


def test_fit_without_target(pair):
    source, target = pair
    clf = fit(source)
    assert clf.fit_info_["transductive"] is False
    truth = target.obs["cell_type"].astype(str).to_numpy()
    assert np.mean(clf.predict(target) == truth) > 0.8


# ---- faithful preset: the quirks of the R scripts ----


def test_presets_resolve():
    ref = sct.models.CaSTLe(preset="faithful").settings
    default = sct.models.CaSTLe().settings
    assert (ref.preset, default.preset) == ("faithful", "default")
    assert (ref.correlation_filter, default.correlation_filter) == ("reference", "pearson")
    assert (ref.unknown_case_sensitive, default.unknown_case_sensitive) == (True, False)
    assert (ref.encoding, default.encoding) == ("treatment", "onehot")
    assert (ref.log_base, default.log_base) == (2.0, "auto")
    assert (ref.two_class_objective, default.two_class_objective) == ("reg:squarederror", "binary:logistic")
    assert (ref.class_weight, default.class_weight) == ("none", "balanced")
    assert (ref.match_detection, default.match_detection) == (False, True)
    assert (ref.xgb_params["tree_method"], default.xgb_params["tree_method"]) == ("exact", "hist")
    assert (ref.train_fraction, default.train_fraction) == (0.8, 1.0)
    assert ref.threshold == default.threshold == 0.5
    assert ref.xgb_params["eta"] == 0.7 and ref.xgb_params["base_score"] == 0.5
    assert ref.n_rounds == 20 and ref.breaks == (-1.0, 0.0, 1.0, 6.0, math.inf)
    # an explicit option beats the preset
    assert sct.models.CaSTLe(preset="faithful", encoding="onehot").settings.encoding == "onehot"
    assert sct.models.CaSTLe(mode="multiclass").settings.threshold is None
    assert (
        repr(sct.models.CaSTLe(preset="faithful"))
        == "CaSTLe(mode='one_vs_rest', preset='faithful', not fitted)"
    )


def test_deprecated_reference_alias_warns_and_equals_the_faithful_preset(pair):
    source, target = pair
    with pytest.warns(FutureWarning, match="reference=True is deprecated; use preset='faithful'"):
        alias = sct.models.CaSTLe(reference=True)
    assert alias.settings == sct.models.CaSTLe(preset="faithful").settings
    with pytest.warns(FutureWarning):
        old = fit(source, target, reference=True, mode="multiclass")
    new = fit(source, target, preset="faithful", mode="multiclass")
    np.testing.assert_array_equal(old.predict_proba(target).to_numpy(), new.predict_proba(target).to_numpy())
    with pytest.raises(ValueError, match=r"preset must be one of \['default', 'faithful'\], got 'reference'"):
        sct.models.CaSTLe(preset="reference")
    with pytest.raises(ValueError, match="contradict"), pytest.warns(FutureWarning):
        sct.models.CaSTLe(reference=False, preset="faithful")
    with pytest.raises(ValueError, match="reference must be True or False"):
        sct.models.CaSTLe(reference="yes")


def test_a_model_saved_with_the_reference_switch_still_loads(pair, tmp_path):
    import json

    source, target = pair
    clf = fit(source, target, preset="faithful")
    clf.save(tmp_path / "m")
    file = tmp_path / "m" / "castle.json"
    content = json.loads(file.read_text())
    assert content["format_version"] == 2 and content["settings"]["preset"] == "faithful"
    # the format before the preset vocabulary
    content["format_version"] = 1
    content["settings"]["reference"] = content["settings"].pop("preset") == "faithful"
    file.write_text(json.dumps(content))
    back = sct.models.CaSTLe.load(tmp_path / "m")
    assert back.settings == clf.settings
    np.testing.assert_array_equal(back.predict_proba(target).to_numpy(), clf.predict_proba(target).to_numpy())


def test_reference_unknown_pattern_is_case_sensitive(pair):
    source, target = pair
    labels = source.obs["cell_type"].astype(str).to_numpy().copy()
    labels[:20] = "Unknown"
    labels[20:30] = "unknown"
    source.obs["cell_type"] = labels
    ref = fit(source, target, preset="faithful")
    default = fit(source, target)
    assert "Unknown" in ref.classes_ and "unknown" not in ref.classes_
    assert ref.fit_info_["dropped_labels"] == ["unknown"]
    assert "Unknown" not in default.classes_ and default.fit_info_["dropped_labels"] == ["Unknown", "unknown"]
    assert (
        default.fit_info_["n_known_label_cells"] == default.fit_info_["n_training_cells"] == source.n_obs - 30
    )
    # the reference multiclass script keeps unknown labels as a class
    assert "unknown" in fit(source, target, preset="faithful", mode="multiclass").classes_
    assert "unknown" not in fit(source, target, mode="multiclass").classes_


def test_reference_design_and_correlation(pair):
    source, target = pair
    dup = source.var_names[5]
    for a in (source, target):  # replace the last gene by a perfectly correlated copy of another
        X = a.X.toarray()
        X[:, -1] = X[:, a.var_names.get_loc(dup)]
        a.X = sp.csr_matrix(X)
        a.var_names = [*a.var_names[:-1], "COPY"]
    ref = fit(source, target, preset="faithful", n_features=150)
    default = fit(source, target, n_features=150)
    for clf in (ref, default):
        assert {dup, "COPY"} <= set(clf.features_["gene"])
    assert not ref.features_["correlated"].any()
    assert default.features_.loc[default.features_["gene"] == "COPY", "correlated"].all()
    # treatment coding: an intercept plus one column per observed bin but the first
    booster_ref = ref._classifiers[0]
    n_cols = 1 + sum(len(lv) - 1 for lv in booster_ref.levels)
    assert booster_ref.booster.num_features() == n_cols
    booster_def = default._classifiers[0]
    assert booster_def.booster.num_features() == sum(len(lv) for lv in booster_def.levels)


def test_reference_two_classes_regression_objective(pair):
    source, target = pair
    keep = source.obs["cell_type"].isin(["type_0", "type_1"]).to_numpy()
    two = source[keep].copy()
    ref = fit(two, target, preset="faithful", mode="multiclass")
    default = fit(two, target, mode="multiclass")
    assert ref._classifiers[0].objective == "reg:squarederror"
    assert default._classifiers[0].objective == "binary:logistic"
    # the reference trains on a random ~80 % of the source cells, the default on all of them
    assert 0.7 * two.n_obs < ref.fit_info_["n_training_cells"] < 0.9 * two.n_obs
    assert default.fit_info_["n_training_cells"] == two.n_obs
    proba = ref.predict_proba(target)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # the class whose code (0 or 1) is nearer to the regression output
    assert set(ref.predict(target)) <= {"type_0", "type_1"}


def test_reference_bins_use_values_as_they_are(pair):
    source, target = pair
    # natural-log values: the default moves the edges, the reference applies them to the raw values
    ref = fit(source, target, preset="faithful")
    default = fit(source, target)
    assert ref.fit_info_["log_base_source"] == 2.0
    assert default.fit_info_["log_base_source"] == pytest.approx(math.e)
    source.uns["log1p"] = {"base": 10}
    assert fit(source, target).fit_info_["log_base_source"] == 10.0
    # values in log2 units with log_base=2 give the same model as natural-log values with the default
    s2, t2 = source.copy(), target.copy()
    for a in (s2, t2):
        a.X = a.X / np.log(2)
        a.uns.pop("log1p", None)
    del source.uns["log1p"]
    np.testing.assert_allclose(
        fit(s2, t2, log_base=2).predict_proba(t2).to_numpy(),
        default.predict_proba(target).to_numpy(),
        atol=1e-6,
    )


# ---- options and bad input ----


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "multi"}, "mode must be one of"),
        ({"breaks": (0, 1, 6)}, "breaks must be"),
        ({"breaks": (-1, 1, 0, math.inf)}, "breaks must be"),
        ({"threshold": 1.5}, "threshold must be"),
        ({"log_base": 1}, "log_base must be"),
        ({"n_features": 0}, "n_features must be"),
        ({"correlation_filter": "spearman"}, "correlation_filter must be"),
        ({"xgb_params": {"objective": "multi:softprob"}}, "must not set"),
        ({"train_fraction": 0.0}, "train_fraction must be"),
        ({"gene_case": "upper"}, "gene_case must be"),
        ({"unknown_pattern": "unknown("}, "unknown_pattern must be"),
        ({"class_weight": "sqrt"}, "class_weight must be"),
        ({"n_jobs": 0}, "n_jobs must be"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sct.models.CaSTLe(**kwargs)


def test_bad_labels(pair):
    source, target = pair
    with pytest.raises(KeyError, match="not found"):
        sct.models.CaSTLe().fit(source, target, labels_key="celltype")
    nan = source.copy()
    nan.obs["cell_type"] = nan.obs["cell_type"].astype(object)
    nan.obs.iloc[3, nan.obs.columns.get_loc("cell_type")] = np.nan
    with pytest.raises(ValueError, match="1 source cells have no label"):
        fit(nan, target)
    one = source.copy()
    one.obs["cell_type"] = "T cell"
    with pytest.raises(ValueError, match="1 class"):
        fit(one, target)
    only_unknown = source.copy()
    only_unknown.obs["cell_type"] = np.where(np.arange(source.n_obs) < 100, "B", "unknown")
    with pytest.raises(ValueError, match="without its unknown labels has 1 class"):
        fit(only_unknown, target)
    rejected = source.copy()
    rejected.obs["cell_type"] = np.where(np.arange(source.n_obs) < 100, "B", "Not Classified")
    with pytest.raises(ValueError, match="names CaSTLe uses for rejected cells"):
        fit(rejected, target)


def test_no_shared_gene_after_the_filter(pair):
    source, target = pair
    with pytest.raises(ValueError, match="no gene is detected"):
        fit(source, target, min_cells=source.n_obs)
    renamed = target.copy()
    renamed.var_names = [f"peak_{i}" for i in range(target.n_vars)]
    with pytest.raises(ValueError, match="share no gene names"):
        fit(source, renamed)


def test_fit_and_predict_read_backed_data(pair, tmp_path):
    source, target = pair
    target = target[:, target.var_names[::-1]].copy()  # the shared genes in another order than the source
    source.write_h5ad(tmp_path / "s.h5ad")
    target.write_h5ad(tmp_path / "t.h5ad")
    in_memory = fit(source, target).predict(target)
    backed_source = ad.read_h5ad(tmp_path / "s.h5ad", backed="r")
    backed_target = ad.read_h5ad(tmp_path / "t.h5ad", backed="r")
    backed = fit(backed_source, backed_target).predict(backed_target)
    np.testing.assert_array_equal(backed, in_memory)


@pytest.mark.parametrize("sparse", [False, True])
def test_joint_counts_give_every_one_vs_rest_nmi(sparse, monkeypatch):
    """The one-pass counts of all classes give each class-vs-rest NMI exactly as binning for it alone."""
    rng = np.random.default_rng(3)
    values = rng.choice([0.0, 0.3, 1.5, 6.0], size=(300, 7)) * (rng.random((300, 7)) < 0.5)
    labels = rng.integers(0, 4, 300)
    X = sp.csr_matrix(values) if sparse else values
    edges = F.edges_for_base(BREAKS_LOG2, 2)
    monkeypatch.setattr(F, "_ROWS", 64)  # several chunks
    joint = F.joint_counts(X, labels, edges, 4)
    assert joint.sum() == 300 * 7 and np.all(joint == np.round(joint))
    np.testing.assert_array_equal(F.nmi_from_joint(joint), F.nmi_per_column(values, labels, edges))
    for k in range(4):
        alone = F.nmi_per_column(values, (labels == k).astype(int), edges)
        np.testing.assert_array_equal(F.nmi_from_joint(F.one_vs_rest_joint(joint, k)), alone)
