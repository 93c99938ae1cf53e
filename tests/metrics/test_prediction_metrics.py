import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import linregress

from sctransfer.metrics import PredictionR2, condition_degs, prediction_r2, r2_mean, r2_var


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    real = rng.gamma(2.0, rng.uniform(0.2, 3.0, 30), (80, 30))
    pred = real[rng.permutation(80)][:60] * 1.1 + rng.normal(0, 0.2, (60, 30))
    return pred, real


def test_r2_is_squared_pearson_of_means_and_variances(pair):
    pred, real = pair
    expected_mean = linregress(pred.mean(0), real.mean(0)).rvalue ** 2
    expected_var = linregress(pred.var(0), real.var(0)).rvalue ** 2
    assert r2_mean(pred, real) == pytest.approx(expected_mean)
    assert r2_var(pred, real) == pytest.approx(expected_var)
    genes = [0, 3, 5, 7, 11]
    assert r2_mean(pred, real, genes=genes) == pytest.approx(
        linregress(pred[:, genes].mean(0), real[:, genes].mean(0)).rvalue ** 2
    )
    mask = np.zeros(30, bool)
    mask[genes] = True
    assert r2_mean(sp.csr_matrix(pred), real, genes=mask) == pytest.approx(r2_mean(pred, real, genes=genes))
    assert r2_mean(real, real) == pytest.approx(1.0)


def test_bootstrap_is_seeded_and_centred(pair):
    pred, real = pair
    a = prediction_r2(pred, real, n_bootstrap=50, random_state=1)
    b = prediction_r2(pred, real, n_bootstrap=50, random_state=1)
    assert isinstance(a, PredictionR2)
    np.testing.assert_array_equal(a.mean_boot, b.mean_boot)
    assert a.mean_boot.size == 50 and a.mean_sd > 0
    assert abs(a.mean_boot.mean() - a.mean) < 0.1
    d = a.to_dict()
    assert set(d) >= {"r2_mean", "r2_var", "r2_mean_sd", "r2_var_sd"}
    assert prediction_r2(pred, real, n_bootstrap=5, fraction=0.9).mean_boot.size == 5
    assert np.isnan(prediction_r2(pred, real).mean_sd)


def test_r2_bad_inputs(pair):
    pred, real = pair
    with pytest.raises(ValueError, match="same genes"):
        r2_mean(pred[:, :10], real)
    with pytest.raises(ValueError, match="at least two genes"):
        r2_mean(pred, real, genes=[1])
    with pytest.raises(ValueError, match="outside"):
        r2_mean(pred, real, genes=[1, 99])
    with pytest.raises(ValueError, match="fraction"):
        prediction_r2(pred, real, n_bootstrap=2, fraction=1.5)


def test_condition_degs_match_scanpy_wilcoxon():
    import scanpy as sc

    rng = np.random.default_rng(0)
    X = np.log1p(rng.poisson(rng.gamma(1.0, 1.0, 50), (120, 50)).astype(np.float32))
    cond = np.repeat(["CTRL", "STIM", "OTHER"], 40)
    X[cond == "STIM", :5] += 1.0
    X[cond == "STIM", 5:8] = 0.0
    adata = ad.AnnData(sp.csr_matrix(X), obs=pd.DataFrame({"c": cond}, index=[str(i) for i in range(120)]))
    adata.var_names = [f"g{i}" for i in range(50)]
    sc.tl.rank_genes_groups(adata, "c", groups=["STIM"], reference="CTRL", method="wilcoxon")
    expected_scores = np.asarray(adata.uns["rank_genes_groups"]["scores"]["STIM"], dtype=float)
    expected_names = list(adata.uns["rank_genes_groups"]["names"]["STIM"])
    degs = condition_degs(adata.X, cond, target="STIM", reference="CTRL", var_names=adata.var_names)
    np.testing.assert_allclose(degs["score"].to_numpy(), expected_scores, rtol=1e-5)
    assert set(degs["gene"][:5]) == {f"g{i}" for i in range(5)}
    # same ranking up to the order of tied scores
    assert set(degs["gene"][:10]) == set(expected_names[:10])
    assert len(condition_degs(X, cond, target="STIM", reference="CTRL", n_top=7)) == 7
    with pytest.raises(ValueError, match="at least 2"):
        condition_degs(X, cond, target="STIM", reference="NONE")
