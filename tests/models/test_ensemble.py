import numpy as np
import pytest

import sctransfer as sct
from sctransfer.models.ensemble._model import self_trained_proba, smooth_on_graph


@pytest.fixture(scope="module")
def pair():
    rna, atac = sct.datasets.simulate_multiome(n_cells=300, n_genes=200, n_types=3, random_state=1)
    return rna, atac


def test_fit_predict_beats_chance_and_is_deterministic(pair):
    rna, atac = pair
    a = sct.models.EnsembleTransfer(random_state=0).fit(rna, labels_key="cell_type").predict_output(atac)
    b = sct.models.EnsembleTransfer(random_state=0).fit(rna, labels_key="cell_type").predict_output(atac)
    np.testing.assert_array_equal(a.proba, b.proba)
    truth = atac.obs["cell_type"].astype(str).to_numpy()
    classes = np.asarray(sorted(rna.obs["cell_type"].astype(str).unique()))
    assert (classes[a.codes] == truth).mean() > 0.8
    np.testing.assert_allclose(a.proba.sum(axis=1), 1.0, atol=1e-6)
    assert ((a.confidence >= 0) & (a.confidence <= 1)).all()
    assert set(a.components) == {"knn_pca", "knn_cca", "linear"}


def test_save_load_round_trip_maps_a_new_query_without_refitting(pair, tmp_path):
    rna, atac = pair
    model = sct.models.EnsembleTransfer().fit(rna, labels_key="cell_type")
    model.save(tmp_path / "m")
    with pytest.raises(ValueError, match="overwrite=True"):
        model.save(tmp_path / "m")
    back = sct.models.EnsembleTransfer.load(tmp_path / "m")
    assert back.classes_ == model.classes_ and back.features_ == model.features_
    np.testing.assert_array_equal(back.predict_output(atac).proba, model.predict_output(atac).proba)
    np.testing.assert_array_equal(back.predict(atac), model.predict(atac))


def test_query_with_fewer_features_is_mapped_on_those(pair):
    rna, atac = pair
    model = sct.models.EnsembleTransfer().fit(rna, labels_key="cell_type")
    sub = atac[:, atac.var_names[:150]].copy()
    out = model.predict_output(sub)
    assert out.info["n_features_used"] == 150


def test_load_rejects_other_directories(tmp_path):
    with pytest.raises(ValueError, match="no EnsembleTransfer model"):
        sct.models.EnsembleTransfer.load(tmp_path)


def test_unfitted_model_says_what_to_do(pair):
    with pytest.raises(ValueError, match="not fitted"):
        sct.models.EnsembleTransfer().predict(pair[1])


def test_smoothing_pulls_a_cell_towards_its_neighbours():
    values = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    indices = np.array([[1, 2], [1, 2], [1, 2]])
    out = smooth_on_graph(values, indices, alpha=0.5, n_steps=3)
    assert out[0, 1] == pytest.approx(0.5)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_self_training_corrects_the_unsure_cells_of_a_clean_query_structure():
    # two well-separated query populations; the experts got a third of each wrong, with low confidence
    rng = np.random.default_rng(0)
    space = np.vstack([rng.normal(0, 1, (100, 5)), rng.normal(6, 1, (100, 5))])
    truth = np.repeat([0, 1], 100)
    codes = truth.copy()
    wrong = rng.random(200) < 1 / 3
    codes[wrong] = 1 - codes[wrong]
    confidence = np.where(wrong, 0.4, 0.9)
    own = self_trained_proba(space, codes, confidence, n_classes=3, C=0.01)
    assert own.shape == (200, 3)
    np.testing.assert_allclose(own.sum(axis=1), 1.0)
    assert (own[:, 2] == 0).all()  # a class the query was never given stays at 0
    assert (own.argmax(axis=1) == truth).mean() > 0.95
    # one confident class: nothing to learn
    assert self_trained_proba(space, np.zeros(200, dtype=int), confidence, n_classes=3, C=0.01) is None


def test_self_training_is_a_setting(pair):
    rna, atac = pair
    model = sct.models.EnsembleTransfer().fit(rna, labels_key="cell_type")
    on = model.predict_output(atac)
    off = sct.models.EnsembleTransfer(self_training=0.0).fit(rna, labels_key="cell_type").predict_output(atac)
    assert on.info["self_trained"] and not off.info["self_trained"]
    assert not np.allclose(on.proba, off.proba)
    # the confidence comes before self-training (the mapping factor aside): it does not depend on it
    a, b = (
        sct.models.EnsembleTransfer(self_training=w, mapping=False).fit(rna, labels_key="cell_type")
        for w in (0.5, 0.0)
    )
    np.testing.assert_allclose(a.predict_output(atac).confidence, b.predict_output(atac).confidence)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("self_training", 1.5), ("smooth_alpha", -0.1), ("n_neighbors", 0), ("C", 0.0), ("sharpen", "2"),
     ("mapping", 1), ("smooth_steps", 2.5)],
)  # fmt: skip
def test_settings_out_of_range_are_refused(pair, setting, value):
    with pytest.raises(ValueError, match=setting):
        sct.models.EnsembleTransfer(**{setting: value})
    rna, atac = pair
    before = atac.copy()
    with pytest.raises(ValueError, match=setting):
        sct.tl.label_transfer(rna, atac, labels_key="cell_type", **{setting: value})
    assert list(atac.obs.columns) == list(before.obs.columns) and list(atac.obsm) == list(before.obsm)


def test_a_type_missing_from_the_reference_gets_a_lower_confidence():
    from sklearn.metrics import roc_auc_score

    rna, atac = sct.datasets.simulate_multiome(n_cells=600, n_genes=200, n_types=4, random_state=3)
    absent = rna.obs["cell_type"].astype(str).unique()[0]
    reference = rna[(rna.obs["cell_type"].astype(str) != absent).to_numpy()].copy()
    out = sct.models.EnsembleTransfer().fit(reference, labels_key="cell_type").predict_output(atac)
    novel = (atac.obs["cell_type"].astype(str) == absent).to_numpy()
    assert roc_auc_score(novel, -out.confidence) > 0.8
    # the mapping score alone marks the missing type too: its cells have few mutual reference neighbours
    assert roc_auc_score(novel, -out.mapping) > 0.9
    plain = (
        sct.models.EnsembleTransfer(mapping=False).fit(reference, labels_key="cell_type").predict_output(atac)
    )
    np.testing.assert_array_equal(plain.codes, out.codes)
    assert (out.confidence <= plain.confidence + 1e-12).all()


def test_query_rep_joins_the_smoothing_graph(pair):
    rna, atac = pair
    atac = atac.copy()
    model = sct.models.EnsembleTransfer().fit(rna, labels_key="cell_type")
    rng = np.random.default_rng(0)
    atac.obsm["X_rand"] = rng.normal(size=(atac.n_obs, 5)).astype(np.float32)
    plain = model.predict_output(atac)
    joined = model.predict_output(atac, query_rep="X_rand")
    assert plain.info["query_graph"] == "joint PCA"
    assert joined.info["query_graph"] == "joint PCA and query_rep"
    assert not np.array_equal(plain.proba, joined.proba)
    with pytest.raises(KeyError, match=r"sct\.pp\.lsi"):
        model.predict_output(atac, query_rep="X_missing")
    atac.obsm["X_bad"] = np.full((atac.n_obs, 2), np.nan)
    with pytest.raises(ValueError, match="NaN"):
        model.predict_output(atac, query_rep="X_bad")


def test_class_capped_rows_keep_small_classes_whole():
    from sctransfer.models.ensemble._model import class_capped_rows

    codes = np.repeat([0, 1, 2, 3], [5, 40, 300, 1000])
    assert class_capped_rows(codes, codes.size, 0) is None
    rows = class_capped_rows(codes, 200, 0)
    counts = np.bincount(codes[rows], minlength=4)
    # 5 and 40 whole, then an equal share of the 155 left for the two large classes
    assert counts.tolist() == [5, 40, 77, 77] and rows.size <= 200
    assert np.all(np.diff(rows) > 0)  # sorted, distinct
    np.testing.assert_array_equal(rows, class_capped_rows(codes, 200, 0))
    assert not np.array_equal(rows, class_capped_rows(codes, 200, 1))


def test_linear_expert_fits_on_a_capped_reference(pair):
    """Above max_linear_cells the logistic regression sees a class-capped sample; below, every cell."""
    rna, atac = pair
    whole = sct.models.EnsembleTransfer().fit(rna, labels_key="cell_type")
    assert whole.linear_cells_ == rna.n_obs
    capped = sct.models.EnsembleTransfer(max_linear_cells=90).fit(rna, labels_key="cell_type")
    assert capped.linear_cells_ <= 90
    out = capped.predict_output(atac)
    assert out.info["linear_cells"] == capped.linear_cells_
    assert not np.array_equal(capped.coef_, whole.coef_)
    # still a classifier: most query cells keep the label the full fit gives them
    assert (capped.predict(atac) == whole.predict(atac)).mean() > 0.8
