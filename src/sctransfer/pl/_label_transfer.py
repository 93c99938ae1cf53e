"""Plots of a label transfer: confusion heatmap, Sankey flow, joint embedding and confidence."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle

from .._utils._docs import inject_docs
from .._utils._keys import REJECTION_LABELS, LabelTransferKeys
from ..metrics import confusion_matrix

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["confidence", "confusion", "joint_embedding", "sankey"]

PathType = str | PathLike[str]
_REJECTION_COLOR = "#b0b0b0"


# --------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------
def _get_ax(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    """Return ``ax``, or the Axes of a new figure of size ``figsize``."""
    if ax is not None:
        return ax
    _, new_ax = plt.subplots(figsize=figsize)
    return new_ax


def _finish(fig: Figure, *, show: bool | None, save: PathType | None) -> None:
    """Save the figure to ``save`` and show it (``show=None``: only in interactive mode)."""
    if save is not None:
        fig.savefig(save, bbox_inches="tight")
    if show is None:
        show = plt.isinteractive()
    if show:
        plt.show()


def _obs_column(adata: AnnData, key: str, what: str) -> pd.Series:
    if key not in adata.obs.columns:
        raise KeyError(f"{what} {key!r} is not an .obs column; available columns: {list(adata.obs.columns)}.")
    return adata.obs[key]


def _ordered_categories(values: pd.Series | np.ndarray) -> list[str]:
    """Sorted string categories present in ``values``, with the rejection labels last."""
    present = set(pd.Series(values).dropna().astype(str))
    return sorted(present - REJECTION_LABELS) + sorted(present & REJECTION_LABELS)


def _palette(categories: Sequence[str]) -> dict[str, str]:
    """One colour per category (tab10, tab20, or turbo beyond 20); rejection labels are grey."""
    named = [c for c in categories if c not in REJECTION_LABELS]
    n = len(named)
    if n <= 10:
        colors = [colormaps["tab10"](i) for i in range(n)]
    elif n <= 20:  # the 10 dark tab20 colours first, then their light twins
        colors = [colormaps["tab20"](i) for i in [*range(0, 20, 2), *range(1, 20, 2)][:n]]
    else:
        colors = list(colormaps["turbo"](np.linspace(0.05, 0.95, n)))
    pal = {c: to_hex(col) for c, col in zip(named, colors, strict=True)}
    pal.update({c: _REJECTION_COLOR for c in categories if c in REJECTION_LABELS})
    return pal


# --------------------------------------------------------------------------------------------------
# confusion heatmap
# --------------------------------------------------------------------------------------------------
@inject_docs()
def confusion(
    adata: AnnData,
    true_key: str,
    pred_key: str,
    *,
    normalize: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    save: PathType | None = None,
    cmap: str = "Blues",
) -> Axes:
    """Heatmap of the confusion matrix between true types and predicted labels.

    Rows are the true types, columns the predicted labels (the rejection labels ``"unknown"`` and
    ``"Not Classified"`` last), as in :func:`sctransfer.metrics.confusion_matrix`. Each cell shows the
    number of cells; its colour is the fraction of the row (or the count with ``normalize=False``).
    Cells without a true label are left out.

    Parameters
    ----------
    adata
        AnnData with both label columns in ``.obs`` (for example the query after
        :func:`sctransfer.tl.label_transfer`).
    true_key
        ``.obs`` column with the true types.
    pred_key
        ``.obs`` column with the predicted labels.
    normalize
        Colour by the fraction of each row (rows sum to 1) instead of by the count.
    {ax}
    {show}
    {save}
    cmap
        Colormap of the heatmap.

    Returns
    -------
    The Axes holding the heatmap (one :class:`~matplotlib.collections.QuadMesh` cell per matrix entry).
    """
    true = _obs_column(adata, true_key, "true_key")
    pred = _obs_column(adata, pred_key, "pred_key")
    counts = confusion_matrix(true, pred)
    if counts.size == 0:
        raise ValueError(f"no cell has a true label in .obs[{true_key!r}].")
    totals = counts.sum(axis=1).replace(0, 1)
    values = counts.div(totals, axis=0) if normalize else counts.astype(float)
    n_rows, n_cols = counts.shape

    ax = _get_ax(ax, (max(4.0, 0.55 * n_cols + 2.5), max(3.0, 0.45 * n_rows + 1.5)))
    vmax = 1.0 if normalize else float(max(values.to_numpy().max(), 1))
    mesh = ax.pcolormesh(values.to_numpy(), cmap=cmap, vmin=0.0, vmax=vmax, edgecolors="white", lw=0.5)
    ax.set_xlim(0, n_cols)
    ax.set_ylim(n_rows, 0)
    ax.set_xticks(np.arange(n_cols) + 0.5, labels=[str(c) for c in counts.columns])
    ax.set_yticks(np.arange(n_rows) + 0.5, labels=[str(r) for r in counts.index])
    ax.tick_params(axis="x", labelrotation=90 if n_cols > 4 else 0)
    ax.set_xlabel(f"predicted ({pred_key})")
    ax.set_ylabel(f"true ({true_key})")
    ax.set_aspect("auto")
    fontsize = 8 if max(n_rows, n_cols) <= 10 else 6.5
    threshold = 0.6 * vmax
    for i in range(n_rows):
        for j in range(n_cols):
            count = int(counts.iat[i, j])
            color = "white" if values.iat[i, j] > threshold else "black"
            ax.text(j + 0.5, i + 0.5, str(count), ha="center", va="center", fontsize=fontsize, color=color)
    cbar = ax.figure.colorbar(mesh, ax=ax, fraction=0.05, pad=0.02)
    cbar.set_label("fraction of true type" if normalize else "cells")
    _finish(ax.figure, show=show, save=save)
    return ax


# --------------------------------------------------------------------------------------------------
# Sankey
# --------------------------------------------------------------------------------------------------
def _node_positions(sizes: np.ndarray, scale: float, gap: float) -> np.ndarray:
    """Top coordinate of each node, stacked downwards from the top and centred vertically in [0, 1]."""
    heights = sizes * scale
    span = heights.sum() + gap * (len(sizes) - 1)
    tops = np.empty(len(sizes))
    y = 1.0 - (1.0 - span) / 2
    for i, h in enumerate(heights):
        tops[i] = y
        y -= h + gap
    return tops


def _spread_labels(centres: np.ndarray, *, min_sep: float) -> np.ndarray:
    """Move label positions (top to bottom) apart so that they are at least ``min_sep`` apart."""
    y = centres.astype(float).copy()
    for i in range(1, len(y)):
        y[i] = min(y[i], y[i - 1] - min_sep)
    if len(y) and y[-1] < 0.0:  # pushed below the axis: shift up, keeping the spacing
        y[-1] = 0.0
        for i in range(len(y) - 2, -1, -1):
            y[i] = max(y[i], y[i + 1] + min_sep)
    return y


@inject_docs()
def sankey(
    adata: AnnData,
    true_key: str,
    pred_key: str,
    *,
    ax: Axes | None = None,
    show: bool | None = None,
    save: PathType | None = None,
    min_fraction: float = 0.0,
) -> Axes:
    """Flow from the true types (left) to the predicted labels (right).

    Each band joins a true type to a predicted label; its width is proportional to the number of cells
    with that pair. Bands are coloured by the true type. Cells without a true label are left out.

    Parameters
    ----------
    adata
        AnnData with both label columns in ``.obs``.
    true_key
        ``.obs`` column with the true types (left column).
    pred_key
        ``.obs`` column with the predicted labels (right column).
    {ax}
    {show}
    {save}
    min_fraction
        Hide the bands holding less than this fraction of their true type's cells (the node heights
        then count only the bands drawn).

    Returns
    -------
    The Axes; each band is one filled polygon (:meth:`~matplotlib.axes.Axes.fill_between`) with
    ``gid="sankey-band"``.
    """
    if not 0.0 <= min_fraction < 1.0:
        raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}.")
    true = _obs_column(adata, true_key, "true_key")
    pred = _obs_column(adata, pred_key, "pred_key")
    counts = confusion_matrix(true, pred)
    if counts.size == 0:
        raise ValueError(f"no cell has a true label in .obs[{true_key!r}].")
    mat = counts.to_numpy().astype(float)
    row_totals = mat.sum(axis=1, keepdims=True)
    mat[mat < min_fraction * row_totals] = 0.0
    keep_rows, keep_cols = mat.sum(axis=1) > 0, mat.sum(axis=0) > 0
    mat = mat[keep_rows][:, keep_cols]
    rows = [str(r) for r in counts.index[keep_rows]]
    cols = [str(c) for c in counts.columns[keep_cols]]

    left_sizes, right_sizes = mat.sum(axis=1), mat.sum(axis=0)
    gap = 0.02 if max(len(rows), len(cols)) <= 20 else 0.01
    scale = (1.0 - gap * (max(len(rows), len(cols)) - 1)) / mat.sum()
    left_tops = _node_positions(left_sizes, scale, gap)
    right_tops = _node_positions(right_sizes, scale, gap)
    palette = _palette(_ordered_categories(pd.Series(rows + cols)))

    ax = _get_ax(ax, (7.0, max(4.0, 0.3 * max(len(rows), len(cols)) + 1.0)))
    # labels (8 pt) at least ~1.3 line heights apart, in data units of the [0, 1] axis
    label_sep = 1.3 * 8 / 72 / max(ax.get_window_extent().height / ax.figure.dpi, 1e-6)
    node_w, x0, x1 = 0.04, 0.04, 0.96
    t = np.linspace(0.0, 1.0, 60)
    ease = 3 * t**2 - 2 * t**3  # cubic bezier-like easing from 0 to 1
    x = x0 + (x1 - x0) * t
    left_offset = np.zeros(len(rows))
    right_offset = np.zeros(len(cols))
    for i in range(len(rows)):
        for j in range(len(cols)):
            if mat[i, j] == 0:
                continue
            h = mat[i, j] * scale
            top_l = left_tops[i] - left_offset[i]
            top_r = right_tops[j] - right_offset[j]
            upper = top_l + (top_r - top_l) * ease
            ax.fill_between(x, upper - h, upper, color=palette[rows[i]], alpha=0.55, lw=0, gid="sankey-band")
            left_offset[i] += h
            right_offset[j] += h
    for tops, sizes, names, xpos, ha, tx in (
        (left_tops, left_sizes, rows, 0.0, "right", -0.01),
        (right_tops, right_sizes, cols, 1.0 - node_w, "left", 1.01),
    ):
        for top, size, name in zip(tops, sizes, names, strict=True):
            h = size * scale
            ax.add_patch(Rectangle((xpos, top - h), node_w, h, color=palette[name], lw=0))
        label_y = _spread_labels(tops - sizes * scale / 2, min_sep=label_sep)
        for y, size, name in zip(label_y, sizes, names, strict=True):
            ax.text(tx, y, f"{name} ({int(size)})", ha=ha, va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.01, 1.01)
    ax.set_axis_off()
    ax.set_title(f"{true_key} \N{RIGHTWARDS ARROW} {pred_key}", fontsize=10)
    _finish(ax.figure, show=show, save=save)
    return ax


# --------------------------------------------------------------------------------------------------
# joint embedding
# --------------------------------------------------------------------------------------------------
def _joint_basis(adata_rna: AnnData, adata_atac: AnnData, basis: str | None, atac_key: str) -> str:
    key = LabelTransferKeys(atac_key).embedding if basis is None else basis
    if key in adata_rna.obsm and key in adata_atac.obsm:
        return key
    raise KeyError(
        f"no joint embedding {key!r} in the .obsm of both objects (RNA: {list(adata_rna.obsm)}, ATAC: "
        f"{list(adata_atac.obsm)}); run sct.tl.label_transfer first (with a method that writes an "
        "embedding: ensemble, knn or scjoint), or pass basis=."
    )


def _scatter_categorical(ax: Axes, xy: np.ndarray, values: pd.Series, title: str, size: float) -> None:
    cats = _ordered_categories(values)
    palette = _palette(cats)
    codes = pd.Categorical(values.astype(object).where(values.notna(), None), categories=cats).codes
    rng = np.random.default_rng(0)
    order = rng.permutation(len(codes))  # no category hides another by drawing order
    colors = np.array([palette[c] for c in cats] + ["#e0e0e0"], dtype=object)[codes[order]]
    ax.scatter(xy[order, 0], xy[order, 1], c=list(colors), s=size, lw=0, rasterized=True)
    for cat in cats:
        ax.scatter([], [], c=palette[cat], s=30, label=cat)
    if (codes < 0).any():
        ax.scatter([], [], c="#e0e0e0", s=30, label="NA")
    ncol = 1 if len(cats) <= 14 else 2
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8, ncol=ncol,
              handletextpad=0.1, borderaxespad=0.3)  # fmt: skip
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP1")
    ax.set_ylabel("UMAP2")


@inject_docs()
def joint_embedding(
    adata_rna: AnnData,
    adata_atac: AnnData,
    *,
    basis: str | None = None,
    color: str | Sequence[str] = ("modality", "label"),
    rna_key: str | None = None,
    atac_key: str = "sct_label",
    n_neighbors: int = 15,
    size: float | None = None,
    show: bool | None = None,
    save: PathType | None = None,
) -> Figure:
    """UMAP of the joint embedding of both modalities, one panel per colour key.

    The embeddings ``.obsm[basis]`` of both objects are stacked, and a UMAP is computed on them with
    scanpy (:func:`scanpy.pp.neighbors` on the embedding, exact up to 50,000 cells, then
    :func:`scanpy.tl.umap` with ``random_state=0``). The inputs are not modified.

    Parameters
    ----------
    adata_rna, adata_atac
        The reference (RNA) and the query (ATAC), both with the joint embedding in ``.obsm``.
    basis
        ``.obsm`` key of the joint embedding; ``None`` takes the one :func:`sctransfer.tl.label_transfer`
        wrote with ``key_added=atac_key``, ``f"X_{{atac_key}}"`` (``"X_sct_label"`` by default).
    color
        Panels to draw: ``"modality"`` (RNA or ATAC), ``"label"`` (``adata_rna.obs[rna_key]`` together with
        ``adata_atac.obs[atac_key]``), or any ``.obs`` column of either object (cells of the object without
        it are shown as NA).
    rna_key
        ``.obs`` column of the RNA labels; ``None`` takes the ``labels_key`` recorded in
        ``adata_atac.uns[atac_key]["params"]``.
    atac_key
        The ``key_added`` of the label transfer: ``.obs`` column of the ATAC's predicted labels, and the
        name of the embedding when ``basis=None``.
    n_neighbors
        Number of neighbours of the UMAP graph.
    size
        Marker size; ``None`` scales it with the number of cells.
    {show}
    {save}

    Returns
    -------
    The Figure, with one Axes per entry of ``color``.
    """
    import anndata as ad
    import scanpy as sc

    keys = [color] if isinstance(color, str) else list(color)
    if not keys:
        raise ValueError("color is empty; pass at least one key.")
    key = _joint_basis(adata_rna, adata_atac, basis, atac_key)
    emb_rna = np.asarray(adata_rna.obsm[key], dtype=np.float32)
    emb_atac = np.asarray(adata_atac.obsm[key], dtype=np.float32)
    if emb_rna.shape[1] != emb_atac.shape[1]:
        raise ValueError(
            f".obsm[{key!r}] has {emb_rna.shape[1]} dimensions in the RNA but {emb_atac.shape[1]} in the ATAC."
        )
    n_rna, n_atac = emb_rna.shape[0], emb_atac.shape[0]

    columns: dict[str, pd.Series] = {}
    for k in keys:
        if k == "modality":
            columns[k] = pd.Series(["RNA"] * n_rna + ["ATAC"] * n_atac)
        elif k == "label":
            if rna_key is None:
                params = adata_atac.uns.get(LabelTransferKeys(atac_key).uns, {}).get("params", {})
                rna_key = params.get("labels_key")
                if rna_key is None:
                    raise KeyError(
                        f"no labels_key recorded in adata_atac.uns[{atac_key!r}]['params']; pass rna_key=."
                    )
            rna_vals = _obs_column(adata_rna, rna_key, "rna_key").astype(object)
            atac_vals = _obs_column(adata_atac, LabelTransferKeys(atac_key).label, "atac_key").astype(object)
            columns[k] = pd.concat([rna_vals, atac_vals], ignore_index=True)
        else:
            if k not in adata_rna.obs.columns and k not in adata_atac.obs.columns:
                raise KeyError(f"color key {k!r} is in neither object's .obs (nor 'modality'/'label').")
            parts = [
                a.obs[k].astype(object) if k in a.obs.columns else pd.Series([None] * a.n_obs, dtype=object)
                for a in (adata_rna, adata_atac)
            ]
            columns[k] = pd.concat(parts, ignore_index=True)

    joint = ad.AnnData(
        X=np.zeros((n_rna + n_atac, 1), dtype=np.float32), obsm={"X_joint": np.vstack([emb_rna, emb_atac])}
    )
    # exact neighbours up to 50,000 cells (scanpy's approximate default path breaks with some
    # scipy/pynndescent versions); scanpy's default beyond
    transformer = "sklearn" if joint.n_obs <= 50_000 else None
    sc.pp.neighbors(
        joint, use_rep="X_joint", n_neighbors=n_neighbors, transformer=transformer, random_state=0
    )
    sc.tl.umap(joint, random_state=0)
    xy = joint.obsm["X_umap"]

    if size is None:
        size = float(np.clip(12000 / (n_rna + n_atac), 1.0, 30.0))
    fig, axes = plt.subplots(1, len(keys), figsize=(4.8 * len(keys), 3.8), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        title = "predicted / reference label" if k == "label" else k
        _scatter_categorical(ax, xy, columns[k], title, size)
    fig.tight_layout()
    _finish(fig, show=show, save=save)
    return fig


# --------------------------------------------------------------------------------------------------
# confidence
# --------------------------------------------------------------------------------------------------
def _recorded_threshold(uns: Any) -> float | None:
    """The confidence below which a run labelled cells ``"unknown"``, from its ``.uns`` entry."""
    if not isinstance(uns, dict):
        return None
    params = uns.get("params", {})
    recorded = [params.get("unknown_threshold")]
    if params.get("method") == "castle":  # CaSTLe's own rule: rejected when every probability <= threshold
        recorded.append(uns.get("settings", {}).get("threshold"))
    numbers = [float(v) for v in recorded if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(numbers) if numbers else None


@inject_docs()
def confidence(
    adata: AnnData,
    key: str = "sct_label",
    *,
    threshold: float | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: PathType | None = None,
) -> Axes:
    """Box plot of the transfer confidence per predicted label.

    Parameters
    ----------
    adata
        The query after :func:`sctransfer.tl.label_transfer` or :func:`sctransfer.tl.castle`
        (``.obs[key]`` and ``.obs[f"{{key}}_confidence"]``).
    key
        The ``key_added`` of the label transfer (``"castle"`` for :func:`~sctransfer.tl.castle`'s default).
    threshold
        Draw a dashed horizontal line at this confidence. ``None`` uses the threshold recorded in
        ``adata.uns[key]``: ``params["unknown_threshold"]`` and, for ``method="castle"``, CaSTLe's own
        rejection ``threshold`` (the larger when both are set); no line when neither is a number.
    {ax}
    {show}
    {save}

    Returns
    -------
    The Axes, with one box per predicted label (rejection labels last) and the threshold line.
    """
    keys = LabelTransferKeys(key)
    labels = _obs_column(adata, keys.label, "key")
    conf = pd.to_numeric(_obs_column(adata, keys.confidence, "confidence column"), errors="coerce")
    if threshold is None:
        threshold = _recorded_threshold(adata.uns.get(keys.uns, {}))
    cats = _ordered_categories(labels)
    if not cats:
        raise ValueError(f".obs[{key!r}] holds no label.")
    str_labels = labels.astype(object).where(labels.notna(), None).astype(str).to_numpy()
    conf_values = conf.to_numpy()
    data = [conf_values[(str_labels == c) & ~np.isnan(conf_values)] for c in cats]
    # colour by all categories of the label (as the other plots do), so colours match across plots
    all_cats = list(labels.cat.categories) if isinstance(labels.dtype, pd.CategoricalDtype) else []
    palette = _palette(_ordered_categories(pd.Series(all_cats + cats, dtype=object)))

    ax = _get_ax(ax, (max(4.0, 0.45 * len(cats) + 1.5), 3.8))
    positions = np.arange(1, len(cats) + 1)
    parts = ax.boxplot(data, positions=positions, widths=0.6, patch_artist=True, showfliers=True,
                       flierprops={"markersize": 2, "alpha": 0.5},
                       medianprops={"color": "black"})  # fmt: skip
    for box, cat in zip(parts["boxes"], cats, strict=True):
        box.set_facecolor(palette[cat])
        box.set_alpha(0.8)
    ax.set_xticks(positions, labels=cats)
    if len(cats) > 4:
        ax.tick_params(axis="x", labelrotation=90)
    ax.set_xlim(0.4, len(cats) + 0.6)
    ax.set_xlabel(f"predicted label ({key})")
    ax.set_ylabel("confidence")
    if threshold is not None:
        ax.axhline(threshold, ls="--", color="crimson", lw=1.2, label=f"unknown threshold ({threshold:g})")
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False, borderaxespad=0.2)
    _finish(ax.figure, show=show, save=save)
    return ax
