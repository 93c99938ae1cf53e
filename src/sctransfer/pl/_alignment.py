"""Bar plot of batch-alignment scores (mixing and conservation) per method."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .._utils._docs import inject_docs
from ._label_transfer import PathType, _finish, _palette

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["alignment_scores"]

#: Scores for which a smaller value is better (BERMUDA's divergence and entropy scores).
LOWER_IS_BETTER: tuple[str, ...] = ("divergence", "entropy")


def _scores_frame(results: pd.DataFrame | Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """``results`` as a float DataFrame: one row per method, one column per score."""
    if isinstance(results, pd.DataFrame):
        frame = results.copy()
    elif isinstance(results, Mapping):
        frame = pd.DataFrame.from_dict({k: dict(v) for k, v in results.items()}, orient="index")
    else:
        raise TypeError(
            f"results must be a pandas DataFrame or a dict {{method: {{score: value}}}}, got {type(results)}."
        )
    if frame.empty:
        raise ValueError("results holds no method or no score.")
    try:
        frame = frame.astype(float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"every score must be a number: {err}") from None
    frame.index = frame.index.astype(str)
    frame.columns = frame.columns.astype(str)
    return frame


def _score_label(score: str, lower: Collection[str]) -> str:
    return f"{score}\n(lower is better)" if score in lower else f"{score}\n(higher is better)"


def _bar_labels(ax: Axes, bars, values: np.ndarray, fontsize: float) -> None:
    for bar, value in zip(bars, values, strict=True):
        if np.isnan(value):
            continue
        ax.annotate(
            f"{value:.3g}",
            (bar.get_x() + bar.get_width() / 2, value),
            xytext=(0, 2 if value >= 0 else -2),
            textcoords="offset points",
            ha="center",
            va="bottom" if value >= 0 else "top",
            fontsize=fontsize,
        )


def _pad_ylim(ax: Axes, values: np.ndarray) -> None:
    """Leave room above (and below) the bars for their value labels."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return
    lo, hi = min(0.0, float(finite.min())), max(0.0, float(finite.max()))
    span = (hi - lo) or 1.0
    ax.set_ylim(lo - (0.12 * span if lo < 0 else 0.0), hi + 0.12 * span)


@inject_docs()
def alignment_scores(
    results: pd.DataFrame | Mapping[str, Mapping[str, float]],
    *,
    scores: Sequence[str] | None = None,
    lower_is_better: Collection[str] = LOWER_IS_BETTER,
    ax: Axes | None = None,
    show: bool | None = None,
    save: PathType | None = None,
) -> Figure | Axes:
    """Bars of the batch-mixing and biology-conservation scores of several alignment methods.

    By default each score gets its own panel, with its own y scale, holding one bar per method (scores
    such as a divergence and a silhouette live on very different scales). With ``ax=`` all scores are
    drawn as groups of bars on that one Axes, sharing its scale. Each bar is labelled with its value,
    methods keep the colours of a shared legend, and a missing score (NaN) draws no bar.

    The label under each score says which direction is better: the scores named in ``lower_is_better``
    (by default ``"divergence"`` and ``"entropy"``, BERMUDA's divergence and entropy scores) are marked
    "lower is better", every other score (for example ``"silhouette"``, ``"batch_entropy"`` or
    ``"knn_purity"``) "higher is better".

    Parameters
    ----------
    results
        Scores, either a DataFrame with one row per method (the index holds the method names) and one
        column per score, or a dict ``{{method: {{score: value}}}}``. Methods keep their order.
    scores
        Scores (columns) to draw, in this order; ``None`` draws every column.
    lower_is_better
        Names of the scores for which a smaller value is better.
    ax
        Axes to draw every score into, as groups of bars; ``None`` creates a new figure with one panel
        per score.
    {show}
    {save}

    Returns
    -------
    The Figure (one Axes per score) when ``ax`` is ``None``, otherwise ``ax``. Each bar is one
    :class:`~matplotlib.patches.Rectangle` with ``gid="<method>|<score>"``.
    """
    frame = _scores_frame(results)
    if scores is not None:
        missing = [s for s in scores if s not in frame.columns]
        if missing:
            raise KeyError(f"scores {missing} are not in results; available: {list(frame.columns)}.")
        frame = frame[list(scores)]
    methods, score_names = list(frame.index), list(frame.columns)
    if len(set(methods)) != len(methods):
        raise ValueError(f"method names must be unique, got {methods}.")
    palette = _palette(methods)
    n_methods, n_scores = len(methods), len(score_names)
    width = 0.8 / n_methods
    offsets = (np.arange(n_methods) - (n_methods - 1) / 2) * width
    fontsize = 7 if n_methods <= 4 else 6

    if ax is None:
        fig, axes = plt.subplots(
            1, n_scores, figsize=(max(2.6, 0.45 * n_methods + 1.4) * n_scores + 1.6, 3.4), squeeze=False
        )
        for panel, score in zip(axes[0], score_names, strict=True):
            values = frame[score].to_numpy()
            for m, method in enumerate(methods):
                (bar,) = panel.bar(offsets[m], values[m], width=width * 0.9, color=palette[method],
                                   gid=f"{method}|{score}", label=method)  # fmt: skip
                _bar_labels(panel, [bar], values[m : m + 1], fontsize)
            panel.set_xticks([0.0], labels=[_score_label(score, lower_is_better)])
            panel.set_xlim(-0.5, 0.5)
            panel.axhline(0.0, color="black", lw=0.6)
            _pad_ylim(panel, values)
            panel.spines[["top", "right"]].set_visible(False)
        axes[0, 0].set_ylabel("score")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                   fontsize=8, title="method", title_fontsize=8)  # fmt: skip
        fig.tight_layout()
        _finish(fig, show=show, save=save)
        return fig

    positions = np.arange(n_scores, dtype=float)
    all_values = frame.to_numpy()
    for m, method in enumerate(methods):
        values = all_values[m]
        bars = ax.bar(positions + offsets[m], values, width=width * 0.9, color=palette[method], label=method)
        for bar, score in zip(bars, score_names, strict=True):
            bar.set_gid(f"{method}|{score}")
        _bar_labels(ax, bars, values, fontsize)
    ax.set_xticks(positions, labels=[_score_label(s, lower_is_better) for s in score_names])
    ax.set_xlim(-0.6, n_scores - 0.4)
    ax.axhline(0.0, color="black", lw=0.6)
    _pad_ylim(ax, all_values.ravel())
    ax.set_ylabel("score")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8, title="method",
              title_fontsize=8)  # fmt: skip
    _finish(ax.figure, show=show, save=save)
    return ax
