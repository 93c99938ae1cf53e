"""Metrics for predicted expression (condition transfer): R² of per-gene means and variances, and DEGs.

Array-level: they take matrices of predicted and real cells (cells x genes, dense or sparse) and return
numbers, so they serve any method that predicts expression (trVAE, scGen-like baselines, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from .._utils._validation import check_int

__all__ = ["PredictionR2", "condition_degs", "prediction_r2", "r2_mean", "r2_var"]


def _dense(X, name: str) -> np.ndarray:
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-d matrix (cells x genes), got shape {X.shape}.")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no cells.")
    return X.astype(np.float64, copy=False)


def _genes(genes, n_genes: int) -> np.ndarray:
    if genes is None:
        return np.arange(n_genes)
    genes = np.asarray(genes)
    if genes.dtype == bool:
        if genes.size != n_genes:
            raise ValueError(f"a boolean gene mask must have {n_genes} entries, got {genes.size}.")
        return np.flatnonzero(genes)
    if genes.dtype.kind not in "iu":
        raise ValueError(
            "genes must be integer positions or a boolean mask (map names with var_names.get_indexer)."
        )
    if genes.size and (genes.min() < 0 or genes.max() >= n_genes):
        raise ValueError(f"gene positions must lie in [0, {n_genes}); got values outside (missing genes?).")
    return genes


def _squared_pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float(((a * b).sum() / denom) ** 2) if denom > 0 else float("nan")


def _stat_r2(pred: np.ndarray, real: np.ndarray, stat: str) -> float:
    if stat == "mean":
        return _squared_pearson(pred.mean(axis=0), real.mean(axis=0))
    return _squared_pearson(pred.var(axis=0), real.var(axis=0))


@dataclass(frozen=True)
class PredictionR2:
    """R² (squared Pearson correlation) of per-gene means and variances, predicted vs real.

    ``mean`` and ``var`` use all cells. With a bootstrap, ``mean_boot``/``var_boot`` hold the value of
    every round (otherwise empty), and ``mean_sd``/``var_sd`` their standard deviations.
    """

    mean: float
    var: float
    n_genes: int
    mean_boot: np.ndarray
    var_boot: np.ndarray

    @property
    def mean_sd(self) -> float:
        """Standard deviation of the bootstrap R² of the means (NaN without a bootstrap)."""
        return float(self.mean_boot.std()) if self.mean_boot.size else float("nan")

    @property
    def var_sd(self) -> float:
        """Standard deviation of the bootstrap R² of the variances (NaN without a bootstrap)."""
        return float(self.var_boot.std()) if self.var_boot.size else float("nan")

    def to_dict(self) -> dict[str, float | int]:
        """Plain-type summary (bootstrap means and standard deviations when there was a bootstrap)."""
        out: dict[str, float | int] = {"r2_mean": self.mean, "r2_var": self.var, "n_genes": self.n_genes}
        if self.mean_boot.size:
            out |= {
                "r2_mean_boot": float(self.mean_boot.mean()), "r2_mean_sd": self.mean_sd,
                "r2_var_boot": float(self.var_boot.mean()), "r2_var_sd": self.var_sd,
            }  # fmt: skip
        return out


def prediction_r2(
    predicted,
    real,
    *,
    genes: Sequence[int] | np.ndarray | None = None,
    n_bootstrap: int = 0,
    fraction: float = 1.0,
    random_state: int = 0,
) -> PredictionR2:
    """R² of per-gene means and of per-gene variances between predicted and real cells.

    The R² is the squared Pearson correlation, over the genes, between the mean (or the variance) of each
    gene in the predicted cells and in the real cells; the two sets need not have the same cells.

    Parameters
    ----------
    predicted, real
        Cells x genes (dense or sparse), on the same genes in the same order.
    genes
        Gene positions (or a boolean mask) to score; ``None`` scores all genes.
    n_bootstrap
        Bootstrap rounds (0: none). Each round resamples the predicted and the real cells with
        replacement, ``fraction`` of each set's size.
    fraction
        Size of each bootstrap sample relative to the set (1.0: full size; 0.9: 90 %).
    random_state
        Seed of the bootstrap.

    Returns
    -------
    A :class:`PredictionR2`.
    """
    P, R = _dense(predicted, "predicted"), _dense(real, "real")
    if P.shape[1] != R.shape[1]:
        raise ValueError(f"predicted has {P.shape[1]} genes and real {R.shape[1]}; pass the same genes.")
    g = _genes(genes, P.shape[1])
    if g.size < 2:
        raise ValueError("score at least two genes (a correlation over one gene is undefined).")
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", 0)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    P, R = P[:, g], R[:, g]
    mean_boot = np.empty(n_bootstrap)
    var_boot = np.empty(n_bootstrap)
    rng = np.random.default_rng(random_state)
    n_p = max(1, round(fraction * P.shape[0]))
    n_r = max(1, round(fraction * R.shape[0]))
    for b in range(n_bootstrap):
        p = P[rng.integers(0, P.shape[0], n_p)]
        r = R[rng.integers(0, R.shape[0], n_r)]
        mean_boot[b] = _stat_r2(p, r, "mean")
        var_boot[b] = _stat_r2(p, r, "var")
    return PredictionR2(
        mean=_stat_r2(P, R, "mean"), var=_stat_r2(P, R, "var"), n_genes=int(g.size),
        mean_boot=mean_boot, var_boot=var_boot,
    )  # fmt: skip


def r2_mean(predicted, real, *, genes: Sequence[int] | np.ndarray | None = None) -> float:
    """R² (squared Pearson) of per-gene means, predicted vs real (see :func:`prediction_r2`)."""
    return prediction_r2(predicted, real, genes=genes).mean


def r2_var(predicted, real, *, genes: Sequence[int] | np.ndarray | None = None) -> float:
    """R² (squared Pearson) of per-gene variances, predicted vs real (see :func:`prediction_r2`)."""
    return prediction_r2(predicted, real, genes=genes).var


def condition_degs(
    X,
    conditions: Sequence[str] | np.ndarray | pd.Series,
    *,
    target: str,
    reference: str,
    var_names: Sequence[str] | None = None,
    n_top: int | None = None,
) -> pd.DataFrame:
    """Rank genes between two conditions (for example STIM vs CTRL within one cell type) by Wilcoxon.

    The score of a gene is the z-score of the rank sum of the ``target`` cells among the ``target`` and
    ``reference`` cells (normal approximation, no tie correction: the score scanpy's
    ``rank_genes_groups(method="wilcoxon")`` reports). Genes are sorted by decreasing score, so the first
    ones are the most up-regulated in ``target``.

    Parameters
    ----------
    X
        Cells x genes (dense or sparse), usually the cells of one type.
    conditions
        Condition of each cell.
    target, reference
        The two conditions compared (other cells are ignored).
    var_names
        Gene names (positions ``0 .. n_genes-1`` when ``None``).
    n_top
        Keep the first ``n_top`` genes (``None``: all).

    Returns
    -------
    A DataFrame, one row per gene in rank order, with ``gene``, ``position`` (column of ``X``), ``score``,
    ``logfoldchange`` (difference of the means: the log fold change for log-normalised values) and
    ``pval`` (two-sided, normal approximation).
    """
    from scipy.stats import norm

    conditions = np.asarray(conditions, dtype=object).astype(str)
    if conditions.size != X.shape[0]:
        raise ValueError(f"conditions has {conditions.size} entries for {X.shape[0]} cells.")
    is_t, is_r = conditions == str(target), conditions == str(reference)
    for name, mask in ((target, is_t), (reference, is_r)):
        if mask.sum() < 2:
            raise ValueError(
                f"condition {name!r} has {int(mask.sum())} cells; ranking genes needs at least 2 per condition "
                f"(conditions present: {sorted(set(conditions))})."
            )
    n_genes = X.shape[1]
    names = np.arange(n_genes).astype(str) if var_names is None else np.asarray(var_names, dtype=object)
    if names.size != n_genes:
        raise ValueError(f"var_names has {names.size} entries for {n_genes} genes.")
    rows = np.flatnonzero(is_t | is_r)
    in_target = is_t[rows]
    n1, n2 = int(in_target.sum()), int((~in_target).sum())
    n = n1 + n2
    scores = np.empty(n_genes)
    diff = np.empty(n_genes)
    X = sp.csc_matrix(X[rows]) if sp.issparse(X) else np.asarray(X)[rows]
    step = 1000
    for start in range(0, n_genes, step):
        block = _dense(X[:, start : start + step], "X")
        ranks = rankdata(block, axis=0)
        rank_sum = ranks[in_target].sum(axis=0)
        scores[start : start + step] = (rank_sum - n1 * (n + 1) / 2.0) / np.sqrt(n1 * n2 * (n + 1) / 12.0)
        diff[start : start + step] = block[in_target].mean(axis=0) - block[~in_target].mean(axis=0)
    order = np.argsort(-scores, kind="stable")
    if n_top is not None:
        order = order[: check_int(n_top, "n_top")]
    return pd.DataFrame(
        {
            "gene": names[order],
            "position": order,
            "score": scores[order],
            "logfoldchange": diff[order],
            "pval": 2.0 * norm.sf(np.abs(scores[order])),
        }
    )
