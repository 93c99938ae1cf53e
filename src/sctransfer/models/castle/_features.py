"""Array-level steps of CaSTLe (no AnnData here).

The gene filter, fixed-bin discretisation, NMI ranking, feature union, correlation filter, class
weights, detection matching and the one-hot design matrix.

Bins are right-closed intervals ``(edges[i], edges[i + 1]]``, numbered ``0 .. len(edges) - 2``, as R's
``cut(x, breaks)`` makes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

ArrayLike = np.ndarray | sp.spmatrix | sp.sparray

#: cells per chunk of the one-pass joint counts
_ROWS = 32_768


def edges_for_base(breaks: Sequence[float], log_base: float) -> np.ndarray:
    """Bin edges given on the ``log2(x + 1)`` scale, expressed in units of ``log_base(x + 1)``.

    ``log2(x + 1) = log_b(x + 1) * log2(b)``, so an edge ``e`` on the log2 scale sits at
    ``e * ln(2) / ln(b)`` on the ``log_b`` scale (``inf`` stays ``inf``).

    Parameters
    ----------
    breaks
        Increasing edges on the log2 scale.
    log_base
        Base of the logarithm of the values that will be binned.

    Returns
    -------
    The edges as a float64 array.
    """
    edges = np.asarray(breaks, dtype=np.float64)
    if log_base == 2:
        return edges.copy()
    return edges * (np.log(2.0) / np.log(log_base))


def discretize(X: ArrayLike, edges: np.ndarray) -> np.ndarray:
    """Bin index of every value: bin ``i`` holds ``edges[i] < x <= edges[i + 1]``.

    Parameters
    ----------
    X
        Values (dense or sparse; sparse input is densified).
    edges
        Increasing bin edges (the first below every value, the last ``inf``).

    Returns
    -------
    An ``int8`` array of the shape of ``X``; values outside ``(edges[0], edges[-1]]`` get ``-1``.
    """
    dense = X.toarray() if sp.issparse(X) else np.asarray(X)
    bins = np.searchsorted(edges, dense, side="left") - 1
    bins[bins >= len(edges) - 1] = -1
    return bins.astype(np.int8)


def detected_in(X: ArrayLike, min_cells: int) -> np.ndarray:
    """Boolean mask of the columns with a value ``> 0`` in more than ``min_cells`` rows."""
    if sp.issparse(X):
        counts = np.asarray((X > 0).sum(axis=0)).ravel()
    else:
        counts = (np.asarray(X) > 0).sum(axis=0)
    return counts > min_cells


def column_sums(X: ArrayLike) -> np.ndarray:
    """Column sums in float64."""
    return np.asarray(X.sum(axis=0, dtype=np.float64)).ravel()


def rank_descending(values: np.ndarray) -> np.ndarray:
    """Indices that sort ``values`` from largest to smallest; ties keep their original order."""
    return np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")


def _entropy(counts: np.ndarray, n: float) -> np.ndarray:
    p = counts / n
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=-1)


def joint_counts(
    X: ArrayLike, labels: np.ndarray, edges: np.ndarray, n_classes: int | None = None
) -> np.ndarray:
    """Cells per gene, bin and class: a ``genes x bins x classes`` float64 array of exact counts.

    One pass over the stored values, by row chunks (sparse input stays sparse); bin 0 (zero expression) is
    each gene's remainder. The counts of every one-vs-rest task follow from it (:func:`one_vs_rest_joint`),
    so a fit with many classes bins the matrix once.

    Parameters
    ----------
    X
        Non-negative values, cells x genes (dense or sparse).
    labels
        Integer class codes ``0 .. K - 1`` per cell.
    edges
        Bin edges (see :func:`discretize`); zero must fall in bin 0.
    n_classes
        ``K`` (default: the largest code plus one).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.size
    n_classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    class_counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    n_bins = len(edges) - 1
    n_genes = X.shape[1]
    if sp.issparse(X):
        Xc = sp.csr_matrix(X)
        counts = np.zeros(n_genes * n_bins * n_classes, dtype=np.int64)
        for start in range(0, n, _ROWS):
            stop = min(start + _ROWS, n)
            lo, hi = int(Xc.indptr[start]), int(Xc.indptr[stop])
            bins = np.searchsorted(edges, Xc.data[lo:hi], side="left") - 1
            counted = (bins >= 1) & (bins < n_bins)
            rows = np.repeat(labels[start:stop], np.diff(Xc.indptr[start : stop + 1]))
            flat = (Xc.indices[lo:hi][counted].astype(np.int64) * n_bins + bins[counted]) * n_classes
            counts += np.bincount(flat + rows[counted], minlength=counts.size)
        joint = counts.reshape(n_genes, n_bins, n_classes).astype(np.float64)
    else:
        onehot = np.zeros((n, n_classes))
        onehot[np.arange(n), labels] = 1.0
        bins = discretize(X, edges)
        joint = np.zeros((n_genes, n_bins, n_classes), dtype=np.float64)
        for b in range(1, n_bins):
            joint[:, b, :] = (bins == b).astype(np.float64).T @ onehot
    joint[:, 0, :] = class_counts[None, :] - joint[:, 1:, :].sum(axis=1)
    return joint


def one_vs_rest_joint(joint: np.ndarray, k: int) -> np.ndarray:
    """The ``genes x bins x 2`` counts of class ``k`` (label 1) against the rest (label 0)."""
    return np.stack([joint.sum(axis=2) - joint[:, :, k], joint[:, :, k]], axis=2)


def nmi_from_joint(joint: np.ndarray) -> np.ndarray:
    """Normalised mutual information per gene from its ``bins x classes`` counts (see :func:`nmi_per_column`)."""
    class_counts = joint[0].sum(axis=0) if joint.shape[0] else np.zeros(joint.shape[2])
    n = float(class_counts.sum())
    bin_counts = joint.sum(axis=2)
    h_bins = _entropy(bin_counts, n)
    h_labels = float(_entropy(class_counts, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = bin_counts[:, :, None] * class_counts[None, None, :] / n
        terms = np.where(joint > 0, joint / n * np.log(joint / expected), 0.0)
    mutual = terms.sum(axis=(1, 2))
    denom = h_bins + h_labels
    return np.where(denom > 0, 2.0 * mutual / np.where(denom > 0, denom, 1.0), 0.0)


def nmi_per_column(X: ArrayLike, labels: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Normalised mutual information between each column's bins and the labels.

    ``NMI = 2 I(B; y) / (H(B) + H(y))`` (Danon et al. 2005; igraph ``compare(method="nmi")``,
    scikit-learn ``normalized_mutual_info_score(average_method="arithmetic")``). It is 0 when both
    entropies are 0.

    Parameters
    ----------
    X
        Non-negative values, cells x genes (dense or sparse; sparse stays sparse).
    labels
        Integer class codes ``0 .. K - 1`` per cell.
    edges
        Bin edges (see :func:`discretize`); zero must fall in bin 0.

    Returns
    -------
    NMI per column (float64).
    """
    return nmi_from_joint(joint_counts(X, labels, edges))


def union_top(by_mean: np.ndarray, by_nmi: np.ndarray, n_features: int) -> np.ndarray:
    """Union of the first ``n_features`` of two rankings, the mean-ranked ones first.

    Parameters
    ----------
    by_mean, by_nmi
        Column indices in rank order.
    n_features
        How many to take from each ranking.

    Returns
    -------
    Column indices: the top of ``by_mean``, then the top of ``by_nmi`` not already in it.
    """
    first = np.asarray(by_mean[:n_features])
    second = np.asarray(by_nmi[:n_features])
    return np.concatenate([first, second[~np.isin(second, first)]])


def correlation_keep(X: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """Which columns survive the correlation filter.

    Parameters
    ----------
    X
        Dense values, cells x selected genes, in the order of selection.
    threshold
        Pearson correlation above which a gene is redundant.
    method
        ``"pearson"``: scanning in column order, drop a gene whose ``|r|`` with a gene already kept
        exceeds ``threshold`` (constant genes correlate with nothing). ``"reference"``: what the
        reference scripts compute. They zero the diagonal and upper triangle of the correlation matrix,
        then keep a gene if any entry of its column is below ``threshold``. The zeroed diagonal is
        always below it, so every gene is kept.

    Returns
    -------
    A boolean mask over the columns.
    """
    n_genes = X.shape[1]
    if method == "reference":
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = np.corrcoef(X, rowvar=False).reshape(n_genes, n_genes)
        corr[~np.tri(n_genes, k=-1, dtype=bool)] = 0.0
        with np.errstate(invalid="ignore"):
            return (corr < threshold).any(axis=0)
    centred = X - X.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    constant = norms == 0
    unit = np.divide(centred, norms, out=np.zeros_like(centred), where=~constant)
    redundant = np.abs(unit.T @ unit) > threshold
    keep = np.zeros(n_genes, dtype=bool)
    for j in range(n_genes):
        keep[j] = constant[j] or not redundant[j, :j][keep[:j]].any()
    return keep


def balanced_weights(labels: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-cell weights ``n / (n_groups * n_k)``, so that every class carries the same total weight.

    Parameters
    ----------
    labels
        Integer codes ``0 .. n_groups - 1``.
    n_groups
        Number of classes (absent classes get no cells and so no weight).

    Returns
    -------
    float32 weights, one per cell.
    """
    counts = np.bincount(labels, minlength=n_groups).astype(np.float64)
    per_class = labels.size / (n_groups * np.maximum(counts, 1.0))
    return per_class[labels].astype(np.float32)


def detected_per_cell(X: ArrayLike) -> float:
    """Mean number of columns with a value ``> 0`` per row."""
    if sp.issparse(X):
        return float((X > 0).sum(axis=1).mean())
    return float((np.asarray(X) > 0).sum(axis=1).mean())


#: stored values thinned per random draw (the draws are the same whatever the chunk)
_THIN_CHUNK = 1 << 24


def thin(X: ArrayLike, dropout: float, rng: np.random.Generator, names: Sequence[str]) -> ArrayLike:
    """Set each non-zero value to zero with probability ``dropout`` (a copy; sparse stays sparse).

    This mimics a shallower dataset: at lower sequencing depth a gene is detected in fewer cells. The
    random draws follow the cells and the sorted column ``names``, so the order of the columns does not
    change which values are dropped.
    """
    order = np.argsort(np.asarray(names, dtype=str), kind="stable")
    inverse = np.argsort(order)
    if sp.issparse(X):
        out = sp.csr_matrix(X)[:, order]
        out.sort_indices()
        # drawn in chunks (the same stream as one draw): one float64 per stored value was 3.5 GB at 1M cells
        for start in range(0, out.data.size, _THIN_CHUNK):
            part = out.data[start : start + _THIN_CHUNK]
            part[rng.random(part.size) < dropout] = 0.0
        out.eliminate_zeros()
        out = out[:, inverse]
        out.sort_indices()
        return out
    out = np.array(X, copy=True)[:, order]
    nonzero = np.flatnonzero(out)
    out.flat[nonzero[rng.random(nonzero.size) < dropout]] = 0.0
    return out[:, inverse]


def observed_levels(bins: np.ndarray) -> list[list[int]]:
    """Sorted distinct bin indices of every column (``-1``, out of range, is not a level)."""
    return [sorted(int(v) for v in np.unique(col) if v >= 0) for col in bins.T]


def design_matrix(bins: np.ndarray, levels: Sequence[Sequence[int]], encoding: str) -> np.ndarray:
    """One-hot design matrix of binned genes.

    Parameters
    ----------
    bins
        Bin indices, cells x genes.
    levels
        The levels (bins observed at fit time) of each gene.
    encoding
        ``"onehot"``: one indicator column per level. ``"treatment"``: an intercept column of ones, then
        one indicator per level except the first (R ``model.matrix(~ .)``).

    Returns
    -------
    A float32 matrix, cells x columns (see :func:`design_columns`). A value in a bin that was not a level
    at fit time gets zeros in all of its gene's columns.
    """
    blocks = []
    if encoding == "treatment":
        blocks.append(np.ones((bins.shape[0], 1), dtype=np.float32))
    skip = 1 if encoding == "treatment" else 0
    for j, lv in enumerate(levels):
        lv = np.asarray(lv[skip:], dtype=np.int8)
        blocks.append((bins[:, j : j + 1] == lv[None, :]).astype(np.float32))
    if not blocks:
        return np.zeros((bins.shape[0], 0), dtype=np.float32)
    return np.hstack(blocks)


def design_columns(
    genes: Sequence[str], levels: Sequence[Sequence[int]], edges: Sequence[float], encoding: str
) -> list[str]:
    """Names of the design-matrix columns, such as ``"CD3E(0,1]"`` (intervals on the log2 scale)."""

    def fmt(v: float) -> str:
        return "Inf" if np.isinf(v) else f"{v:g}"

    names = ["(Intercept)"] if encoding == "treatment" else []
    skip = 1 if encoding == "treatment" else 0
    for gene, lv in zip(genes, levels, strict=True):
        names.extend(f"{gene}({fmt(edges[b])},{fmt(edges[b + 1])}]" for b in lv[skip:])
    return names
