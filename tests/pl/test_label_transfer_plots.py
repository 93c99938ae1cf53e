import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection, QuadMesh

import sctransfer as sct
from tests.conftest import assert_unchanged, snapshot


@pytest.fixture(scope="module")
def transferred():
    rna, atac = sct.datasets.simulate_multiome(n_cells=200, n_genes=80, n_types=3)
    sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn")
    # one rejected cell, so the "unknown" column is exercised
    atac.obs["sct_label"] = atac.obs["sct_label"].cat.add_categories(["unknown"])
    atac.obs.iloc[0, atac.obs.columns.get_loc("sct_label")] = "unknown"
    return rna, atac


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _tick_texts(labels):
    return [t.get_text() for t in labels]


def test_confusion_cells_ticks_and_counts(transferred):
    _, atac = transferred
    cm = sct.metrics.confusion_matrix(atac.obs["cell_type"], atac.obs["sct_label"])
    ax = sct.pl.confusion(atac, "cell_type", "sct_label")
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    assert meshes[0].get_array().size == cm.shape[0] * cm.shape[1]
    assert _tick_texts(ax.get_xticklabels()) == list(cm.columns)
    assert _tick_texts(ax.get_xticklabels())[-1] == "unknown"
    assert _tick_texts(ax.get_yticklabels()) == list(cm.index)
    texts = [t.get_text() for t in ax.texts]
    assert texts == [str(v) for v in cm.to_numpy().ravel()]
    # colours are row fractions
    fractions = np.asarray(meshes[0].get_array()).reshape(cm.shape)
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0)


def test_confusion_unnormalized_into_ax_and_save(transferred, tmp_path):
    _, atac = transferred
    _, ax = plt.subplots()
    path = tmp_path / "cm.png"
    out = sct.pl.confusion(atac, "cell_type", "sct_label", normalize=False, ax=ax, save=path)
    assert out is ax
    assert path.is_file() and path.stat().st_size > 0
    counts = np.asarray(ax.collections[0].get_array())
    assert counts.sum() == atac.n_obs


def test_sankey_one_band_per_nonzero_pair(transferred, tmp_path):
    _, atac = transferred
    cm = sct.metrics.confusion_matrix(atac.obs["cell_type"], atac.obs["sct_label"])
    path = tmp_path / "sankey.pdf"
    ax = sct.pl.sankey(atac, "cell_type", "sct_label", save=path)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == int((cm.to_numpy() > 0).sum())
    assert all(b.get_gid() == "sankey-band" for b in bands)
    labels = {t.get_text().rsplit(" (", 1)[0] for t in ax.texts}
    assert set(cm.index) | {"unknown"} <= labels
    assert path.is_file()
    # small flows can be hidden
    ax2 = sct.pl.sankey(atac, "cell_type", "sct_label", min_fraction=0.5)
    assert len([c for c in ax2.collections if isinstance(c, PolyCollection)]) < len(bands)


def test_joint_embedding_panels_and_inputs_unchanged(transferred, tmp_path):
    rna, atac = transferred
    before_rna, before_atac = snapshot(rna), snapshot(atac)
    path = tmp_path / "joint.png"
    fig = sct.pl.joint_embedding(rna, atac, save=path)  # X_sct_label, the embedding of key_added="sct_label"
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["modality", "predicted / reference label"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sorted(legend) == ["ATAC", "RNA"]
    assert path.is_file()
    assert_unchanged(rna, before_rna)
    assert_unchanged(atac, before_atac)

    fig = sct.pl.joint_embedding(rna, atac, color=["modality", "label", "cell_type"], rna_key="cell_type")
    assert len(fig.axes) == 3


def test_joint_embedding_follows_key_added():
    rna, atac = sct.datasets.simulate_multiome(n_cells=120, n_genes=60, n_types=3, random_state=1)
    sct.tl.label_transfer(rna, atac, labels_key="cell_type", method="knn", n_comps=10, key_added="pred")
    assert "X_pred" in rna.obsm and "X_pred" in atac.obsm
    fig = sct.pl.joint_embedding(rna, atac, atac_key="pred")
    legend = {t.get_text() for t in fig.axes[1].get_legend().get_texts()}
    assert legend == {"type_0", "type_1", "type_2"}
    with pytest.raises(KeyError, match="X_sct_label"):
        sct.pl.joint_embedding(rna, atac)  # the default key_added was not used


def test_confidence_boxes_and_threshold(transferred, tmp_path):
    _, atac = transferred
    path = tmp_path / "conf.png"
    ax = sct.pl.confidence(atac, "sct_label", threshold=0.5, save=path)
    cats = ["type_0", "type_1", "type_2", "unknown"]
    assert _tick_texts(ax.get_xticklabels()) == cats
    assert len(ax.patches) == len(cats)  # one box patch per predicted label
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1
    np.testing.assert_allclose(dashed[0].get_ydata(), [0.5, 0.5])
    assert path.is_file()


def test_confidence_threshold_from_uns(transferred):
    _, atac = transferred
    adata = atac.copy()
    adata.uns["sct_label"] = {"params": {**adata.uns["sct_label"]["params"], "unknown_threshold": 0.3}}
    ax = sct.pl.confidence(adata)
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    np.testing.assert_allclose(dashed[0].get_ydata(), [0.3, 0.3])
    # the knn run records no threshold: no line
    ax = sct.pl.confidence(atac)
    assert not [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]


def test_missing_keys_raise(transferred):
    rna, atac = transferred
    with pytest.raises(KeyError, match="nope"):
        sct.pl.confusion(atac, "nope", "sct_label")
    with pytest.raises(KeyError, match="nope"):
        sct.pl.sankey(atac, "cell_type", "nope")
    with pytest.raises(KeyError, match="nope"):
        sct.pl.confidence(atac, "nope")
    with pytest.raises(KeyError, match="X_missing"):
        sct.pl.joint_embedding(rna, atac, basis="X_missing")
    with pytest.raises(KeyError, match="nope"):
        sct.pl.joint_embedding(rna, atac, color="nope")
    with pytest.raises(ValueError, match="min_fraction"):
        sct.pl.sankey(atac, "cell_type", "sct_label", min_fraction=1.5)


def test_confidence_reads_castle_results(transferred):
    rna, atac = transferred
    adata = atac.copy()
    sct.tl.castle(rna, adata, labels_key="cell_type", n_features=20, n_rounds=5)
    assert adata.uns["castle"]["params"]["unknown_threshold"] is None
    ax = sct.pl.confidence(adata, "castle")
    # CaSTLe's own rejection threshold (0.5 in the default preset), read from the fit settings
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    np.testing.assert_allclose(dashed[0].get_ydata(), [0.5, 0.5])
    assert ax.get_xlabel() == "predicted label (castle)"
    # with both thresholds set, the line is at the larger one
    sct.tl.label_transfer(rna, adata, labels_key="cell_type", method="castle", key_added="castle",
                          unknown_threshold=0.7, n_features=20, n_rounds=5)  # fmt: skip
    ax = sct.pl.confidence(adata, "castle")
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    np.testing.assert_allclose(dashed[0].get_ydata(), [0.7, 0.7])
