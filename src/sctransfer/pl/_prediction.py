"""Scatter of per-gene mean expression, predicted against real cells (condition prediction)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._utils._docs import inject_docs
from .._utils._validation import layer_names
from ..metrics import condition_degs, r2_mean
from ._label_transfer import PathType, _finish, _get_ax

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

__all__ = ["mean_expression"]


def _gene_means(adata: AnnData, layer: str | None, what: str) -> np.ndarray:
    if adata.n_obs == 0:
        raise ValueError(f"{what} holds no cell.")
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"layer {layer!r} is not in {what}.layers; available: {layer_names(adata)}.")
    X = adata.X if layer is None else adata.layers[layer]
    means = X.mean(axis=0) if sp.issparse(X) else np.asarray(X, dtype=np.float64).mean(axis=0)
    return np.asarray(means, dtype=np.float64).ravel()


def _repel(y: np.ndarray, min_sep: float, lo: float, hi: float, n_iter: int = 100) -> np.ndarray:
    """Move label heights (sorted from top to bottom) apart symmetrically, keeping them in ``[lo, hi]``."""
    y = y.astype(float).copy()
    for _ in range(n_iter):
        moved = False
        for i in range(1, len(y)):
            gap = y[i - 1] - y[i]
            if gap < min_sep:
                shift = (min_sep - gap) / 2
                y[i - 1] += shift
                y[i] -= shift
                moved = True
        np.clip(y, lo, hi, out=y)
        if not moved:
            break
    return y


def _matrix(adata: AnnData, layer: str | None, names: pd.Index):
    """Values of ``adata`` (``.X`` or ``layer``) with the genes in the order of ``names``."""
    X = adata.X if layer is None else adata.layers[layer]
    order = adata.var_names.get_indexer(names)
    return X[:, order] if (order != np.arange(len(names))).any() else X


def _top_degs(real: AnnData, control: AnnData, layer: str | None, names: pd.Index, n: int) -> list[str]:
    """The ``n`` top differentially expressed genes of real vs control: half up, half down."""
    X_real, X_ctrl = _matrix(real, layer, names), _matrix(control, layer, names)
    X = (
        sp.vstack([sp.csr_matrix(X_real), sp.csr_matrix(X_ctrl)])
        if sp.issparse(X_real) or sp.issparse(X_ctrl)
        else np.vstack([np.asarray(X_real), np.asarray(X_ctrl)])
    )
    conditions = np.array(["real"] * real.n_obs + ["control"] * control.n_obs)
    ranked = condition_degs(X, conditions, target="real", reference="control", var_names=list(names))
    n_up = (min(n, len(names)) + 1) // 2
    n_down = min(n, len(names)) - n_up
    genes = list(ranked["gene"].iloc[:n_up]) + list(ranked["gene"].iloc[::-1].iloc[:n_down])
    return [str(g) for g in genes]


@inject_docs()
def mean_expression(
    pred: AnnData,
    real: AnnData,
    genes: Sequence[str] | None = None,
    *,
    control: AnnData | None = None,
    top_genes: int = 10,
    layer: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: PathType | None = None,
) -> Axes:
    """Per-gene mean expression of predicted cells against real cells, with R².

    Each point is a gene: its mean over the real cells (x) and over the predicted cells (y). A perfect
    prediction puts every gene on the dashed diagonal. The text in the corner gives R², the squared
    Pearson correlation of the per-gene means, over all genes and over the labelled genes.

    The labelled genes are ``genes`` when given. Otherwise, with ``control``, they are the ``top_genes``
    differentially expressed genes of the real cells against the control cells, half of them the most
    up-regulated and half the most down-regulated (ranked by :func:`sctransfer.metrics.condition_degs`);
    these respond most to the condition, so they are where a prediction is hardest. Without ``control``
    no gene is labelled. R² is computed with :func:`sctransfer.metrics.r2_mean`.

    Parameters
    ----------
    pred
        Predicted cells (for example the output of a condition-transfer model).
    real
        Real cells of the same condition and type, with the same genes as ``pred`` (``var_names``, in
        any order).
    genes
        Genes to label and to compute the second R² on (for example the differentially expressed genes).
    control
        Cells of the starting condition, with the same genes; used to choose the labelled genes when
        ``genes`` is ``None``.
    top_genes
        Number of differentially expressed genes to label when they are chosen with ``control``.
    layer
        Layer holding the values of all objects; ``None`` uses ``.X``.
    {ax}
    {show}
    {save}

    Returns
    -------
    The Axes, with one point per gene (the first collection), one text per labelled gene and the R² text
    (``gid="r2"``).
    """
    if set(pred.var_names) != set(real.var_names) or pred.n_vars != real.n_vars:
        raise ValueError(
            "pred and real must hold the same genes (var_names); subset both to the shared genes first."
        )
    if not pred.var_names.is_unique:
        raise ValueError("pred.var_names must be unique; call .var_names_make_unique() first.")
    names = pred.var_names
    real_means = pd.Series(_gene_means(real, layer, "real"), index=real.var_names).reindex(names).to_numpy()
    pred_means = _gene_means(pred, layer, "pred")

    if genes is not None:
        labelled = [str(g) for g in genes]
        absent = [g for g in labelled if g not in names]
        if absent:
            raise KeyError(f"genes {absent[:10]} are not in pred.var_names.")
        label_kind = "given genes"
    elif control is not None:
        if top_genes < 1:
            raise ValueError(f"top_genes must be at least 1, got {top_genes}.")
        if set(control.var_names) != set(names) or control.n_vars != len(names):
            raise ValueError("control must hold the same genes (var_names) as pred and real.")
        _gene_means(control, layer, "control")  # checks the cells and the layer
        labelled = _top_degs(real, control, layer, names, top_genes)
        label_kind = f"top {len(labelled)} DEGs"
    else:
        labelled, label_kind = [], ""

    X_pred, X_real = _matrix(pred, layer, names), _matrix(real, layer, names)
    idx = names.get_indexer(labelled)
    lines = [f"R² = {r2_mean(X_pred, X_real):.3f} (all {len(names)} genes)"]
    if len(labelled) >= 2:
        lines.append(f"R² = {r2_mean(X_pred, X_real, genes=idx):.3f} ({label_kind})")

    ax = _get_ax(ax, (4.6, 4.4))
    mask = np.zeros(len(names), dtype=bool)
    mask[idx] = True
    ax.scatter(real_means, pred_means, s=6, c="#4c72b0", alpha=0.6, lw=0, rasterized=True)
    if labelled:
        ax.scatter(real_means[mask], pred_means[mask], s=14, c="crimson", lw=0, zorder=3)
    hi = float(max(real_means.max(), pred_means.max(), 0.0))
    lo = float(min(real_means.min(), pred_means.min(), 0.0))
    pad = 0.04 * ((hi - lo) or 1.0)
    lims = (lo - pad, hi + pad)
    ax.plot(lims, lims, ls="--", color="0.5", lw=0.8, zorder=0)
    ax.set_xlim(lims)
    ax.set_ylim(lims)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("mean expression, real cells")
    ax.set_ylabel("mean expression, predicted cells")
    ax.text(0.03, 0.97, "\n".join(lines), transform=ax.transAxes, ha="left", va="top", fontsize=8, gid="r2",
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.8", "alpha": 0.9})  # fmt: skip

    if labelled:
        # labels to the right of their points (left of them near the right edge), spread vertically
        order = np.argsort(-pred_means[idx], kind="stable")
        span = lims[1] - lims[0]
        label_y = _repel(pred_means[idx][order], 0.035 * span, lims[0] + 0.01 * span, lims[1] - 0.01 * span)
        for k, y in zip(order, label_y, strict=True):
            x0, y0 = real_means[idx[k]], pred_means[idx[k]]
            right = x0 < lims[0] + 0.7 * span
            ax.annotate(
                labelled[k],
                (x0, y0),
                xytext=(x0 + (0.05 if right else -0.05) * span, y),
                ha="left" if right else "right",
                va="center",
                fontsize=7,
                arrowprops={"arrowstyle": "-", "color": "0.4", "lw": 0.5},
                gid="gene-label",
            )
    _finish(ax.figure, show=show, save=save)
    return ax
