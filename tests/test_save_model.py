"""``save_model=``: every verb that trains a model keeps it the same way, and the saved model loads back."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc

import sctransfer as sct
from tests.conftest import assert_unchanged, snapshot
from tests.test_contract import VERBS, _annotated

#: the verbs that train a model, and its class
TRAINERS = {"label_transfer": "EnsembleTransfer", "castle": "CaSTLe", "bermuda": "BERMUDA", "trvae": "TRVAE"}


@pytest.mark.parametrize("name", list(TRAINERS))
def test_save_model_keeps_a_model_that_loads_back(name, tmp_path):
    verb = VERBS[name]
    data, target = verb.prepare()
    target = _annotated(data, target)
    path = tmp_path / "model"
    path.mkdir()  # an empty directory is fine
    verb.call(data, "res", save_model=path)
    assert target.uns["res"]["params"]["save_model"] == str(path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    model = getattr(sct.models, TRAINERS[name]).load(str(path))
    if name in ("bermuda", "trvae"):  # neural: the saved training data come back, and the same latent space
        np.testing.assert_allclose(
            model.get_latent_representation(), target.obsm["X_res"], rtol=1e-4, atol=1e-5
        )
    else:
        labels = target.obs["res"].astype(str).to_numpy()
        kept = labels != "unknown"
        assert kept.mean() > 0.5
        query = target.copy()
        sc.pp.normalize_total(query, target_sum=1e4)  # the CaSTLe model takes log-normalised values
        sc.pp.log1p(query)
        assert (np.asarray(model.predict(query), dtype=str)[kept] == labels[kept]).mean() > 0.95


@pytest.mark.parametrize("name", list(TRAINERS))
def test_save_model_refuses_a_used_path_before_any_work(name, tmp_path):
    verb = VERBS[name]
    data, target = verb.prepare()
    target = _annotated(data, target)
    before = snapshot(target)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an empty directory"):
        verb.call(data, "res", save_model=tmp_path / "model")
    with pytest.raises(ValueError, match="does not exist"):
        verb.call(data, "res", save_model=tmp_path / "no" / "model")
    assert (tmp_path / "model" / "notes.txt").read_text() == "keep me"
    assert_unchanged(target, before)


def test_knn_has_no_model_to_save(tmp_path):
    rna, atac = sct.datasets.simulate_multiome(n_cells=120, n_genes=60, n_types=3)
    with pytest.raises(ValueError, match="fits no model"):
        sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn", save_model=tmp_path / "m")
    assert "sct_label" not in atac.obs
