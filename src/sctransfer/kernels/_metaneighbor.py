"""Unsupervised MetaNeighbor (exact and fast) and BERMUDA's cluster-pair selection, at array level.

Both versions score how well every cluster of one batch is recognised by every cluster of the
other batches and return a symmetric ``clusters x clusters`` AUROC matrix.

Exact version (MetaNeighbor's default, as shipped with BERMUDA):

1. Spearman correlation between all pairs of cells over the genes (an ``N x N`` network). The
   correlations are computed from doubled centred ranks, which are integers, so equal correlations
   are bit-for-bit equal and tie in the next step;
2. all ``N^2`` entries are ranked jointly (ties averaged) and divided by the maximum rank;
3. ``P[i, c] = sum_{j in c} R[i, j] / sum_j R[i, j]`` (self-votes included, degree over all cells);
4. for a test cluster ``i`` of batch ``s``, the AUROC of ``P[:, c]`` separating cluster ``i`` from the
   other cells of ``s`` (closed-form rank sum, ties averaged);
5. ``(NV + NV.T) / 2``; the within-batch blocks are set to 0.

Fast version (MetaNeighbor's low-memory version): every cell is rank-normalised to ``z_i`` (centred,
unit norm) so that the Spearman correlation is ``z_i . z_j``; the votes are dot products with the
cluster sums, shifted to ``rho + 1`` and divided by the node degree within the train cluster's batch.
It never forms the network: ``O(N G (C + B))`` time and ``O(N (C + B) + nnz)`` extra memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numba import njit

__all__ = ["metaneighbor", "select_cluster_pairs"]

#: bytes per cell pair held by the exact version (network + upper-triangle values, positions, order)
_EXACT_BYTES_PER_PAIR = 20.0
#: cells ranked at a time by the fast version (a backed or dask matrix is read this many rows at a time)
_CHUNK_ROWS = 32_768


# --------------------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------------------
@njit(cache=True)
def _rank_sorted(values, order, ranks, start, stop, pos):  # pragma: no cover - compiled
    """Average ranks of ``values[order[start:stop]]`` (already sorted), the first one after ``pos``."""
    t = start
    while t < stop:
        u = t
        while u + 1 < stop and values[order[u + 1]] == values[order[t]]:
            u += 1
        avg = pos + (u - t + 2) / 2.0
        for w in range(t, u + 1):
            ranks[order[w]] = avg
        pos += u - t + 1
        t = u + 1
    return pos


@njit(cache=True)
def _row_ranks(values, n_implicit, ranks):  # pragma: no cover - compiled
    """Average ranks of the stored ``values`` plus ``n_implicit`` zeros; returns the zeros' rank."""
    k = values.size
    order = np.argsort(values, kind="mergesort")
    neg = 0
    while neg < k and values[order[neg]] < 0:
        neg += 1
    zero_end = neg
    while zero_end < k and values[order[zero_end]] == 0:
        zero_end += 1
    pos = _rank_sorted(values, order, ranks, 0, neg, 0.0)
    n_zero = n_implicit + zero_end - neg
    zero_rank = pos + (n_zero + 1) / 2.0
    for w in range(neg, zero_end):
        ranks[order[w]] = zero_rank
    pos += n_zero
    _rank_sorted(values, order, ranks, zero_end, k, pos)
    return zero_rank


@njit(cache=True)
def _dense_doubled_ranks(X):  # pragma: no cover - compiled
    """``2 * rank - (G + 1)`` of every row of a dense matrix (integers, as float64)."""
    n, g = X.shape
    Y = np.empty((n, g))
    ranks = np.empty(g)
    for i in range(n):
        row = np.ascontiguousarray(X[i])
        _row_ranks(row, 0, ranks)
        for j in range(g):
            Y[i, j] = 2.0 * ranks[j] - (g + 1)
    return Y


@njit(cache=True, nogil=True)
def _csr_doubled_ranks_rows(
    data, indptr, n_genes, relative, r0, r1, out, zero_value, stored_ss
):  # pragma: no cover - compiled
    """Doubled centred ranks of CSR rows ``r0:r1``, written into ``out``, ``zero_value`` and ``stored_ss``.

    ``out`` gets the stored entries' values (minus their row's zero value when ``relative``),
    ``zero_value`` each row's zero value, and ``stored_ss`` each row's sum of squares over its stored
    entries, so that no other array of the stored entries' size is needed.
    """
    for i in range(r0, r1):
        a, b = indptr[i], indptr[i + 1]
        ranks = np.empty(b - a)
        zero_rank = _row_ranks(data[a:b], n_genes - (b - a), ranks)
        zero = 2.0 * zero_rank - (n_genes + 1)
        zero_value[i] = zero
        acc = 0.0
        for t in range(b - a):
            value = 2.0 * ranks[t] - (n_genes + 1)
            acc += value * value
            out[a + t] = value - zero if relative else value
        stored_ss[i] = acc


@njit(cache=True)
def _upper_correlations(num, ss):  # pragma: no cover - compiled
    """The upper triangle (diagonal included) of ``rho_ij = num_ij / sqrt(ss_i ss_j)``, row by row."""
    n = num.shape[0]
    vals = np.empty(n * (n + 1) // 2)
    k = 0
    for i in range(n):
        vals[k] = 1.0
        k += 1
        for j in range(i + 1, n):
            vals[k] = num[i, j] / np.sqrt(ss[i] * ss[j])
            k += 1
    return vals


@njit(cache=True)
def _bucket_argsort(vals):  # pragma: no cover - compiled
    """``argsort(vals)``: a counting pass into ~``m / 16`` equal-width buckets, then a sort inside each.

    A comparison argsort of the ``N (N + 1) / 2`` network entries dominated the exact version's time;
    bucketing first makes the scatter linear and leaves only short segments to sort.
    """
    m = vals.size
    lo = vals.min()
    hi = vals.max()
    n_buckets = max(1, m // 16)
    scale = (n_buckets - 1e-6) / (hi - lo) if hi > lo else 0.0
    offsets = np.zeros(n_buckets + 1, dtype=np.int64)
    for k in range(m):
        offsets[int((vals[k] - lo) * scale) + 1] += 1
    for b in range(n_buckets):
        offsets[b + 1] += offsets[b]
    fill = offsets[:-1].copy()
    order = np.empty(m, dtype=np.int64)
    for k in range(m):
        b = int((vals[k] - lo) * scale)
        order[fill[b]] = k
        fill[b] += 1
    for b in range(n_buckets):
        a, e = offsets[b], offsets[b + 1]
        if e - a < 2:
            continue
        if e - a <= 32:
            for t in range(a + 1, e):  # insertion sort, stable
                key = order[t]
                v = vals[key]
                u = t - 1
                while u >= a and vals[order[u]] > v:
                    order[u + 1] = order[u]
                    u -= 1
                order[u + 1] = key
        else:
            seg = order[a:e].copy()
            sub = np.argsort(vals[seg], kind="mergesort")
            for t in range(e - a):
                order[a + t] = seg[sub[t]]
    return order


@njit(cache=True)
def _network_rank_votes(num, ss, cell_cluster, n_clusters):  # pragma: no cover - compiled
    """Rank-standardise the Spearman network jointly over all ``N^2`` entries, then vote.

    ``num`` holds the products of doubled centred ranks (``Y Y^T``) and ``ss`` the row sums of squares;
    ``rho_ij = num_ij / sqrt(ss_i ss_j)`` with the diagonal set to 1. Only the upper triangle is ranked
    (an off-diagonal entry counts twice in the ``N^2`` ranking). Returns ``P`` (votes over node degree).
    """
    n = num.shape[0]
    vals = _upper_correlations(num, ss)
    order = _bucket_argsort(vals)
    m = vals.size
    # a position k of the triangle is on the diagonal iff k is a row start
    is_diag = np.zeros(m, dtype=np.bool_)
    k = 0
    for i in range(n):
        is_diag[k] = True
        k += n - i
    pos = 0.0
    top = 0.0
    t = 0
    while t < m:
        u = t
        value = vals[order[t]]
        weight = 1.0 if is_diag[order[t]] else 2.0
        while u + 1 < m and vals[order[u + 1]] == value:
            u += 1
            weight += 1.0 if is_diag[order[u]] else 2.0
        avg = pos + (weight + 1.0) / 2.0
        for w in range(t, u + 1):
            vals[order[w]] = avg  # the group's values were all read above
        top = avg
        pos += weight
        t = u + 1
    votes = np.zeros((n, n_clusters))
    degree = np.zeros(n)
    k = 0
    for i in range(n):
        ci = cell_cluster[i]
        for j in range(i, n):
            r = vals[k] / top
            k += 1
            votes[i, cell_cluster[j]] += r
            degree[i] += r
            if j != i:
                votes[j, ci] += r
                degree[j] += r
    for i in range(n):
        for c in range(n_clusters):
            votes[i, c] /= degree[i]
    return votes


@njit(cache=True, nogil=True)
def _auroc_columns(
    scores, cell_batch, cell_cluster, cluster_batch, n_batches, sizes, c0, c1, skip_same_batch, out
):  # pragma: no cover - compiled
    """One-vs-rest AUROC of score columns ``c0:c1`` for every cluster, within the cluster's own batch.

    With ``skip_same_batch`` the columns of a batch's own clusters are not scored for that batch (their
    entries stay as they are). A batch's rows of the columns are first copied into one contiguous row per
    column: read straight from ``scores`` (cells x clusters), every value of a column was a cache miss.
    """
    n_clusters = scores.shape[1]
    for s in range(n_batches):
        idx = np.nonzero(cell_batch == s)[0]
        ns = idx.size
        block = np.empty((c1 - c0, ns))
        for t in range(ns):
            row = scores[idx[t]]
            for c in range(c0, c1):
                block[c - c0, t] = row[c]
        ranks = np.empty(ns)
        sums = np.empty(n_clusters)
        for c in range(c0, c1):
            if skip_same_batch and cluster_batch[c] == s:
                continue
            col = block[c - c0]
            order = np.argsort(col)
            _rank_sorted(col, order, ranks, 0, ns, 0.0)
            sums[:] = 0.0
            for t in range(ns):
                sums[cell_cluster[idx[t]]] += ranks[t]
            for i in range(n_clusters):
                if cluster_batch[i] == s:
                    n_pos = sizes[i]
                    out[i, c] = (sums[i] / n_pos - (n_pos + 1.0) / 2.0) / (ns - n_pos)


# --------------------------------------------------------------------------------------------------
# threaded drivers: independent rows (ranks) or score columns (AUROCs) on sct.settings.n_jobs threads; every
# piece is computed as on one thread, so the results do not depend on the thread count
# --------------------------------------------------------------------------------------------------
def _csr_doubled_ranks(X: sp.csr_matrix, relative: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_csr_doubled_ranks_rows` over all rows of ``X``, in one piece of rows per thread."""
    from ._knn import _n_workers, _run_blocks

    n, n_genes = X.shape
    indptr = X.indptr.astype(np.int64)
    out, zero_value, stored_ss = np.empty(X.data.size), np.empty(n), np.zeros(n)
    n_workers = _n_workers()
    step = max(1, -(-n // n_workers))

    def work(r0: int) -> None:
        r1 = min(r0 + step, n)
        _csr_doubled_ranks_rows(X.data, indptr, n_genes, relative, r0, r1, out, zero_value, stored_ss)

    _run_blocks(work, range(0, n, step), n_workers)
    return out, zero_value, stored_ss


def _rank_integers(n_genes: int, relative: bool) -> np.dtype:
    """The smallest integer dtype that holds the doubled centred ranks of ``n_genes`` genes.

    They are integers in ``[-(G - 1), G - 1]``; minus the row's zero value (``relative``), twice that range.
    """
    bound = (2 if relative else 1) * (n_genes - 1)
    return np.dtype(np.int16) if bound <= np.iinfo(np.int16).max else np.dtype(np.int32)


@dataclass
class _RankedChunk:
    """The doubled centred ranks of a chunk of cells, as compact integers.

    ``Y`` is CSR (the stored entries' ranks minus the row's ``zero_value``) or dense (the ranks, and
    ``zero_value`` is ``None``); ``scale`` is ``1 / sqrt(sum of squares)`` of every row.
    """

    start: int
    Y: sp.csr_matrix | np.ndarray
    zero_value: np.ndarray | None
    scale: np.ndarray


def _rank_chunk(block: np.ndarray | sp.csr_matrix, start: int, bad: list[int]) -> _RankedChunk:
    """Rank one chunk of cells, checked as :func:`_prepare_matrix` checks a matrix.

    The rows whose genes all have the same value are added to ``bad`` (by their position in the whole
    matrix).
    """
    X = _prepare_matrix(block)
    n_genes = X.shape[1]
    if sp.issparse(X):
        ydata, zero_value, ss = _csr_doubled_ranks(X, True)
        ss += (n_genes - np.diff(X.indptr)) * zero_value**2
        # the arrays set on an empty matrix: a CSR view of X keeps sharing X's indices
        Y = sp.csr_matrix(X.shape, dtype=_rank_integers(n_genes, True))
        Y.data, Y.indices, Y.indptr = ydata.astype(Y.dtype), X.indices, X.indptr
    else:
        Y64 = _dense_doubled_ranks(X)
        ss = np.einsum("ij,ij->i", Y64, Y64)
        Y, zero_value = Y64.astype(_rank_integers(n_genes, False)), None
    constant = ss <= 0
    bad.extend((start + np.flatnonzero(constant)).tolist())
    scale = 1.0 / np.sqrt(np.where(constant, 1.0, ss))
    return _RankedChunk(start, Y, zero_value, scale)


def _row_chunks(X: object, n_rows: int) -> Iterator[tuple[int, np.ndarray | sp.csr_matrix]]:
    """``(start, rows)`` of ``X`` by :data:`_CHUNK_ROWS` rows.

    Views of an in-memory matrix, the rows that a row source (:class:`~sctransfer.kernels._pca.RowSource`)
    makes, or rows read from a backed or dask matrix.
    """
    from .._utils._validation import check_readable, is_in_memory, read_chunk
    from ._pca import RowSource, _row_slice

    if is_in_memory(X):
        X = sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)
    elif not isinstance(X, RowSource):
        check_readable(X, "X")
    for start in range(0, n_rows, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, n_rows)
        if isinstance(X, np.ndarray) or sp.issparse(X) or isinstance(X, RowSource):
            yield start, _row_slice(X, start, stop)  # type: ignore[arg-type]
        else:
            yield start, read_chunk(X, start, stop)


def _fast_scores(
    X: object,
    cell_batch: np.ndarray,
    cell_cluster: np.ndarray,
    n_clusters: int,
    n_batches: int,
    cluster_batch: np.ndarray,
) -> np.ndarray:
    """Every cell's vote share for every cluster (cells x clusters, float64), reading ``X`` once.

    Each chunk of cells is ranked as it is read, and only its ranks are kept, as small integers; the
    cluster and batch sums ``W`` of the normalised ranks are summed chunk by chunk. Then every chunk's
    products with the cluster and the batch sums become its scores at once, so only the scores are held
    for all cells.
    """
    from ._knn import _n_workers, _run_blocks

    n_cells, n_genes = _shape(X)
    W = np.zeros((n_clusters + n_batches, n_genes))
    chunks: list[_RankedChunk] = []
    bad: list[int] = []
    for start, block in _row_chunks(X, n_cells):
        chunk = _rank_chunk(block, start, bad)
        m = chunk.scale.size
        cells = np.arange(start, start + m)
        # indicator of clusters (rows 0..C-1) and batches (C..C+B-1), weighted by the scale: H Y = sums of z
        H = sp.csr_matrix(
            (np.tile(chunk.scale, 2), (np.concatenate([cell_cluster[cells], n_clusters + cell_batch[cells]]),
                                       np.tile(np.arange(m), 2))),
            shape=(n_clusters + n_batches, m),
        )  # fmt: skip
        if chunk.zero_value is None:
            W += H @ chunk.Y
        else:
            W += (H @ chunk.Y).toarray()
            W += (H @ chunk.zero_value)[:, None]
        chunks.append(chunk)
    _check_nonconstant(np.asarray(bad, dtype=np.int64))
    groups = np.concatenate([cell_cluster, n_clusters + cell_batch])
    n_group = np.bincount(groups, minlength=n_clusters + n_batches).astype(np.float64)
    scores = np.empty((n_cells, n_clusters))
    WT, w_sum = W.T, W.sum(axis=1)

    def work(i: int) -> None:
        chunk = chunks[i]
        stop = chunk.start + chunk.scale.size
        product = np.asarray(chunk.Y @ WT, dtype=np.float64)
        if chunk.zero_value is not None:
            product += chunk.zero_value[:, None] * w_sum[None, :]
        Q = chunk.scale[:, None] * product
        votes = Q[:, :n_clusters] + n_group[:n_clusters]
        degree = Q[:, n_clusters:] + n_group[n_clusters:]
        scores[chunk.start : stop] = votes / degree[:, cluster_batch]

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # the chunks run in parallel: one BLAS thread each
        _run_blocks(work, range(len(chunks)), _n_workers())
    return scores


def _auroc_within_batch(
    scores: np.ndarray,
    cell_batch: np.ndarray,
    cell_cluster: np.ndarray,
    cluster_batch: np.ndarray,
    n_batches: int,
    skip_same_batch: bool = False,
) -> np.ndarray:
    """One-vs-rest AUROC of every score column for every cluster, within the cluster's own batch.

    ``skip_same_batch``: the entries of two clusters of the same batch are left at 0 (not computed).
    """
    from ._knn import _n_workers, _run_blocks

    n_clusters = scores.shape[1]
    out = np.zeros((n_clusters, n_clusters))
    sizes = np.bincount(cell_cluster, minlength=n_clusters).astype(np.float64)
    n_workers = _n_workers()
    step = max(1, -(-n_clusters // (4 * n_workers)))

    def work(c0: int) -> None:
        c1 = min(c0 + step, n_clusters)
        _auroc_columns(
            scores, cell_batch, cell_cluster, cluster_batch, n_batches, sizes, c0, c1, skip_same_batch, out
        )

    _run_blocks(work, range(0, n_clusters, step), n_workers)
    return out


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
def _codes(values: Sequence[int] | np.ndarray, name: str, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one integer per cell), got shape {arr.shape}.")
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must hold integer codes, got dtype {arr.dtype}; use e.g. pd.factorize(labels)[0]."
        )
    if arr.size != n_cells:
        raise ValueError(f"{name} has {arr.size} entries but X has {n_cells} cells (rows); they must match.")
    labels, inverse = np.unique(arr, return_inverse=True)
    return labels, inverse.astype(np.int64)


def _rank_dtype(values: np.ndarray) -> np.dtype:
    """The float dtype whose ranks equal those of ``values``: float32 or float64 kept, exact integers."""
    if values.dtype in (np.float32, np.float64):
        return values.dtype
    if values.dtype.kind == "b" or values.dtype.itemsize <= 2:
        return np.dtype(np.float32)
    if values.size == 0 or np.abs(values).max() <= 2**24:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _shape(X: object) -> tuple[int, int]:
    """``(cells, genes)`` of ``X``, which must have at least one cell and two genes."""
    shape = tuple(int(d) for d in getattr(X, "shape", np.shape(X)))
    if len(shape) != 2:
        raise ValueError(f"X must be a 2-d cells x genes matrix, got {len(shape)} dimension(s).")
    if shape[0] == 0 or shape[1] < 2:
        raise ValueError(f"X must have at least one cell and two genes, got shape {shape}.")
    return shape[0], shape[1]


def _prepare_matrix(X: np.ndarray | sp.spmatrix | sp.sparray) -> np.ndarray | sp.csr_matrix:
    """X (dense or canonical CSR) in a dtype whose ranks are those of its values; raise on other values.

    Only the order of each cell's values is used (its ranks), so X keeps a float32 or float64 dtype and
    is copied only when it is not C-contiguous (dense) or not canonical CSR; other numbers become float32
    when every value is an integer of magnitude at most 2**24 (exact in float32), float64 otherwise.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        if X.dtype.kind not in "biuf":
            raise ValueError(f"X must hold numbers, got dtype {X.dtype}.")
        dtype = _rank_dtype(X.data)
        if X.dtype != dtype or not X.has_canonical_format:
            X = sp.csr_matrix(X, dtype=dtype, copy=True)
            X.sum_duplicates()
        values = X.data
    else:
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise ValueError(f"X must hold numbers, got dtype {X.dtype}.")
        X = np.ascontiguousarray(X, dtype=_rank_dtype(X))
        values = X
    if not np.isfinite(values).all():
        raise ValueError("X contains NaN or infinite values; remove or impute them first.")
    return X


def _prepare_codes(
    n_cells: int, batches: Sequence[int] | np.ndarray, clusters: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check the codes; return the cell codes, each cluster's batch and the cluster labels."""
    batch_labels, cell_batch = _codes(batches, "batches", n_cells)
    cluster_labels, cell_cluster = _codes(clusters, "clusters", n_cells)
    if batch_labels.size < 2:
        raise ValueError(
            f"MetaNeighbor compares clusters across batches, but all cells are in one batch "
            f"({batch_labels[0]}); pass at least two batches."
        )
    n_clusters = cluster_labels.size
    # the distinct (cluster, batch) pairs, from one integer per cell (np.unique over axis=1 took 2 s at 1M)
    pairs = np.unique(cell_cluster * np.int64(batch_labels.size) + cell_batch)
    pair_batches = np.stack([pairs // batch_labels.size, pairs % batch_labels.size])
    cluster_batch = np.full(n_clusters, -1, dtype=np.int64)
    multi = np.bincount(pair_batches[0], minlength=n_clusters) > 1
    if multi.any():
        raise ValueError(
            f"clusters {cluster_labels[multi].tolist()} contain cells of several batches; every cluster must "
            "lie in one batch (give each batch its own cluster codes, e.g. offset them per batch)."
        )
    cluster_batch[pair_batches[0]] = pair_batches[1]
    sizes = np.bincount(cell_cluster, minlength=n_clusters)
    if (sizes < 2).any():
        raise ValueError(
            f"clusters {cluster_labels[sizes < 2].tolist()} have a single cell; an AUROC needs at least two "
            "cells per cluster: merge or drop them."
        )
    per_batch = np.bincount(cluster_batch, minlength=batch_labels.size)
    if (per_batch < 2).any():
        raise ValueError(
            f"batches {batch_labels[per_batch < 2].tolist()} have a single cluster; the one-vs-rest AUROC needs "
            "at least two clusters in every batch."
        )
    return cell_batch, cell_cluster, cluster_batch, cluster_labels


def _check_nonconstant(bad: np.ndarray) -> None:
    """Raise if there are cells (``bad``: their rows) whose genes all have the same value."""
    if bad.size:
        raise ValueError(
            f"{bad.size} cell(s) (rows {bad[:10].tolist()}{'...' if bad.size > 10 else ''}) have the same value "
            "for every gene, so their Spearman correlation is undefined; drop them or use more genes."
        )


def _whole(X: object, n_cells: int) -> np.ndarray | sp.csr_matrix:
    """All rows of ``X`` in memory: a backed or dask matrix read by ``in_memory``, a row source's chunks stacked."""
    from .._utils._validation import in_memory
    from ._pca import RowSource

    if not isinstance(X, RowSource):
        return in_memory(X, "X")  # type: ignore[return-value]
    blocks = [block for _, block in _row_chunks(X, n_cells)]
    return sp.vstack(blocks, format="csr") if sp.issparse(blocks[0]) else np.vstack(blocks)


def _exact_scores(X: np.ndarray | sp.csr_matrix, cell_cluster: np.ndarray, n_clusters: int) -> np.ndarray:
    """Every cell's share of votes for every cluster in the Spearman network, ranked jointly."""
    X = _prepare_matrix(X)
    n_cells, n_genes = X.shape
    if sp.issparse(X):
        ydata, zero_value, ss = _csr_doubled_ranks(X, False)
        n_stored = np.diff(X.indptr)
        ss += (n_genes - n_stored) * zero_value**2
        Y = np.repeat(zero_value[:, None], n_genes, axis=1)
        Y[np.repeat(np.arange(n_cells), n_stored), X.indices] = ydata
    else:
        Y = _dense_doubled_ranks(X)
        ss = np.einsum("ij,ij->i", Y, Y)
    _check_nonconstant(np.flatnonzero(ss <= 0))
    num = Y @ Y.T
    del Y
    return _network_rank_votes(num, ss, cell_cluster, n_clusters)


# --------------------------------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------------------------------
def _settings_blas_threads(func):
    """Run ``func`` with BLAS limited to ``sct.settings.n_jobs`` threads.

    The numba kernels here are serial: only the BLAS products use threads, so the pools never nest.
    """
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        from .._utils._settings import settings

        with threadpool_limits(limits=settings.threads(), user_api="blas"):
            return func(*args, **kwargs)

    return wrapper


@_settings_blas_threads
def metaneighbor(
    X: np.ndarray | sp.spmatrix | sp.sparray,
    batches: Sequence[int] | np.ndarray,
    clusters: Sequence[int] | np.ndarray,
    *,
    fast: bool = False,
    symmetric: bool = True,
    zero_within_batch: bool = True,
    max_memory_gb: float = 8.0,
) -> pd.DataFrame:
    """Unsupervised MetaNeighbor: cross-batch cluster similarity as a ``clusters x clusters`` AUROC.

    Parameters
    ----------
    X
        ``cells x genes`` expression (dense or sparse; typically log-normalised highly variable genes).
        Not modified. Also a backed or dask matrix, or a row source
        (``sctransfer.kernels._pca.RowSource``): the fast version reads it once, 32,768 rows at a time,
        and the exact version reads it whole.
    batches
        Integer batch code of every cell.
    clusters
        Integer cluster code of every cell. Every cluster must lie in a single batch.
    fast
        ``False``: the exact version (Spearman network, joint rank standardisation of all ``N^2``
        entries, degree-normalised votes); ``O(N^2)`` memory. ``True``: the low-memory version (rank
        normalised cells, centroid votes, node degree within the train cluster's batch), which never
        forms the network and is not numerically identical to the exact one. It holds the ranks of the
        stored entries as 16-bit integers (32-bit above 16,384 genes) and a ``cells x clusters`` array
        of scores.
    symmetric
        Return ``(NV + NV.T) / 2`` (BERMUDA, MetaNeighbor's default) instead of ``NV``.
    zero_within_batch
        Set the entries of two clusters of the same batch to 0, as in BERMUDA's matrices.
    max_memory_gb
        The exact version refuses inputs whose network needs more memory than this
        (about ``20 N^2`` bytes).

    Returns
    -------
    Square DataFrame indexed by the sorted cluster codes on both axes (rows: test clusters, columns:
    train clusters when ``symmetric=False``). ``NV[i, c]`` is the AUROC with which the votes for
    cluster ``c`` separate cluster ``i`` from the other cells of ``i``'s batch.

    Raises
    ------
    ValueError
        On mismatched lengths, non-integer codes, a single batch, a cluster spanning several batches, a
        cluster with one cell, a batch with one cluster, non-finite values, cells that are constant over
        the genes, or (exact version) a network larger than ``max_memory_gb``.
    """
    if not hasattr(X, "shape"):  # nested lists
        X = np.asarray(X)
    n_cells, _ = _shape(X)
    cell_batch, cell_cluster, cluster_batch, cluster_labels = _prepare_codes(n_cells, batches, clusters)
    n_clusters = cluster_labels.size
    n_batches = int(cell_batch.max()) + 1
    if fast:
        scores = _fast_scores(X, cell_batch, cell_cluster, n_clusters, n_batches, cluster_batch)
    else:
        need_gb = _EXACT_BYTES_PER_PAIR * float(n_cells) ** 2 / 1e9
        if need_gb > max_memory_gb:
            raise ValueError(
                f"the exact MetaNeighbor on {n_cells} cells needs about {need_gb:.1f} GB for the cell-cell "
                f"network (max_memory_gb={max_memory_gb}); use fast=True (low-memory version) or raise "
                "max_memory_gb if the machine has the memory."
            )
        scores = _exact_scores(_whole(X, n_cells), cell_cluster, n_clusters)
    nv = _auroc_within_batch(
        np.ascontiguousarray(scores), cell_batch, cell_cluster, cluster_batch, n_batches, zero_within_batch
    )
    if symmetric:
        nv = (nv + nv.T) / 2.0
    if zero_within_batch:
        nv[cluster_batch[:, None] == cluster_batch[None, :]] = 0.0
    index = pd.Index(cluster_labels, name="cluster")
    return pd.DataFrame(nv, index=index, columns=index.copy())


def select_cluster_pairs(
    similarity: pd.DataFrame | np.ndarray,
    cluster_batches: Sequence[object] | np.ndarray,
    threshold: float,
) -> pd.DataFrame:
    """Pairs of similar clusters across batches, as BERMUDA selects them.

    For every cluster and every *other* batch, the cluster of that batch with the highest similarity
    is the cluster's best hit (all of them on an exact tie). A pair is a candidate when either member
    is the other's best hit (OR, not reciprocal) and is kept when its similarity is at least
    ``threshold``. Pairs within a batch are never selected.

    Parameters
    ----------
    similarity
        Symmetric ``clusters x clusters`` similarity (e.g. :func:`metaneighbor`'s output). A DataFrame's
        row labels name the clusters; an array's clusters are named by position.
    cluster_batches
        Batch of every cluster, in the order of ``similarity``'s rows.
    threshold
        Minimal similarity of a kept pair (BERMUDA's ``S_thr``; 0.85-0.90 in the paper).

    Returns
    -------
    DataFrame with one row per pair and columns ``cluster_1``, ``cluster_2`` (labels; ``cluster_1`` comes
    first in ``similarity``'s order) and ``similarity``, sorted by position. Empty when no pair passes.

    Raises
    ------
    ValueError
        If the matrix is not square, not symmetric or not finite, if ``cluster_batches`` has the wrong
        length or a single batch, or if ``threshold`` is not finite.
    """
    if isinstance(similarity, pd.DataFrame):
        labels = np.asarray(similarity.index)
        S = similarity.to_numpy(dtype=np.float64)
    else:
        S = np.asarray(similarity, dtype=np.float64)
        labels = np.arange(S.shape[0]) if S.ndim == 2 else np.arange(0)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"similarity must be a square clusters x clusters matrix, got shape {S.shape}.")
    if not np.isfinite(S).all():
        raise ValueError("similarity contains NaN or infinite values.")
    if not np.allclose(S, S.T, rtol=0.0, atol=1e-12):
        raise ValueError("similarity must be symmetric; symmetrise it first, e.g. (S + S.T) / 2.")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}.")
    batch_values = np.asarray(cluster_batches)
    if batch_values.ndim != 1 or batch_values.size != S.shape[0]:
        raise ValueError(
            f"cluster_batches must give one batch per cluster ({S.shape[0]}), got shape {batch_values.shape}."
        )
    batch_labels, batch = np.unique(batch_values, return_inverse=True)
    if batch_labels.size < 2:
        raise ValueError("all clusters are in one batch; cluster pairs are selected across batches.")
    hit = np.zeros(S.shape, dtype=bool)
    for b in range(batch_labels.size):
        members = np.flatnonzero(batch == b)
        others = batch != b
        block = S[np.ix_(others, members)]
        best = block.max(axis=1, keepdims=True)
        hit[np.ix_(others, members)] = block == best
    keep = (hit | hit.T) & (S >= threshold) & (batch[:, None] != batch[None, :])
    i, j = np.nonzero(np.triu(keep, k=1))
    return pd.DataFrame({"cluster_1": labels[i], "cluster_2": labels[j], "similarity": S[i, j]})
