"""Exact k-nearest neighbours (BLAS tiles + numba top-k selection) and the kNN majority vote.

The exact backend never materialises the ``n_query x n_reference`` distance matrix. It tiles both
sides: a worker thread takes a block of queries and walks over the reference in blocks; for each pair
of blocks one BLAS call writes a *score* tile that fits in the core's L2 cache, and a numba kernel
merges the tile into a bounded max-``k`` heap per query row. Scores are arranged so that larger means
nearer:

* cosine: rows are L2-normalised once and the score is the dot product;
* euclidean: the score is ``q . r - ||r||^2 / 2`` (``||q - r||^2 = ||q||^2 - 2 * score``).

Most tile entries cannot enter the heap, so the kernel tests 64 values at a time with a vectorised
count of the values above the row's current threshold (the worst kept score) and only runs the
scalar insert path for chunks with a hit. After the last reference block the ``k`` survivors' distances
are recomputed exactly from the inputs (accumulated in float64, so identical reference rows get
identical distances) and each row is sorted by (distance, index).

Parallelism: ``sct.settings.n_jobs`` (at most ``numba.get_num_threads()``) Python worker threads pull
query blocks from a queue; each runs single-threaded BLAS and the ``nogil`` numba kernels, so a tile is
produced and consumed on the same core while it is still in that core's cache. (A multi-threaded
BLAS call followed by a numba ``prange`` pass over a shared tile measured about 3x slower on 2 cores:
OpenBLAS's spinning threads and numba's threads compete for the cores, and the tile has to travel
between them.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit

from .._utils._logging import logger
from .._utils._memory import memory_step

__all__ = ["AUTO_EXACT_MAX_PAIRS", "TARGET_RECALL", "Neighbors", "knn", "knn_vote"]

_METRICS = ("cosine", "euclidean")
_BACKENDS = ("auto", "exact", "ivf", "faiss", "pynndescent")
#: ``backend="auto"`` searches exactly while ``n_query * n_reference`` is at most this many pairs
#: (100,000 x 100,000 cells), and above it with the ``"ivf"`` index (benchmarks/knn_backends.py
#: measures both; below it the exact search takes seconds).
AUTO_EXACT_MAX_PAIRS = 10_000_000_000
#: recall@k that the approximate ``"ivf"`` and ``"faiss"`` backends are calibrated to reach on a sample
#: of the queries (on the 1M-cell atlas, 0.99 instead of 0.97 cost the ivf search 62 s instead of 50 s and
#: nearly halved the kNN votes that differ from the exact search's, docs/scaling.md)
TARGET_RECALL = 0.99
#: query rows searched exactly to calibrate the approximate indexes (fewer when the query is smaller)
_CALIBRATION_ROWS = 512
#: values tested together by the vectorised rejection test (a multiple of the SIMD width; 64 lets
#: LLVM vectorise the count, smaller chunks are unrolled to scalar compares)
_CHUNK = 64
#: bytes of one score tile: one tile per worker thread, written by BLAS and read back while still in L2
_TILE_BYTES = 1 << 20
#: default number of query rows per tile (float32; float64 uses half as many)
_QUERY_BLOCK = 256


@dataclass(frozen=True, eq=False)
class Neighbors:
    """The ``k`` nearest reference rows of every query row.

    Attributes
    ----------
    indices
        ``(n_query, k)`` int64 row indices into the reference, sorted by increasing distance; equal
        distances are ordered by increasing index.
    distances
        ``(n_query, k)`` distances in the dtype of the computation (float32 when both inputs are
        float32, float64 otherwise). Cosine: ``1 - cosine similarity`` (clipped to ``[0, 2]``);
        euclidean: the L2 distance (not squared).
    backend
        The search that produced them: ``"exact"``, ``"ivf"``, ``"faiss"`` or ``"pynndescent"`` (what
        ``backend="auto"`` chose).
    """

    indices: np.ndarray
    distances: np.ndarray
    backend: str = "exact"

    @property
    def n_neighbors(self) -> int:
        """Number of neighbours per query row (``k``)."""
        return int(self.indices.shape[1])

    @property
    def n_query(self) -> int:
        """Number of query rows."""
        return int(self.indices.shape[0])


# --------------------------------------------------------------------------------------------------
# numba kernels (compiled lazily on first call and cached on disk)
# --------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _heap_replace_root(hs, hi, s, idx):  # pragma: no cover - compiled
    """Replace the worst kept entry (the root) by ``(s, idx)`` and sift it down.

    The heap keeps the worst entry at the root: lower score is worse, and for equal scores the higher
    index is worse (so ties keep the lower index).
    """
    k = hs.shape[0]
    pos = 0
    while True:
        c = 2 * pos + 1
        if c >= k:
            break
        r = c + 1
        if r < k and (hs[r] < hs[c] or (hs[r] == hs[c] and hi[r] > hi[c])):
            c = r
        if hs[c] < s or (hs[c] == s and hi[c] > idx):
            hs[pos] = hs[c]
            hi[pos] = hi[c]
            pos = c
        else:
            break
    hs[pos] = s
    hi[pos] = idx


@njit(cache=True, nogil=True)
def _scan_tile(tile, offset, use_offset, base, heap_s, heap_i):  # pragma: no cover - compiled
    """Merge a ``(m, w)`` score tile (reference columns ``base..base+w``) into the row heaps.

    With ``use_offset`` the score of column ``j`` is ``tile[i, j] - offset[j]`` (euclidean).
    References arrive in increasing index order, so the strict ``>`` test keeps the lower index on
    ties.
    """
    m, w = tile.shape
    nfull = w - w % _CHUNK
    for i in range(m):
        row = tile[i]
        hs = heap_s[i]
        hi = heap_i[i]
        thr = hs[0]
        if use_offset:
            for j0 in range(0, nfull, _CHUNK):
                n_above = 0
                for j in range(j0, j0 + _CHUNK):
                    n_above += (row[j] - offset[j]) > thr
                if n_above > 0:
                    for j in range(j0, j0 + _CHUNK):
                        v = row[j] - offset[j]
                        if v > thr:
                            _heap_replace_root(hs, hi, v, base + j)
                            thr = hs[0]
            for j in range(nfull, w):
                v = row[j] - offset[j]
                if v > thr:
                    _heap_replace_root(hs, hi, v, base + j)
                    thr = hs[0]
        else:
            for j0 in range(0, nfull, _CHUNK):
                n_above = 0
                for j in range(j0, j0 + _CHUNK):
                    n_above += row[j] > thr
                if n_above > 0:
                    for j in range(j0, j0 + _CHUNK):
                        v = row[j]
                        if v > thr:
                            _heap_replace_root(hs, hi, v, base + j)
                            thr = hs[0]
            for j in range(nfull, w):
                v = row[j]
                if v > thr:
                    _heap_replace_root(hs, hi, v, base + j)
                    thr = hs[0]


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _finalize_rows(query, reference, cand, euclidean, out_idx, out_dist):  # pragma: no cover - compiled
    """Exact distances of the candidate indices ``cand`` and a (distance, index) sort of each row.

    ``query``/``reference`` are the normalised rows for cosine and the raw rows for euclidean. The
    sums run in float64 and are cast to ``out_dist.dtype`` before sorting, so the order is the order
    of the returned values. Rows with a negative candidate (none found) are left to the caller.
    """
    m, k = cand.shape
    d = query.shape[1]
    dist = np.empty(k, dtype=out_dist.dtype)
    idx = np.empty(k, dtype=np.int64)
    for i in range(m):
        q = query[i]
        for t in range(k):
            j = cand[i, t]
            idx[t] = j
            if j < 0:
                dist[t] = np.inf
                continue
            r = reference[j]
            acc = 0.0
            if euclidean:
                for c in range(d):
                    diff = np.float64(q[c]) - np.float64(r[c])
                    acc += diff * diff
                dist[t] = np.sqrt(acc)
            else:
                for c in range(d):
                    acc += np.float64(q[c]) * np.float64(r[c])
                dist[t] = min(max(1.0 - acc, 0.0), 2.0)
        if k <= 64:
            # insertion sort on (distance, index)
            for a in range(1, k):
                dv = dist[a]
                iv = idx[a]
                b = a - 1
                while b >= 0 and (dist[b] > dv or (dist[b] == dv and idx[b] > iv)):
                    dist[b + 1] = dist[b]
                    idx[b + 1] = idx[b]
                    b -= 1
                dist[b + 1] = dv
                idx[b + 1] = iv
            out_idx[i] = idx
            out_dist[i] = dist
        else:
            by_index = np.argsort(idx, kind="mergesort")
            order = by_index[np.argsort(dist[by_index], kind="mergesort")]
            out_idx[i] = idx[order]
            out_dist[i] = dist[order]


# --------------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------------


def _as_matrix(X: Any, name: str) -> np.ndarray:
    """Return ``X`` as a 2-d numeric ndarray (no copy when possible) or raise ``ValueError``."""
    if sp.issparse(X):
        raise ValueError(
            f"{name} is a scipy sparse matrix; knn works on dense embeddings. Reduce the data first (for "
            f"example with a PCA) or densify it with {name}.toarray() if it is small."
        )
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (cells x dimensions), got {arr.ndim} dimension(s).")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{name} is empty ({arr.shape[0]} rows x {arr.shape[1]} columns); pass at least one row and "
            "one column."
        )
    return arr


def _compute_dtype(*arrays: np.ndarray) -> np.dtype:
    """float32 when every input is float32 or float16, float64 otherwise (integers included)."""
    if all(a.dtype.kind == "f" and a.dtype.itemsize <= 4 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite values; remove those rows or impute the values (for "
            "example with np.nan_to_num) before computing neighbours."
        )


def _check_k(k: Any, n_reference: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}.")
    if k > n_reference:
        raise ValueError(
            f"k={int(k)} is larger than the reference ({n_reference} cells); lower k to at most "
            f"{n_reference} or use a larger reference."
        )
    return int(k)


def _normalize_rows(X: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """L2-normalised copy of the rows (norms in float64); all-zero rows stay all-zero."""
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return np.ascontiguousarray(X * inv[:, None].astype(dtype, copy=False), dtype=dtype)


def _n_workers() -> int:
    from .._utils._settings import settings

    return max(1, min(settings.threads(), int(numba.get_num_threads())))


# --------------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------------


def _block_sizes(n_query: int, dtype: np.dtype, block_size: int | None, n_workers: int) -> tuple[int, int]:
    """Rows of a query block and of a reference block."""
    if block_size is not None:
        return block_size, 4 * block_size
    qb = _QUERY_BLOCK * 4 // dtype.itemsize
    # at least ~4 query blocks per worker so that all cores get work on small queries
    qb = max(16, min(qb, -(-n_query // (4 * n_workers))))
    rb = max(_CHUNK, (_TILE_BYTES // (dtype.itemsize * qb)) // _CHUNK * _CHUNK)
    return qb, rb


def _run_blocks(work: Callable[[int], None], starts: range, n_workers: int) -> None:
    """``work(start)`` for every block start, on up to ``n_workers`` threads (in this thread for one)."""
    if n_workers == 1 or len(starts) == 1:
        for start in starts:
            work(start)
    else:
        with ThreadPoolExecutor(max_workers=min(n_workers, len(starts))) as pool:
            for _ in pool.map(work, starts):
                pass


def _score_inputs(query: np.ndarray, reference: np.ndarray, euclidean: bool) -> tuple[np.ndarray, np.ndarray]:
    """The rows the scores are computed on: as given (cosine), or centred on the reference mean (euclidean).

    Centring leaves the distances unchanged, and the score ``q . r - ||r||^2 / 2`` no longer loses
    precision to a large common offset.
    """
    if not euclidean:
        return query, reference
    center = reference.mean(axis=0, dtype=np.float64)
    return (
        np.ascontiguousarray(query - center, dtype=query.dtype),
        np.ascontiguousarray(reference - center, dtype=query.dtype),
    )


def _score_offset(r_score: np.ndarray, euclidean: bool) -> np.ndarray:
    """Per reference row, what the euclidean score subtracts (``||r||^2 / 2``); empty for cosine."""
    if not euclidean:
        return np.zeros(0, dtype=r_score.dtype)
    return (0.5 * np.einsum("ij,ij->i", r_score, r_score, dtype=np.float64)).astype(r_score.dtype)


def _knn_exact(
    query: np.ndarray, reference: np.ndarray, k: int, euclidean: bool, block_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Tiled exact search; ``query``/``reference`` are normalised (cosine) or raw (euclidean) rows."""
    from threadpoolctl import threadpool_limits

    q_score, r_score = _score_inputs(query, reference, euclidean)
    dtype = query.dtype
    n_query = query.shape[0]
    n_ref = reference.shape[0]
    n_workers = _n_workers()
    qb, rb = _block_sizes(n_query, dtype, block_size, n_workers)
    offset = _score_offset(r_score, euclidean)
    out_idx = np.empty((n_query, k), dtype=np.int64)
    out_dist = np.empty((n_query, k), dtype=dtype)
    logger.debug(
        "knn exact: %d queries x %d references, k=%d, tiles %d x %d, %d worker(s)",
        n_query,
        n_ref,
        k,
        qb,
        rb,
        n_workers,
    )

    def work(start: int) -> None:
        stop = min(start + qb, n_query)
        m = stop - start
        q_block = q_score[start:stop]
        heap_s = np.full((m, k), -np.inf, dtype=dtype)
        heap_i = np.full((m, k), -1, dtype=np.int64)
        buffer = np.empty(qb * rb, dtype=dtype)
        for r0 in range(0, n_ref, rb):
            r1 = min(r0 + rb, n_ref)
            tile = buffer[: m * (r1 - r0)].reshape(m, r1 - r0)
            np.dot(q_block, r_score[r0:r1].T, out=tile)
            _scan_tile(tile, offset[r0:r1] if euclidean else offset, euclidean, r0, heap_s, heap_i)
        _finalize_rows(
            query[start:stop],
            reference,
            heap_i,
            euclidean,
            out_idx[start:stop],
            out_dist[start:stop],
        )

    starts = range(0, n_query, qb)
    tic = time.perf_counter()
    # one BLAS thread per worker: each worker's tile stays in its own core's cache and BLAS threads do
    # not compete with the workers for the cores
    with threadpool_limits(limits=1, user_api="blas"):
        _run_blocks(work, starts, n_workers)
    logger.debug("knn exact: done in %.2f s", time.perf_counter() - tic)
    if out_idx.size and out_idx[:, -1].min() < 0:
        raise ValueError(
            "knn could not score every reference row: the scores overflowed the floating-point range. "
            "Rescale the data (for example divide by its maximum absolute value) or pass float64 arrays."
        )
    return out_idx, out_dist


def _knn_pynndescent(
    query: np.ndarray, reference: np.ndarray, k: int, metric: str, random_state: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate candidates from pynndescent; their distances are recomputed exactly."""
    try:
        from pynndescent import NNDescent
    except ImportError as err:  # pragma: no cover - pynndescent is a dependency
        raise ImportError(
            "backend='pynndescent' needs the pynndescent package: pip install pynndescent"
        ) from err

    n_ref = reference.shape[0]
    tic = time.perf_counter()
    index = NNDescent(
        reference,
        metric=metric,
        n_neighbors=max(2, min(n_ref - 1, max(k, 30))),
        random_state=random_state,
        n_jobs=_n_workers(),
    )
    cand, _ = index.query(query, k=k)
    logger.debug("knn pynndescent: index + query in %.2f s", time.perf_counter() - tic)
    # rows where the graph search returned fewer than k distinct neighbours are answered exactly
    return _finish_candidates(
        query, reference, np.ascontiguousarray(cand, dtype=np.int64), k, metric == "euclidean"
    )


def resolve_backend(backend: str, n_query: int, n_reference: int) -> str:
    """The backend that ``backend`` means for this search (``"auto"`` resolved, see :func:`knn`)."""
    if backend != "auto":
        return backend
    return "exact" if n_query * n_reference <= AUTO_EXACT_MAX_PAIRS else "ivf"


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true neighbours (rows of distinct indices) found."""
    both = np.sort(np.hstack([found, truth]), axis=1)
    return float(np.count_nonzero(both[:, 1:] == both[:, :-1])) / max(truth.size, 1)


def _calibrate(sample_recall: Callable[[int], float], n_max: int, start: int = 1) -> tuple[int, float]:
    """The smallest number of probed lists whose sampled recall reaches :data:`TARGET_RECALL` (to an eighth).

    The number is doubled from ``start`` until ``sample_recall`` reaches the target (or ``n_max`` lists
    are probed), then bisected down to within an eighth of the smallest value that still reaches it: the
    doubling overshoots by up to 2x, and the search time is proportional to the number of lists probed.
    Returns the number and its sampled recall.
    """
    probes = max(1, min(start, n_max))
    while (recall := sample_recall(probes)) < TARGET_RECALL and probes < n_max:
        probes = min(2 * probes, n_max)
    low = probes // 2
    while recall >= TARGET_RECALL and probes - low > max(1, probes // 8):
        mid = (low + probes) // 2
        if (mid_recall := sample_recall(mid)) >= TARGET_RECALL:
            probes, recall = mid, mid_recall
        else:
            low = mid
    return probes, recall


def _calibration_sample(
    query: np.ndarray, reference: np.ndarray, k: int, euclidean: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of at most :data:`_CALIBRATION_ROWS` query rows and their exact neighbours."""
    rng = np.random.default_rng(seed)
    m = min(query.shape[0], _CALIBRATION_ROWS)
    sample = np.sort(rng.choice(query.shape[0], size=m, replace=False))
    truth, _ = _knn_exact(query[sample], reference, k, euclidean, None)
    return sample, truth


def _n_lists(n_ref: int) -> int:
    """About ``sqrt(n_reference)`` lists, with at least 39 reference rows each (k-means' minimum)."""
    return int(max(1, min(round(np.sqrt(n_ref)), n_ref // 39)))


def _knn_ivf(
    query: np.ndarray, reference: np.ndarray, k: int, euclidean: bool, random_state: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Inverted-file search whose lists are scanned by the exact backend's BLAS tiles; exact distances.

    The reference is split into about ``sqrt(n_reference)`` lists by k-means (scikit-learn, on a seeded
    sample of 64 rows per list, 10 iterations, one thread) and every row joins the list of its nearest
    centroid. The queries are split into blocks of up to 256 rows that share their nearest centroid; a
    block scans the union of its queries' ``n_probe`` nearest lists, one BLAS score tile per list merged
    into the rows' top-``k`` heaps by the exact backend's kernel, so all the queries of a block share the
    reads of the lists and their products. ``n_probe`` is calibrated as the faiss backend's ``nprobe``
    is (:func:`_calibrate`), each sampled query being searched with its full block's union, exactly as in
    the full search. On the 1M-cell atlas (50 dimensions) this took 62 s against faiss IVF-Flat's 266 s at
    the same recall (docs/scaling.md).
    """
    import warnings

    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    dtype = query.dtype
    n_query = query.shape[0]
    n_ref = reference.shape[0]
    seed = 0 if random_state is None else int(random_state)
    tic = time.perf_counter()
    q_score, r_score = _score_inputs(query, reference, euclidean)
    nlist = _n_lists(n_ref)
    rng = np.random.default_rng(seed)
    train = r_score[np.sort(rng.choice(n_ref, size=min(n_ref, 64 * nlist), replace=False))]
    # one thread: the centroids (and so the lists) do not depend on the machine's thread count
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer distinct rows than lists: some lists stay empty
        kmeans = KMeans(nlist, init="random", n_init=1, max_iter=10, random_state=seed).fit(train)
    centroids = np.ascontiguousarray(kmeans.cluster_centers_, dtype=dtype)
    if not euclidean:
        centroids = _normalize_rows(centroids, dtype)
    lists_ref = _knn_exact(r_score, centroids, 1, euclidean, None)[0][:, 0]
    # the reference sorted by list: list l is rows offsets[l]:offsets[l + 1] of r_sorted
    order_ref = np.argsort(lists_ref, kind="stable")
    r_sorted = np.ascontiguousarray(r_score[order_ref])
    offsets = np.searchsorted(lists_ref[order_ref], np.arange(nlist + 1))
    offset = _score_offset(r_sorted, euclidean)
    n_workers = _n_workers()
    qb, rb = _block_sizes(n_query, dtype, None, n_workers)
    # the query in blocks of at most qb rows that share their nearest centroid
    nearest = _knn_exact(q_score, centroids, 1, euclidean, None)[0][:, 0]
    order_q = np.argsort(nearest, kind="stable")
    bounds = np.searchsorted(nearest[order_q], np.arange(nlist + 1))
    spans = [
        (a, min(a + qb, bounds[g + 1])) for g in range(nlist) for a in range(bounds[g], bounds[g + 1], qb)
    ]
    block_starts, block_stops = (np.array(col, dtype=np.int64) for col in zip(*spans, strict=True))
    # the block of every query row
    block_of = np.empty(n_query, dtype=np.int64)
    block_of[order_q] = np.repeat(np.arange(block_starts.size), block_stops - block_starts)
    nearest_lists = np.empty((n_query, 0), dtype=np.int32)  # each query's nearest lists, grown on demand

    def own_lists(n_probe: int) -> np.ndarray:
        nonlocal nearest_lists
        if nearest_lists.shape[1] < n_probe:
            width = min(nlist, max(n_probe, 2 * nearest_lists.shape[1], 16))
            nearest_lists = _knn_exact(q_score, centroids, width, euclidean, None)[0].astype(np.int32)
        return nearest_lists[:, :n_probe]

    def search(rows: np.ndarray, n_probe: int) -> tuple[np.ndarray, float]:
        """Candidates (original reference rows, -1 where fewer than k were scanned) of the query ``rows``.

        A block scans the union of its queries' ``n_probe`` nearest lists (over all the block's queries,
        whichever of them are searched), so a sampled query is searched exactly as in the full search.
        Also returns the mean number of lists a block scanned.
        """
        probes = own_lists(n_probe)
        position = np.full(n_query, -1, dtype=np.int64)
        position[rows] = np.arange(rows.size)
        blocks = np.unique(block_of[rows])
        out = np.empty((rows.size, k), dtype=np.int64)
        scanned = np.zeros(blocks.size)

        def work(b: int) -> None:
            members = order_q[block_starts[blocks[b]] : block_stops[blocks[b]]]
            searched = members[position[members] >= 0]
            q_block = q_score[searched]
            m = searched.size
            heap_s = np.full((m, k), -np.inf, dtype=dtype)
            heap_i = np.full((m, k), -1, dtype=np.int64)
            buffer = np.empty(m * rb, dtype=dtype)
            lists = np.unique(probes[members])
            scanned[b] = lists.size
            for lst in lists:
                for r0 in range(offsets[lst], offsets[lst + 1], rb):
                    r1 = min(r0 + rb, offsets[lst + 1])
                    tile = buffer[: m * (r1 - r0)].reshape(m, r1 - r0)
                    np.dot(q_block, r_sorted[r0:r1].T, out=tile)
                    _scan_tile(tile, offset[r0:r1] if euclidean else offset, euclidean, r0, heap_s, heap_i)
            out[position[searched]] = np.where(heap_i >= 0, order_ref[np.maximum(heap_i, 0)], -1)

        with threadpool_limits(limits=1, user_api="blas"):
            _run_blocks(work, range(blocks.size), n_workers)
        return out, float(scanned.mean())

    sample, truth = _calibration_sample(query, reference, k, euclidean, seed)
    n_probe, recall = _calibrate(lambda probes: _recall(search(sample, probes)[0], truth), nlist)
    cand, scanned = search(np.arange(n_query), n_probe)
    logger.info(
        "knn ivf: %d lists, n_probe=%d (recall %.3f on %d sampled queries), %.1f lists scanned per block of "
        "queries, %.2f s",
        nlist, n_probe, recall, sample.size, scanned, time.perf_counter() - tic,
    )  # fmt: skip
    return _finish_candidates(query, reference, cand, k, euclidean)


def _knn_faiss(
    query: np.ndarray, reference: np.ndarray, k: int, metric: str, random_state: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates from a faiss inverted-file index (IVF-Flat), calibrated to a recall; exact distances.

    The reference is clustered into about ``sqrt(n_reference)`` lists by k-means (seeded by
    ``random_state``) and each query scans the rows of its ``nprobe`` nearest lists. ``nprobe`` is
    calibrated by :func:`_calibrate` against the exact search on a seeded sample of
    :data:`_CALIBRATION_ROWS` queries. The index is built and searched the same way on every run, so the
    result is deterministic for a given ``random_state``.
    """
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "backend='faiss' needs the faiss-cpu package: pip install 'sctransfer-learn[faiss]' (or pass "
            "backend='auto', which searches without it)."
        ) from err

    euclidean = metric == "euclidean"
    dim = query.shape[1]
    n_ref = reference.shape[0]
    seed = 0 if random_state is None else int(random_state)
    tic = time.perf_counter()
    q32 = np.ascontiguousarray(query, dtype=np.float32)
    r32 = np.ascontiguousarray(reference, dtype=np.float32)
    nlist = _n_lists(n_ref)
    faiss_metric = faiss.METRIC_L2 if euclidean else faiss.METRIC_INNER_PRODUCT
    # faiss runs single-threaded (OpenMP threads spinning against numba's and BLAS's threads made a
    # 3,000-row index build 8x slower on a busy 2-core machine); the queries are searched in blocks
    # on the worker threads instead, as the exact backend does (faiss releases the GIL)
    threads_before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        coarse = faiss.IndexFlatL2(dim) if euclidean else faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(coarse, dim, nlist, faiss_metric)
        # k-means on 64 rows per list, 10 iterations: the lists only need to be roughly right, since
        # the calibration probes as many as the recall needs
        index.cp.seed = seed
        index.cp.niter = 10
        index.cp.max_points_per_centroid = 64
        index.train(r32)
        index.add(r32)
        sample, truth = _calibration_sample(query, reference, k, euclidean, seed)

        def sample_recall(probes: int) -> float:
            index.nprobe = probes
            return _recall(index.search(q32[sample], k)[1], truth)

        nprobe, recall = _calibrate(sample_recall, nlist)
        index.nprobe = nprobe
        cand = _search_blocks(index, q32, k)
    finally:
        faiss.omp_set_num_threads(threads_before)
    logger.info(
        "knn faiss: IVF-Flat with %d lists, nprobe=%d (recall %.3f on %d sampled queries), %.2f s",
        nlist, nprobe, recall, sample.size, time.perf_counter() - tic,
    )  # fmt: skip
    return _finish_candidates(query, reference, np.ascontiguousarray(cand, dtype=np.int64), k, euclidean)


def _search_blocks(index: Any, query: np.ndarray, k: int) -> np.ndarray:
    """``index.search(query, k)`` indices, over blocks of rows on the worker threads."""
    n = query.shape[0]
    n_workers = _n_workers()
    block = max(256, -(-n // (8 * n_workers)))
    out = np.empty((n, k), dtype=np.int64)

    def work(start: int) -> None:
        stop = min(start + block, n)
        out[start:stop] = index.search(query[start:stop], k)[1]

    _run_blocks(work, range(0, n, block), n_workers)
    return out


def _finish_candidates(
    query: np.ndarray, reference: np.ndarray, cand: np.ndarray, k: int, euclidean: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances of approximate candidates, sorted; rows with fewer than ``k`` distinct ones redone."""
    out_idx = np.empty_like(cand)
    out_dist = np.empty(cand.shape, dtype=query.dtype)
    _finalize_rows(query, reference, cand, euclidean, out_idx, out_dist)
    bad = np.flatnonzero((cand < 0).any(axis=1) | (np.diff(np.sort(cand, axis=1), axis=1) == 0).any(axis=1))
    if bad.size:
        logger.info("knn: %d query row(s) recomputed exactly (incomplete approximate search)", bad.size)
        idx, dist = _knn_exact(query[bad], reference, k, euclidean, None)
        out_idx[bad] = idx
        out_dist[bad] = dist
    return out_idx, out_dist


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def knn(
    query: Any,
    reference: Any,
    *,
    k: int = 30,
    metric: Literal["cosine", "euclidean"] = "cosine",
    backend: Literal["auto", "exact", "ivf", "faiss", "pynndescent"] = "auto",
    block_size: int | None = None,
    random_state: int | None = 0,
) -> Neighbors:
    """The ``k`` nearest reference rows of every query row.

    Parameters
    ----------
    query
        ``(n_query, n_dims)`` dense array (float32/float64, C or Fortran order).
    reference
        ``(n_reference, n_dims)`` dense array with the same number of columns. scipy sparse matrices
        are rejected: compute the neighbours on an embedding (for example a PCA) instead.
    k
        Number of neighbours, ``1 <= k <= n_reference``.
    metric
        ``"cosine"`` (distance ``1 - cosine similarity``; a row of zeros has similarity 0 to every row,
        so distance 1) or ``"euclidean"`` (L2 distance).
    backend
        ``"auto"`` (default): ``"exact"`` while ``n_query * n_reference`` is at most
        :data:`AUTO_EXACT_MAX_PAIRS` (10 billion pairs, for example 100,000 x 100,000 cells), above it
        ``"ivf"``; :attr:`Neighbors.backend` says which ran.
        ``"exact"``: brute force, tiled so that memory stays O(tile) rather than
        O(n_query x n_reference); BLAS scores plus a numba top-``k`` selection, parallel over query
        blocks on ``numba.get_num_threads()`` threads.
        ``"ivf"``: an inverted-file search. The reference is split into about ``sqrt(n_reference)``
        k-means lists (scikit-learn, seeded by ``random_state``); queries that share their nearest
        centroid are searched in blocks of up to 256, and a block scans the union of its queries'
        ``n_probe`` nearest lists with the exact backend's tiles. ``n_probe`` is calibrated so that the
        recall@k on a sample of the queries, against the exact search, reaches :data:`TARGET_RECALL`.
        ``"faiss"``: faiss's inverted-file index (``IndexIVFFlat``, k-means lists seeded by
        ``random_state``), where each query probes the lists nearest to itself, calibrated in the same
        way. Needs the optional ``faiss-cpu`` package (``pip install 'sctransfer-learn[faiss]'``); it
        was slower than ``"ivf"`` at the same recall (docs/scaling.md).
        ``"pynndescent"``: approximate nearest-neighbour descent (:class:`pynndescent.NNDescent` built on
        the reference, then queried); it compiles its search on first use, and was slower than
        ``"exact"`` and below the recall target on the simulated atlas (docs/scaling.md).
        The approximate backends return exact distances for the neighbours they find.
    block_size
        Tile size for the exact backend: query tiles of ``block_size`` rows against reference tiles of
        ``4 * block_size`` rows. ``None`` (default) picks 256 x 1024 (float32) so that one score tile
        per thread fits in a core's L2 cache.
    random_state
        Seed of the approximate indexes (the exact backend is deterministic).

    Returns
    -------
    Neighbors
        ``indices`` (int64) and ``distances``, both ``(n_query, k)``, sorted by increasing distance and
        then by index, and the ``backend`` that ran. The computation runs in float32 when both inputs
        are float32 (or float16) and in float64 otherwise (integer inputs included); ``distances`` has
        that dtype.

    Raises
    ------
    ValueError
        For sparse, non 2-d, empty, non-numeric or non-finite inputs, a column mismatch, ``k`` outside
        ``[1, n_reference]``, or an unknown ``metric``/``backend``.

    Notes
    -----
    The exact backend holds one score tile per thread (1 MiB by default) plus the ``block_size x k``
    heaps, never the full distance matrix. Its worker threads each call single-threaded BLAS, so BLAS is
    limited to one thread (with :mod:`threadpoolctl`) for the duration of the call. Neighbours are
    selected on scores in the computation dtype and the distances of the selected rows are then
    recomputed exactly; with float32 inputs, two reference rows whose distances differ by less than
    float32 rounding may therefore swap at the ``k``-th position. Euclidean scores are computed on
    data centred on the reference mean, so a large common offset costs no precision.

    Examples
    --------
    >>> import numpy as np
    >>> import sctransfer as sct
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(1000, 30)).astype(np.float32)
    >>> nbrs = sct.kernels.knn(ref[:5], ref, k=10)
    >>> nbrs.indices[:, 0]
    array([0, 1, 2, 3, 4])
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {list(_METRICS)}, got {metric!r}.")
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {list(_BACKENDS)}, got {backend!r}.")
    if block_size is not None and (
        isinstance(block_size, bool) or not isinstance(block_size, int | np.integer) or block_size < 1
    ):
        raise ValueError(f"block_size must be None or an integer >= 1, got {block_size!r}.")
    q = _as_matrix(query, "query")
    r = _as_matrix(reference, "reference")
    if q.shape[1] != r.shape[1]:
        raise ValueError(
            f"query has {q.shape[1]} columns but reference has {r.shape[1]}; both must live in the same "
            "space (for example the same PCA embedding)."
        )
    k = _check_k(k, r.shape[0])
    dtype = _compute_dtype(q, r)
    q = np.ascontiguousarray(q, dtype=dtype)
    r = np.ascontiguousarray(r, dtype=dtype)
    _check_finite(q, "query")
    _check_finite(r, "reference")
    euclidean = metric == "euclidean"
    if not euclidean:
        q, r = _normalize_rows(q, dtype), _normalize_rows(r, dtype)
    chosen = resolve_backend(backend, q.shape[0], r.shape[0])
    if backend == "auto" and chosen != "exact":
        logger.info(
            "knn: %d x %d rows exceed the exact search's limit of %.0e pairs: using the ivf index",
            q.shape[0], r.shape[0], AUTO_EXACT_MAX_PAIRS,
        )  # fmt: skip
    with memory_step(
        f"the {chosen} kNN search of {q.shape[0]:,} query x {r.shape[0]:,} reference rows (k={k})",
        _memory_need(chosen, q.shape[0], r.shape[0], q.shape[1], k, dtype),
        "search the query in parts (the results of the parts are independent), lower k"
        + (", or use backend='exact', which builds no index" if chosen != "exact" else ""),
    ):
        if chosen == "exact":
            idx, dist = _knn_exact(q, r, k, euclidean, None if block_size is None else int(block_size))
        elif chosen == "ivf":
            idx, dist = _knn_ivf(q, r, k, euclidean, random_state)
        elif chosen == "faiss":
            idx, dist = _knn_faiss(q, r, k, metric, random_state)
        else:
            idx, dist = _knn_pynndescent(q, r, k, metric, random_state)
    return Neighbors(indices=idx, distances=dist, backend=chosen)


def _memory_need(backend: str, n_query: int, n_ref: int, dim: int, k: int, dtype: np.dtype) -> float:
    """Rough working memory (bytes) of a search beyond its inputs: results, tiles and the index."""
    need = n_query * k * (8 + dtype.itemsize) + 4 * _TILE_BYTES * _n_workers()
    if backend == "faiss":  # float32 copies of both sides, the index and the candidates
        need += 4.0 * dim * (n_query + 2 * n_ref) + 8.0 * (n_ref + n_query * k)
    elif backend == "ivf":  # the reference sorted by list (and centred copies), the lists nearest each query
        # (at least 16, int32), the block bookkeeping and the candidates
        need += (
            dtype.itemsize * dim * (n_query + 2 * n_ref) + 8.0 * n_ref + 88.0 * n_query + 8.0 * n_query * k
        )
    elif backend == "pynndescent":  # the neighbour graph (indices, distances, flags) and its search graph
        need += 3 * 12.0 * n_ref * max(k, 30) + 12.0 * n_query * k
    return float(need)


def knn_vote(
    indices: Any,
    reference_codes: Any,
    n_classes: int,
    *,
    weights: Any | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Majority vote of the neighbours' class codes.

    Parameters
    ----------
    indices
        ``(n_query, k)`` integer indices into the reference (for example :attr:`Neighbors.indices`).
    reference_codes
        ``(n_reference,)`` integer class code of every reference row, in ``0..n_classes-1``; a negative
        code marks an unlabelled reference row, which does not vote.
    n_classes
        Number of classes.
    weights
        Optional ``(n_query, k)`` non-negative finite vote weights (for example ``1 / (distance + 1e-6)``);
        ``None`` gives every neighbour one vote.

    Returns
    -------
    predicted
        ``(n_query,)`` int64 winning class code; ties go to the smallest code (as scikit-learn's
        ``KNeighborsClassifier``). ``-1`` for a query without labelled (or positively weighted)
        neighbours.
    fraction
        ``(n_query,)`` float64 share of the votes won by ``predicted`` (0 where ``predicted`` is -1).
    votes
        ``(n_query, n_classes)`` float64 vote shares; each row sums to 1 over the labelled neighbours
        (all zeros where ``predicted`` is -1).

    Raises
    ------
    ValueError
        For shapes that do not match, indices outside the reference, codes ``>= n_classes`` or
        negative/non-finite weights.

    Examples
    --------
    >>> import numpy as np
    >>> import sctransfer as sct
    >>> pred, frac, votes = sct.kernels.knn_vote(np.array([[0, 1, 2]]), np.array([1, 1, 0]), 2)
    >>> pred, frac
    (array([1]), array([0.66666667]))
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 1:
        raise ValueError(f"n_classes must be an integer >= 1, got {n_classes!r}.")
    n_classes = int(n_classes)
    idx = np.asarray(indices)
    codes = np.asarray(reference_codes)
    if idx.ndim != 2 or idx.dtype.kind not in "iu":
        raise ValueError(f"indices must be a 2-d integer array (n_query x k), got {idx.ndim}-d {idx.dtype}.")
    if codes.ndim != 1 or codes.dtype.kind not in "iu":
        raise ValueError(
            f"reference_codes must be a 1-d integer array of class codes, got {codes.ndim}-d {codes.dtype}; "
            "encode labels first (for example with pandas.factorize)."
        )
    n_query = idx.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= codes.shape[0]):
        raise ValueError(
            f"indices must lie in [0, {codes.shape[0]}) (the length of reference_codes); got values in "
            f"[{idx.min()}, {idx.max()}]."
        )
    if codes.size and codes.max() >= n_classes:
        raise ValueError(
            f"reference_codes holds code {codes.max()} but n_classes={n_classes}; codes must be in "
            "0..n_classes-1 (negative for unlabelled)."
        )
    neighbour_codes = codes[idx].astype(np.int64, copy=False)
    labelled = neighbour_codes >= 0
    if weights is None:
        w = labelled.astype(np.float64)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != idx.shape:
            raise ValueError(f"weights must have the shape of indices {idx.shape}, got {w.shape}.")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError(
                "weights must be finite and non-negative; for inverse-distance weights use "
                "1 / (distances + eps) so that zero distances stay finite."
            )
        w = np.where(labelled, w, 0.0)
    flat = (
        np.arange(n_query, dtype=np.int64)[:, None] * n_classes + np.where(labelled, neighbour_codes, 0)
    ).ravel()
    votes = np.bincount(flat, weights=w.ravel(), minlength=n_query * n_classes).reshape(n_query, n_classes)
    total = votes.sum(axis=1)
    has_votes = total > 0
    votes = np.divide(votes, total[:, None], out=np.zeros_like(votes), where=has_votes[:, None])
    predicted = np.argmax(votes, axis=1).astype(np.int64)
    fraction = votes[np.arange(n_query), predicted] if n_query else np.zeros(0)
    predicted[~has_votes] = -1
    fraction = np.where(has_votes, fraction, 0.0)
    return predicted, fraction, votes


def shared_neighbour_links(
    indices: np.ndarray, n_neighbors: int, prune: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Links of a shared-nearest-neighbour graph, as Seurat weighs them.

    Two cells are linked with the Jaccard overlap ``s / (2 k - s)`` of their neighbourhoods, where ``s``
    is the number of cells in both (``indices`` rows, each cell itself included) and ``k`` is
    ``n_neighbors``; links under ``prune`` are dropped.

    Parameters
    ----------
    indices
        ``n_cells x k`` neighbour indices (distinct within a row).
    n_neighbors
        ``k`` of the Jaccard overlap.
    prune
        Least overlap of a kept link.

    Returns
    -------
    ``(first, second, weight)``: every kept link once, ``first < second``, ordered by ``first`` then
    ``second``. The same as the upper triangle of ``A @ A.T`` (``A`` the neighbourhood indicators)
    thresholded, without its ``n x k^2`` entries in memory.
    """
    idx = np.ascontiguousarray(indices, dtype=np.int64)
    if idx.ndim != 2 or (idx.size and (idx.min() < 0 or idx.max() >= idx.shape[0])):
        raise ValueError(
            "indices must be an n_cells x k array of neighbours among the same n_cells cells (0..n_cells-1)."
        )
    if n_neighbors < idx.shape[1]:
        raise ValueError(
            f"n_neighbors ({n_neighbors}) must be at least the columns of indices ({idx.shape[1]})."
        )
    return _snn_links(idx, int(n_neighbors), float(prune))


@njit(cache=True, nogil=True)
def _snn_links(
    idx: np.ndarray, k: int, prune: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    n, width = idx.shape
    # the cells that have each cell among their neighbours (A's columns)
    start = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        for a in range(width):
            start[idx[i, a] + 1] += 1
    for j in range(n):
        start[j + 1] += start[j]
    members = np.empty(start[n], dtype=np.int64)
    fill = start[:-1].copy()
    for i in range(n):
        for a in range(width):
            j = idx[i, a]
            members[fill[j]] = i
            fill[j] += 1
    two_k = 2.0 * k
    # the overlap s / (2k - s) grows with the shared count s (at most width <= k): the least count kept
    least = width + 1
    for count in range(width, 0, -1):
        if count / (two_k - count) >= prune:
            least = count
    shared = np.zeros(n, dtype=np.int64)
    touched = np.empty(n, dtype=np.int64)
    kept = np.empty(n, dtype=np.int64)
    overlap = np.zeros(n, dtype=np.float64)  # of the kept partners of the current cell
    capacity = max(16, n * width)
    first = np.empty(capacity, dtype=np.int64)
    second = np.empty(capacity, dtype=np.int64)
    weight = np.empty(capacity, dtype=np.float64)
    n_links = 0
    for i in range(n):
        n_touched = 0
        for a in range(width):
            j = idx[i, a]
            for p in range(start[j], start[j + 1]):
                m = members[p]
                if m > i:
                    if shared[m] == 0:
                        touched[n_touched] = m
                        n_touched += 1
                    shared[m] += 1
        # the kept partners first (few of the touched cells), then sorted in place
        n_kept = 0
        for t in range(n_touched):
            m = touched[t]
            count = shared[m]
            shared[m] = 0
            if count >= least:
                overlap[m] = count / (two_k - count)
                kept[n_kept] = m
                n_kept += 1
        kept[:n_kept].sort()
        if n_links + n_kept > capacity:
            capacity = max(2 * capacity, n_links + n_kept)
            first = _grown(first[:n_links], capacity)
            second = _grown(second[:n_links], capacity)
            weight = _grown(weight[:n_links], capacity)
        for t in range(n_kept):
            m = kept[t]
            first[n_links] = i
            second[n_links] = m
            weight[n_links] = overlap[m]
            n_links += 1
    return first[:n_links].copy(), second[:n_links].copy(), weight[:n_links].copy()


@njit(cache=True, nogil=True)
def _grown(values: np.ndarray, capacity: int) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(capacity, dtype=values.dtype)
    out[: values.size] = values
    return out
