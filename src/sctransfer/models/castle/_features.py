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
from numba import njit

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


#: the value types the binning kernel is compiled for (others are binned as float64)
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def discretize(X: ArrayLike, edges: np.ndarray) -> np.ndarray:
    """Bin index of every value: bin ``i`` holds ``edges[i] < x <= edges[i + 1]``.

    Parameters
    ----------
    X
        Values (dense or sparse; sparse input is binned from its stored values, never densified).
    edges
        Increasing bin edges (the first below every value, the last ``inf``).

    Returns
    -------
    An ``int8`` array of the shape of ``X``; values outside ``(edges[0], edges[-1]]`` get ``-1``.
    """
    edges = np.asarray(edges, dtype=np.float64)
    if sp.issparse(X):
        Xc = sp.csr_matrix(X)
        if Xc.has_canonical_format:
            data = Xc.data if Xc.data.dtype in _KERNEL_DTYPES else Xc.data.astype(np.float64)
            values = np.append(data, data.dtype.type(0))[None, :]  # the stored values, then a zero
            stored = np.empty(values.shape, dtype=np.int8)
            _bin_dense(values, edges, stored)
            out = np.empty(Xc.shape, dtype=np.int8)
            _scatter_rows(Xc.indptr, Xc.indices, stored[0], stored[0, -1], out)
            return out
        X = Xc.toarray()
    X = np.asarray(X)
    if X.dtype not in _KERNEL_DTYPES:
        X = X.astype(np.float64)
    out = np.empty(X.shape, dtype=np.int8)
    _bin_dense(X, edges, out)
    return out


@njit(cache=True, nogil=True)
def _bin_dense(X: np.ndarray, edges: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    # a value's bin is the number of edges below it (np.searchsorted(side="left") on the sorted edges)
    # minus one, and -1 outside the edges. Written out here: the same count in a helper function made the
    # loop five times slower.
    n_edges = edges.size
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            x = X[i, j]
            count = 0
            for k in range(n_edges):
                count += edges[k] < x
            out[i, j] = -1 if count == 0 or count == n_edges else count - 1


@njit(cache=True, nogil=True)
def _scatter_rows(
    indptr: np.ndarray, indices: np.ndarray, stored: np.ndarray, fill: np.int8, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        out[i, :] = fill
        for p in range(indptr[i], indptr[i + 1]):
            out[i, indices[p]] = stored[p]


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


def correlation_matrix(blocks: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """Pearson correlations between the columns of stacked, scaled blocks.

    The blocks are read by row chunks in float64, so neither the stack nor a float64 copy of a block is
    ever made: at a million cells the filter's stacked, centred and scaled copies had taken 12 GB.

    Parameters
    ----------
    blocks
        ``(values, scale)`` pairs: dense cells x genes values (the same genes in every block), stacked as
        ``values * scale``.

    Returns
    -------
    The genes x genes correlations (float64); a constant column's row and column are NaN.
    """
    n_rows = sum(values.shape[0] for values, _ in blocks)
    n_cols = blocks[0][0].shape[1]
    total = np.zeros(n_cols)
    for values, scale in blocks:
        for start in range(0, values.shape[0], _ROWS):
            total += values[start : start + _ROWS].sum(axis=0, dtype=np.float64) * scale
    mean = total / max(n_rows, 1)
    gram = np.zeros((n_cols, n_cols))
    for values, scale in blocks:
        for start in range(0, values.shape[0], _ROWS):
            centred = values[start : start + _ROWS].astype(np.float64) * scale - mean
            gram += centred.T @ centred
    norms = np.sqrt(np.diag(gram))
    with np.errstate(divide="ignore", invalid="ignore"):
        return gram / np.outer(norms, norms)


def correlation_keep(corr: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """Which columns survive the correlation filter.

    Parameters
    ----------
    corr
        Correlations between the selected genes, in the order of selection (:func:`correlation_matrix`;
        NaN for a constant gene).
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
    n_genes = corr.shape[0]
    if method == "reference":
        corr = corr.copy()
        corr[~np.tri(n_genes, k=-1, dtype=bool)] = 0.0
        with np.errstate(invalid="ignore"):
            return (corr < threshold).any(axis=0)
    with np.errstate(invalid="ignore"):
        redundant = np.abs(corr) > threshold  # NaN (a constant gene) is never redundant
    keep = np.zeros(n_genes, dtype=bool)
    for j in range(n_genes):
        keep[j] = not redundant[j, :j][keep[:j]].any()
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
    if sp.issparse(X):
        return _thin_sparse(sp.csr_matrix(X), dropout, rng, np.argsort(order))
    out = np.array(X, copy=True)[:, order]
    nonzero = np.flatnonzero(out)
    out.flat[nonzero[rng.random(nonzero.size) < dropout]] = 0.0
    return out[:, np.argsort(order)]


def _thin_sparse(
    X: sp.csr_matrix, dropout: float, rng: np.random.Generator, rank: np.ndarray
) -> sp.csr_matrix:
    """:func:`thin` of a CSR matrix without reordering it: ``rank`` is each column's place by name.

    The stored values get their draws row by row, in the order of their columns' ``rank`` (what a copy
    with the columns sorted by name would store), in chunks of about ``_THIN_CHUNK`` values. Only a mask
    and the kept values are allocated: permuting the columns and back had taken two copies of the matrix.
    """
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    n_rows, n_cols = X.shape
    indptr = X.indptr.astype(np.int64)
    keep = np.empty(X.nnz, dtype=bool)
    kept_per_row = np.zeros(n_rows, dtype=np.int64)
    row = 0
    while row < n_rows:
        # the rows whose stored values fit in a chunk (at least one row)
        stop = int(np.searchsorted(indptr, indptr[row] + _THIN_CHUNK, side="right")) - 1
        stop = min(max(stop, row + 1), n_rows)
        lo, hi = int(indptr[row]), int(indptr[stop])
        local_row = np.repeat(np.arange(stop - row, dtype=np.int64), np.diff(indptr[row : stop + 1]))
        by_name = np.argsort(local_row * n_cols + rank[X.indices[lo:hi]], kind="stable")
        chunk = np.empty(hi - lo, dtype=bool)
        chunk[by_name] = rng.random(hi - lo) >= dropout
        chunk &= X.data[lo:hi] != 0
        keep[lo:hi] = chunk
        kept_per_row[row:stop] = np.bincount(local_row[chunk], minlength=stop - row)
        row = stop
    new_indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(kept_per_row, out=new_indptr[1:])
    index_dtype = (
        np.int32
        if new_indptr[-1] <= np.iinfo(np.int32).max and n_cols <= np.iinfo(np.int32).max
        else np.int64
    )
    out = sp.csr_matrix(
        (X.data[keep], X.indices[keep].astype(index_dtype, copy=False), new_indptr.astype(index_dtype)),
        shape=X.shape,
    )
    out.has_sorted_indices = X.has_sorted_indices
    return out


def observed_levels(*bins: np.ndarray) -> list[list[int]]:
    """Sorted distinct bin indices of every column, over one or more blocks of rows.

    ``-1`` (out of range) is not a level.
    """
    n_cols = bins[0].shape[1]
    top = max((int(b.max()) for b in bins if b.size), default=-1)
    present = np.zeros((top + 1, n_cols), dtype=bool)
    for level in range(top + 1):
        for block in bins:
            present[level] |= (block == level).any(axis=0)
    return [np.flatnonzero(present[:, j]).tolist() for j in range(n_cols)]


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
    skip = 1 if encoding == "treatment" else 0
    gene = np.array([j for j, lv in enumerate(levels) for _ in lv[skip:]], dtype=np.int64)
    level = np.array([v for lv in levels for v in lv[skip:]], dtype=np.int8)
    out = np.empty((bins.shape[0], skip + gene.size), dtype=np.float32)
    if skip:
        out[:, 0] = 1.0
    _one_hot(np.ascontiguousarray(bins, dtype=np.int8), gene, level, out[:, skip:])
    return out


@njit(cache=True, nogil=True)
def _one_hot(
    bins: np.ndarray, gene: np.ndarray, level: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    for i in range(bins.shape[0]):
        for c in range(gene.size):
            out[i, c] = 1.0 if bins[i, gene[c]] == level[c] else 0.0


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
