import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import sctransfer as sct

RESULTS = pd.DataFrame(
    {
        "divergence": [8.2, 0.6, 0.1],
        "entropy": [0.9, 0.4, np.nan],
        "silhouette": [0.37, 0.65, -0.05],
        "batch_entropy": [0.1, 0.5, 0.6],
    },
    index=["uncorrected", "Harmony", "BERMUDA"],
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _bars(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_gid() and "|" in p.get_gid()]


def test_alignment_scores_panels_heights_and_labels(tmp_path):
    path = tmp_path / "scores.png"
    fig = sct.pl.alignment_scores(RESULTS, save=path)
    assert isinstance(fig, Figure)
    assert path.is_file() and path.stat().st_size > 0
    assert len(fig.axes) == RESULTS.shape[1]
    for ax, score in zip(fig.axes, RESULTS.columns, strict=True):
        bars = _bars(ax)
        assert [b.get_gid() for b in bars] == [f"{m}|{score}" for m in RESULTS.index]
        heights = np.array([b.get_height() for b in bars])
        np.testing.assert_allclose(heights, RESULTS[score].to_numpy())
        (tick,) = [t.get_text() for t in ax.get_xticklabels()]
        assert tick.startswith(score)
        lower = score in ("divergence", "entropy")
        assert ("lower is better" in tick) is lower
        assert ("higher is better" in tick) is not lower
        # one value label per drawn bar (the NaN entropy of BERMUDA has none)
        assert len(ax.texts) == int(RESULTS[score].notna().sum())
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts == list(RESULTS.index)


def test_alignment_scores_dict_into_one_ax():
    results = {"A": {"silhouette": 0.5, "divergence": 1.0}, "B": {"silhouette": 0.7, "divergence": 0.2}}
    _, ax = plt.subplots()
    out = sct.pl.alignment_scores(results, ax=ax, scores=["divergence", "silhouette"])
    assert out is ax
    bars = _bars(ax)
    assert len(bars) == 4
    heights = {b.get_gid(): b.get_height() for b in bars}
    assert heights == {"A|divergence": 1.0, "A|silhouette": 0.5, "B|divergence": 0.2, "B|silhouette": 0.7}
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["divergence\n(lower is better)", "silhouette\n(higher is better)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B"]
    # bars of one method share a colour; the two methods differ
    colours = {b.get_gid().split("|")[0]: b.get_facecolor() for b in bars}
    assert colours["A"] != colours["B"]


def test_alignment_scores_errors():
    with pytest.raises(KeyError, match="not in results"):
        sct.pl.alignment_scores(RESULTS, scores=["kbet"])
    with pytest.raises(ValueError, match="number"):
        sct.pl.alignment_scores(pd.DataFrame({"silhouette": ["high"]}, index=["A"]))
    with pytest.raises(TypeError):
        sct.pl.alignment_scores([1, 2, 3])


def _cells(means, n_cells, rng, names):
    X = rng.poisson(np.tile(means, (n_cells, 1))).astype(np.float32)
    return ad.AnnData(X=sp.csr_matrix(X), var=pd.DataFrame(index=names))


@pytest.fixture(scope="module")
def conditions():
    rng = np.random.default_rng(0)
    names = [f"g{i}" for i in range(60)]
    base = rng.gamma(2.0, 1.0, 60)
    stim = base.copy()
    stim[:5] *= 6.0  # five responders
    control = _cells(base, 80, rng, names)
    real = _cells(stim, 80, rng, names)
    pred = _cells(stim * rng.uniform(0.8, 1.2, 60), 80, rng, names)
    return pred, real, control


def _r2(x, y):
    return np.corrcoef(x, y)[0, 1] ** 2


def test_mean_expression_r2_text_and_labels(conditions, tmp_path):
    pred, real, control = conditions
    path = tmp_path / "means.png"
    ax = sct.pl.mean_expression(pred, real, control=control, top_genes=5, save=path)
    assert path.is_file()
    real_means = np.asarray(real.X.mean(axis=0)).ravel()
    pred_means = np.asarray(pred.X.mean(axis=0)).ravel()
    points = ax.collections[0].get_offsets()
    np.testing.assert_allclose(points[:, 0], real_means, rtol=1e-6)
    np.testing.assert_allclose(points[:, 1], pred_means, rtol=1e-6)
    (r2_text,) = [t for t in ax.texts if t.get_gid() == "r2"]
    lines = r2_text.get_text().splitlines()
    assert lines[0] == f"R² = {_r2(real_means, pred_means):.3f} (all 60 genes)"
    X = sp.vstack([real.X, control.X])
    conditions = ["STIM"] * real.n_obs + ["CTRL"] * control.n_obs
    ranked = sct.metrics.condition_degs(
        X, conditions, target="STIM", reference="CTRL", var_names=real.var_names
    )
    top = list(ranked["gene"][:3]) + list(ranked["gene"][::-1][:2])  # 3 up, 2 down
    assert set(ranked["gene"][:3]) <= {f"g{i}" for i in range(5)}  # the simulated responders
    pos = [real.var_names.get_loc(g) for g in top]
    assert lines[1] == f"R² = {_r2(real_means[pos], pred_means[pos]):.3f} (top 5 DEGs)"
    labels = sorted(t.get_text() for t in ax.texts if t.get_gid() == "gene-label")
    assert labels == sorted(top)


def test_mean_expression_given_genes_any_gene_order(conditions):
    pred, real, _ = conditions
    shuffled = real[:, real.var_names[::-1]].copy()
    _, ax = plt.subplots()
    out = sct.pl.mean_expression(pred, shuffled, ["g10", "g3", "g40"], ax=ax)
    assert out is ax
    labels = [t.get_text() for t in ax.texts if t.get_gid() == "gene-label"]
    assert sorted(labels) == ["g10", "g3", "g40"]
    (r2_text,) = [t.get_text() for t in ax.texts if t.get_gid() == "r2"]
    assert "(given genes)" in r2_text
    real_means = np.asarray(real.X.mean(axis=0)).ravel()
    pred_means = np.asarray(pred.X.mean(axis=0)).ravel()
    assert f"R² = {_r2(real_means, pred_means):.3f} (all 60 genes)" in r2_text


def test_mean_expression_without_labels_and_errors(conditions):
    pred, real, _ = conditions
    ax = sct.pl.mean_expression(pred, real)
    assert not [t for t in ax.texts if t.get_gid() == "gene-label"]
    assert len(next(t for t in ax.texts if t.get_gid() == "r2").get_text().splitlines()) == 1
    with pytest.raises(ValueError, match="same genes"):
        sct.pl.mean_expression(pred[:, :50], real)
    with pytest.raises(KeyError, match=r"not in pred\.var_names"):
        sct.pl.mean_expression(pred, real, ["nope"])
    with pytest.raises(KeyError, match="layer"):
        sct.pl.mean_expression(pred, real, layer="counts")
