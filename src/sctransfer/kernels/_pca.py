"""Per-dataset standardisation and joint PCA without densifying sparse inputs.

Each dataset ``d`` is log-normalised, then standardised with its own per-feature mean and standard
deviation: ``Z_d = (X_d - mean_d) / std_d``. The joint PCA is the truncated SVD of the stacked ``Z``,
computed by a seeded randomised range finder that only ever multiplies the sparse ``X_d`` by thin dense
matrices, so memory stays O((n_cells + n_features) x n_comps). Up to :data:`COVARIANCE_MAX_FEATURES`
features it is exact instead: the eigenvectors of the ``n_features x n_features`` covariance, summed over
row chunks, which is one pass over the data where the range finder makes sixteen.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, ParamSpec, Protocol, TypeVar, runtime_checkable

import numpy as np
import scipy.sparse as sp

from .._utils._memory import memory_step
from .._utils._validation import (
    ArrayLike,
    check_choice,
    check_values,
    float_dtype,
    is_in_memory,
    read_chunk,
    to_log_scale,
)

P = ParamSpec("P")
R = TypeVar("R")

#: rows of one chunk of a product: fixed, so the chunks' sums (and the results) do not depend on the threads
_ROWS = 32_768
#: stored values per slice of the per-feature sums
_VALUES = 1 << 22
#: features up to which :func:`joint_pca` (``solver="auto"``) and BERMUDA's per-batch clustering take the
#: exact PCA from the covariance matrix: one pass over the data (``n_cells x n_features**2`` work), where the
#: randomised SVD makes sixteen thin products; at 216 features it took a fifth of the time
COVARIANCE_MAX_FEATURES = 512
#: how close to the identity ``M.T @ M`` of a float32 basis gets before Cholesky QR stops (float32 rounding
#: of the entries leaves about 1e-7)
_FLOAT32_ORTHONORMAL = 1e-5
#: rows densified at a time for the covariance (16 MB of float64 at 512 features)
_COVARIANCE_ROWS = 4_096


def row_totals(X: ArrayLike) -> np.ndarray:
    """Every row's sum of ``X`` as :func:`log_normalize` takes it (float64), without copying ``X``."""
    if sp.issparse(X):
        # integer counts sum to the same float64 totals as their float32 copy
        return np.asarray(sp.csr_matrix(X).sum(axis=1, dtype=np.float64)).ravel()
    dtype = float_dtype(X)
    out = np.empty(X.shape[0])
    for start in range(0, X.shape[0], _ROWS):  # row chunks in the normalised dtype: no copy of the whole
        out[start : start + _ROWS] = np.asarray(X[start : start + _ROWS], dtype=dtype).sum(
            axis=1, dtype=np.float64
        )
    return out


def log_normalize(
    X: ArrayLike, *, target_sum: float = 1e4, copy: bool = True, totals: np.ndarray | None = None
) -> sp.csr_matrix | np.ndarray:
    """Scale every cell to ``target_sum`` total counts and apply ``log1p``.

    A new matrix in float32 (float64 only for float64 input), or, with ``copy=False`` and a float CSR
    matrix or C-contiguous float array, ``X`` itself changed in place (for a matrix that was just read from
    a backed file, so it is not held twice). Cells with no counts stay all-zero. ``totals`` gives the row
    totals to scale by (:func:`row_totals` of the full rows when ``X`` holds some of their columns); the
    result is then that of the full rows on those columns, to the bit.
    """
    dtype = float_dtype(X)
    if sp.issparse(X):
        inplace = not copy and isinstance(X, sp.csr_matrix) and X.dtype == dtype
        X = X if inplace else sp.csr_matrix(X, dtype=dtype, copy=True)
        totals = row_totals(X) if totals is None else totals
        scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
        # by row chunks: one per-value factor array for the whole matrix would be a float64 copy of it
        for start in range(0, X.shape[0], _ROWS):
            stop = min(start + _ROWS, X.shape[0])
            lo, hi = X.indptr[start], X.indptr[stop]
            factors = np.repeat(scale[start:stop], np.diff(X.indptr[start : stop + 1]))
            X.data[lo:hi] *= factors.astype(dtype, copy=False)
        np.log1p(X.data, out=X.data)
        return X
    inplace = not copy and isinstance(X, np.ndarray) and X.dtype == dtype and X.flags.c_contiguous
    X = X if inplace else np.array(X, dtype=dtype, copy=True)
    totals = row_totals(X) if totals is None else totals
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    X *= scale.astype(dtype, copy=False)[:, None]
    np.log1p(X, out=X)
    return X


@runtime_checkable
class RowSource(Protocol):
    """Rows made on demand (read from a file, normalised) instead of a matrix held in memory.

    :func:`joint_pca` accepts such a source as a block: every pass over the data asks it for the same row
    chunks again, so only one chunk per thread is in memory at a time.
    """

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def rows(self, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop`` as a CSR matrix or a NumPy array."""
        ...


class LogNormalisedRows:
    """Log-normalised rows of a matrix, made when :func:`joint_pca` asks for them (a :class:`RowSource`).

    Only a chunk of rows is normalised at a time, so neither a log-normalised copy of the whole matrix nor,
    for a backed or dask matrix, the matrix itself is ever held: each pass of the PCA reads the rows again.

    Parameters
    ----------
    X
        The values: a NumPy array or SciPy sparse matrix, or a backed or dask matrix.
    rows
        Positions of the rows to use, in this order (``None``: every row); in-memory ``X`` only.
    columns
        Positions of the columns to keep, in this order (``None``: every column).
    scale
        What the values are (``"counts"``, ``"normalized"`` or ``"log"``, as
        :func:`~sctransfer._utils._validation.infer_scale` says): counts are scaled to 10,000 per cell and
        ``log1p``-transformed, normalised values ``log1p``-transformed, log values kept.
    check
        Check every chunk's values (NaN, infinite or negative values raise a ``ValueError``) the first
        time it is read (the PCA's later passes read the same chunks again).
    name
        The values' name in error messages.
    """

    def __init__(
        self,
        X: object,
        *,
        rows: np.ndarray | None = None,
        columns: np.ndarray | None = None,
        scale: str = "counts",
        check: bool = False,
        name: str = "the matrix",
    ) -> None:
        check_choice(scale, "scale", ("counts", "normalized", "log"))
        self.X = X
        self._in_memory = is_in_memory(X)
        if rows is not None and not self._in_memory:
            raise ValueError("rows= needs an in-memory matrix (a NumPy array or a SciPy sparse matrix).")
        self._row_positions = None if rows is None else np.asarray(rows, dtype=np.int64)
        cols = None if columns is None else np.asarray(columns, dtype=np.int64)
        if cols is not None and np.array_equal(cols, np.arange(X.shape[1])):  # type: ignore[attr-defined]
            cols = None
        self._columns = cols
        n_rows = X.shape[0] if rows is None else len(self._row_positions)  # type: ignore[attr-defined, arg-type]
        n_cols = X.shape[1] if cols is None else len(cols)  # type: ignore[attr-defined]
        self._shape = (int(n_rows), int(n_cols))
        self._dtype = float_dtype(X)  # type: ignore[arg-type]
        self.scale, self.check, self.name = scale, check, name
        self._lock = threading.Lock()  # one read of a backed file at a time
        self._checked: set[tuple[int, int]] = set()  # the chunks whose values were checked

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def rows(self, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop``, log-normalised (a new matrix: ``X`` is never changed)."""
        fresh = True  # whether ``block`` is a copy that may be normalised in place
        if self._row_positions is not None:
            block = self.X[self._row_positions[start:stop]]  # type: ignore[index]
        elif self._in_memory:
            block, fresh = _row_slice(self.X, start, stop), False  # type: ignore[arg-type]
        else:
            with self._lock:
                block = read_chunk(self.X, start, stop)
        if sp.issparse(block):
            block = sp.csr_matrix(block)
        if self._columns is not None:
            block = block[:, self._columns] if sp.issparse(block) else np.take(block, self._columns, axis=1)
            fresh = True
        if self.check and (start, stop) not in self._checked:
            check_values(block, self.name)
            self._checked.add((start, stop))
        block = to_log_scale(block, self.scale, self.name, copy=not fresh)
        return block.astype(self._dtype, copy=False)


@dataclass
class _Block:
    X: sp.csr_matrix | np.ndarray | RowSource
    mean: np.ndarray
    inv_std: np.ndarray


def column_moments(X: sp.csr_matrix | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and mean of squares of ``X`` (CSR or dense), accumulated in float64.

    The sums run over slices of the stored values (or of the rows), so no whole-matrix temporary is made:
    ``X.power(2)``, or a float64 cast, would copy the whole matrix.
    """
    n = max(X.shape[0], 1)
    total, sq = np.zeros(X.shape[1]), np.zeros(X.shape[1])
    if sp.issparse(X):
        lo, hi = int(X.indptr[0]), int(X.indptr[-1])
        for start in range(lo, hi, _VALUES):
            values = X.data[start : min(start + _VALUES, hi)].astype(np.float64)
            columns = X.indices[start : min(start + _VALUES, hi)]
            total += np.bincount(columns, weights=values, minlength=X.shape[1])
            sq += np.bincount(columns, weights=values * values, minlength=X.shape[1])
    else:
        step = max(1, _VALUES // max(X.shape[1], 1))
        for start in range(0, X.shape[0], step):
            rows = np.asarray(X[start : start + step], dtype=np.float64)
            total += rows.sum(axis=0)
            sq += np.einsum("ij,ij->j", rows, rows)
    return total / n, sq / n


def _source_moments(source: RowSource) -> tuple[np.ndarray, np.ndarray]:
    """:func:`column_moments` of a row source: its row chunks' sums, added in a fixed order."""
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def work(start: int, stop: int) -> None:
        rows = source.rows(start, stop)
        mean, sq = column_moments(rows)
        parts[start] = (mean * rows.shape[0], sq * rows.shape[0])

    _chunked(source.shape[0], work)
    total, squares = np.zeros(source.shape[1]), np.zeros(source.shape[1])
    for start in sorted(parts):
        total += parts[start][0]
        squares += parts[start][1]
    n = max(source.shape[0], 1)
    return total / n, squares / n


def _standardised_block(X: sp.csr_matrix | np.ndarray | RowSource) -> _Block:
    n = X.shape[0]
    mean, sq = _source_moments(X) if isinstance(X, RowSource) else column_moments(X)
    var = np.maximum(sq - mean**2, 0.0) * (n / max(n - 1, 1))
    std = np.sqrt(var)
    inv_std = np.divide(1.0, std, out=np.zeros_like(std), where=std > 1e-12)
    return _Block(X, mean, inv_std)


def _row_slice(
    X: sp.csr_matrix | np.ndarray | RowSource, start: int, stop: int
) -> sp.csr_matrix | np.ndarray:
    """Rows ``start:stop`` of ``X`` as a view (a CSR slice shares the parent's data and indices).

    A :class:`RowSource` makes them.
    """
    if isinstance(X, RowSource):
        return X.rows(start, stop)
    if not sp.issparse(X):
        return X[start:stop]
    lo, hi = X.indptr[start], X.indptr[stop]
    # the arrays are set on an empty matrix: SciPy's (data, indices, indptr) constructor copied them
    view = sp.csr_matrix((stop - start, X.shape[1]), dtype=X.dtype)
    view.data, view.indices = X.data[lo:hi], X.indices[lo:hi]
    view.indptr = (X.indptr[start : stop + 1] - lo).astype(X.indices.dtype, copy=False)
    return view


def row_subset(X: sp.csr_matrix | np.ndarray, rows: np.ndarray) -> sp.csr_matrix | np.ndarray:
    """``X[rows]``, as a view when ``rows`` is a contiguous ascending range (no copy of those rows)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and np.array_equal(rows, np.arange(rows[0], rows[0] + rows.size)):
        return _row_slice(X, int(rows[0]), int(rows[0]) + rows.size)
    return X[rows]


def _chunked(n_rows: int, work: Callable[[int, int], None]) -> None:
    """``work(start, stop)`` for every chunk of :data:`_ROWS` rows, on ``sct.settings.n_jobs`` threads.

    scipy's sparse products and single-threaded BLAS release the GIL, so the chunks run in parallel without
    a second thread pool inside them (the caller holds BLAS to one thread).
    """
    from ._knn import _n_workers, _run_blocks

    _run_blocks(lambda start: work(start, min(start + _ROWS, n_rows)), range(0, n_rows, _ROWS), _n_workers())


def _matmul(block: _Block, M: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``Z @ M`` for a standardised block, written into ``out`` (float32 or float64) when given.

    The thin factor is cast to the block's dtype, so a float32 block is never upcast (which would make a
    float64 copy of the whole block for every product); without ``out`` the result is float64.
    """
    scaled = block.inv_std[:, None] * M
    shift = block.mean @ scaled
    factor = scaled.astype(block.X.dtype, copy=False)
    n = block.X.shape[0]
    if out is None:
        out = np.empty((n, M.shape[1]))

    def work(start: int, stop: int) -> None:
        out[start:stop] = _row_slice(block.X, start, stop) @ factor
        out[start:stop] -= shift

    _chunked(n, work)
    return out


def _rmatmul(block: _Block, Y: np.ndarray) -> np.ndarray:
    """``Z.T @ Y`` for a standardised block, summed over row chunks in a fixed order.

    The product runs in the block's dtype, as in :func:`_matmul`.
    """
    n = block.X.shape[0]
    parts: dict[int, np.ndarray] = {}

    def work(start: int, stop: int) -> None:
        chunk = Y[start:stop].astype(block.X.dtype, copy=False)
        parts[start] = np.asarray(_row_slice(block.X, start, stop).T @ chunk, dtype=np.float64)

    _chunked(n, work)
    XtY = np.zeros((block.X.shape[1], Y.shape[1]))
    for start in sorted(parts):
        XtY += parts[start]
    return block.inv_std[:, None] * (XtY - np.outer(block.mean, Y.sum(axis=0)))


def _gram(M: np.ndarray) -> np.ndarray:
    """``M.T @ M`` of a tall, thin ``M`` in float64, summed over row chunks in a fixed order."""
    parts: dict[int, np.ndarray] = {}

    def work(start: int, stop: int) -> None:
        chunk = M[start:stop].astype(np.float64, copy=False)
        parts[start] = chunk.T @ chunk

    _chunked(M.shape[0], work)
    gram = np.zeros((M.shape[1], M.shape[1]))
    for start in sorted(parts):
        gram += parts[start]
    return gram


def _covariance(block: _Block) -> np.ndarray:
    """``Z.T @ Z`` of a standardised block (float64), its row chunks' products summed in a fixed order."""
    parts: dict[int, np.ndarray] = {}

    def work(start: int, stop: int) -> None:
        product = np.zeros((block.X.shape[1], block.X.shape[1]))
        for lo in range(start, stop, _COVARIANCE_ROWS):
            # dense and float64: BLAS's product of a dense chunk took a fifteenth of the time of SciPy's sparse
            # one on 77 % filled rows, and the centring below subtracts n * mean**2 from the sums of squares
            rows = _row_slice(block.X, lo, min(lo + _COVARIANCE_ROWS, stop))
            rows = np.asarray(rows.toarray() if sp.issparse(rows) else rows, dtype=np.float64)
            product += rows.T @ rows
        parts[start] = product

    _chunked(block.X.shape[0], work)
    XtX = np.zeros((block.X.shape[1], block.X.shape[1]))
    for start in sorted(parts):
        XtX += parts[start]
    XtX -= block.X.shape[0] * np.outer(block.mean, block.mean)  # centred: X.T X - n mean mean.T
    return block.inv_std[:, None] * XtX * block.inv_std[None, :]


def leading_eigenvectors(gram: np.ndarray, n_comps: int) -> tuple[np.ndarray, np.ndarray]:
    """Singular values and (signed) right singular vectors of a matrix ``Z`` given ``gram = Z.T @ Z``.

    Returns ``s`` (descending) and ``Vt`` (``n_comps x n_features``), each row signed as
    :func:`signed_components` says.
    """
    w, V = np.linalg.eigh(gram)
    order = np.argsort(w)[::-1][:n_comps]
    Vt = np.ascontiguousarray(V[:, order].T)
    return np.sqrt(np.maximum(w[order], 0.0)), signed_components(Vt)


def signed_components(Vt: np.ndarray) -> np.ndarray:
    """Flip the rows of ``Vt`` in place so that each one's largest-magnitude loading is positive."""
    rows = np.arange(Vt.shape[0])
    signs = np.sign(Vt[rows, np.abs(Vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    Vt *= signs[:, None]
    return Vt


def _orthonormal(M: np.ndarray) -> np.ndarray:
    """Orthonormalise the columns of a tall, thin float64 or float32 ``M`` in place and return it.

    Cholesky QR, repeated until ``M.T @ M`` is the identity to 1e-10 (1e-5 for float32; once or twice for
    a range-finder basis): ``M <- M @ inv(chol(M.T @ M)).T``. The Gram matrix, its factor and every row
    chunk's product are float64 (a float32 ``M`` is rounded once per pass). Its thin matrix products are
    BLAS 3 and run by row chunks on ``sct.settings.n_jobs`` threads, where Householder QR ran at a fraction
    of the speed on one core and needed a second ``n x width`` matrix. Columns too close to dependent for
    a Cholesky factor (a diagonal ratio below 1e-6) take Householder QR instead.
    """
    import scipy.linalg

    tolerance = 1e-10 if M.dtype == np.float64 else _FLOAT32_ORTHONORMAL
    for _ in range(3):
        gram = _gram(M)
        if np.abs(gram - np.eye(gram.shape[0])).max() < tolerance:
            return M
        try:
            L = np.linalg.cholesky(gram)
        except np.linalg.LinAlgError:
            break
        diag = np.diag(L)
        if diag.min() <= 1e-6 * diag.max():
            break
        T = scipy.linalg.solve_triangular(L, np.eye(L.shape[0]), lower=True).T  # inv(L).T

        def work(start: int, stop: int, T: np.ndarray = T) -> None:
            M[start:stop] = M[start:stop].astype(np.float64, copy=False) @ T

        _chunked(M.shape[0], work)
    M[:] = np.linalg.qr(M)[0]
    return M


def _one_blas_thread(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` with BLAS limited to one thread.

    The randomised SVDs make thin, memory-bound products and QRs: spinning BLAS pools made one QR of
    20,000 x 60 take 4.2 s instead of 0.23 s on a busy 2-core machine.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper


@dataclass
class JointPCA:
    """Result of :func:`joint_pca`: one score matrix per dataset plus the shared loadings.

    ``means[d]`` and ``inv_stds[d]`` are the per-feature mean and inverse standard deviation that
    standardised dataset ``d`` (0 for constant features): new cells of that dataset project as
    ``((x - means[d]) * inv_stds[d]) @ components.T``.
    """

    embeddings: list[np.ndarray]
    components: np.ndarray
    singular_values: np.ndarray
    explained_variance_ratio: np.ndarray
    means: list[np.ndarray]
    inv_stds: list[np.ndarray]


@_one_blas_thread
def joint_pca(
    blocks: list[ArrayLike | RowSource],
    *,
    n_comps: int = 50,
    n_iter: int = 7,
    random_state: int = 0,
    solver: Literal["auto", "randomized", "covariance"] = "auto",
) -> JointPCA:
    """Joint PCA of several datasets, each standardised per feature on its own.

    Parameters
    ----------
    blocks
        One ``cells x features`` matrix per dataset (dense or sparse, same features in the same order),
        already log-normalised, or a :class:`RowSource` that makes its log-normalised rows on demand
        (:class:`LogNormalisedRows`): the data are then read once per pass and never held whole.
    n_comps
        Number of principal components (lowered to what the data allow).
    n_iter
        Power iterations of the randomised range finder (7 is accurate to well below the kNN's noise).
    random_state
        Seed of the random test matrix; the same seed gives the same embedding.
    solver
        ``"randomized"``: the range finder; ``"covariance"``: the exact PCA from the ``n_features x
        n_features`` covariance matrix; ``"auto"``: the covariance up to :data:`COVARIANCE_MAX_FEATURES`
        features, the range finder above.

    Returns
    -------
    :class:`JointPCA` with ``embeddings[d]`` of shape ``(n_cells_d, n_comps)``, float32 (the loadings and
    singular values are float64).
    """
    check_choice(solver, "solver", ("auto", "randomized", "covariance"))
    shapes = [tuple(b.shape) if isinstance(b, RowSource) else np.shape(b) for b in blocks]
    n_features = shapes[0][1]
    if solver == "auto":
        solver = "covariance" if n_features <= COVARIANCE_MAX_FEATURES else "randomized"
    n_total = sum(shape[0] for shape in shapes)
    n_comps = int(max(1, min(n_comps, n_features - 1 if n_features > 1 else 1, n_total - 1)))
    width = min(n_comps + 10, n_features)
    # float32 thin factors: the range (one buffer) and the embeddings; plus the float64 per-feature terms
    # and the row chunks' partial sums
    n_chunks = -(-n_total // _ROWS) + len(blocks)
    if solver == "covariance":
        # the embeddings, the row chunks' n_features x n_features products and the sums and eigenvectors,
        # and a dense float64 copy of some rows per thread
        from ._knn import _n_workers

        rows = 8.0 * min(_COVARIANCE_ROWS, n_total) * n_features * _n_workers()
        need = (
            rows
            + 4.0 * n_total * n_comps
            + 8.0 * n_features * ((4 + n_chunks) * n_features + 4 * len(blocks))
        )
    else:
        need = 4.0 * n_total * (width + n_comps) + 8.0 * n_features * (
            (4 + n_chunks) * width + 4 * len(blocks)
        )
    with memory_step(
        f"the joint PCA of {n_total:,} cells x {n_features:,} features ({n_comps} components)",
        need,
        "lower n_comps or pass fewer features (for example highly variable genes); a backed AnnData is "
        "read 10,000 rows at a time, keeping only the features used, so the file is never held twice",
    ):
        return _joint_pca(blocks, n_comps, width, n_iter, random_state, solver)


def _joint_pca(
    blocks: list[ArrayLike | RowSource], n_comps: int, width: int, n_iter: int, random_state: int, solver: str
) -> JointPCA:
    parts = [_standardised_block(_as_block(b)) for b in blocks]
    if solver == "covariance":
        s, Vt = leading_eigenvectors(sum(_covariance(p) for p in parts), n_comps)
    else:
        s, Vt = _randomised_components(parts, n_comps, width, n_iter, random_state)
    # each block is standardised with the unbiased variance: its total sum of squares is (n_d - 1) per feature
    total_ss = sum((p.X.shape[0] - 1) * float((p.inv_std > 0).sum()) for p in parts)
    embeddings = [
        _matmul(p, Vt.T, out=np.empty((p.X.shape[0], Vt.shape[0]), dtype=np.float32)) for p in parts
    ]
    return JointPCA(
        embeddings=embeddings,
        components=Vt,
        singular_values=s,
        explained_variance_ratio=(s**2) / max(total_ss, 1e-12),
        means=[p.mean for p in parts],
        inv_stds=[p.inv_std for p in parts],
    )


def _as_block(X: ArrayLike | RowSource) -> sp.csr_matrix | np.ndarray | RowSource:
    if isinstance(X, RowSource):
        return X
    return sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)


def _randomised_components(
    parts: list[_Block], n_comps: int, width: int, n_iter: int, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Leading singular values and (signed) right singular vectors of the stacked blocks, by the range finder."""
    n_features = parts[0].X.shape[1]
    rng = np.random.default_rng(random_state)
    omega = rng.standard_normal((n_features, width))

    sizes = [p.X.shape[0] for p in parts]
    bounds = np.concatenate([[0], np.cumsum(sizes)])

    def z_dot(M: np.ndarray, out: np.ndarray) -> np.ndarray:
        for p, start, stop in zip(parts, bounds[:-1], bounds[1:], strict=True):
            _matmul(p, M, out=out[start:stop])
        return out

    def zt_dot(Y: np.ndarray) -> np.ndarray:
        out = np.zeros((n_features, Y.shape[1]))
        for p, start, stop in zip(parts, bounds[:-1], bounds[1:], strict=True):
            out += _rmatmul(p, Y[start:stop])
        return out

    # one n_cells x width float32 buffer holds the range: Z @ W overwrites it once Z.T @ Q has been taken
    Q = _orthonormal(z_dot(omega, np.empty((int(bounds[-1]), width), dtype=np.float32)))
    for _ in range(n_iter):
        W = np.linalg.qr(zt_dot(Q))[0]
        Q = _orthonormal(z_dot(W, Q))
    B = zt_dot(Q).T  # (width, n_features) = Q^T Z
    del Q  # the buffer is not needed for the embeddings
    _, s, Vt = np.linalg.svd(B, full_matrices=False)
    # deterministic signs: the largest-magnitude loading of every component is positive
    return s[:n_comps], signed_components(Vt[:n_comps])


@dataclass
class JointCCA:
    """Result of :func:`joint_cca`: the canonical scores of both datasets, rows L2-normalised."""

    embeddings: list[np.ndarray]
    singular_values: np.ndarray


@_one_blas_thread
def joint_cca(
    reference: ArrayLike, query: ArrayLike, *, n_comps: int = 30, n_iter: int = 7, random_state: int = 0
) -> JointCCA:
    """Diagonal CCA of two datasets on their shared features, as Seurat v3's anchor space.

    Both datasets are standardised per feature on their own; the canonical scores are the leading
    singular vectors of ``Z_ref @ Z_query.T``. That ``n_ref x n_query`` matrix is never formed: the
    randomised range finder only multiplies it, through the thin factors, by ``n_comps + 10`` columns,
    so time and memory grow linearly with the number of cells. Rows are L2-normalised, as Seurat does
    before it looks for neighbours.

    Parameters
    ----------
    reference, query
        ``cells x features`` matrices (dense or sparse, the same features in the same order), already
        log-normalised.
    n_comps
        Number of canonical components (lowered to what the data allow).
    n_iter
        Power iterations of the randomised range finder.
    random_state
        Seed of the random test matrix.

    Returns
    -------
    :class:`JointCCA` with ``embeddings == [reference scores, query scores]``.
    """
    ref = _standardised_block(_as_block(reference))
    qry = _standardised_block(_as_block(query))
    n_ref, n_query = ref.X.shape[0], qry.X.shape[0]
    n_comps = int(max(1, min(n_comps, n_ref - 1, n_query - 1, ref.X.shape[1])))
    width = min(n_comps + 10, n_query, n_ref)
    rng = np.random.default_rng(random_state)

    def c_dot(M: np.ndarray) -> np.ndarray:  # (Z_ref Z_query^T) M
        return _matmul(ref, _rmatmul(qry, M))

    def ct_dot(M: np.ndarray) -> np.ndarray:  # (Z_ref Z_query^T)^T M
        return _matmul(qry, _rmatmul(ref, M))

    Q = _orthonormal(c_dot(rng.standard_normal((n_query, width))))
    for _ in range(n_iter):
        W = _orthonormal(ct_dot(Q))
        Q = _orthonormal(c_dot(W))
    B = ct_dot(Q).T  # (width, n_query) = Q^T C
    Ub, s, Vt = np.linalg.svd(B, full_matrices=False)
    U = (Q @ Ub)[:, :n_comps]
    V = Vt[:n_comps].T
    signs = np.sign(V[np.abs(V).argmax(axis=0), np.arange(n_comps)])
    signs[signs == 0] = 1.0
    U *= signs
    V *= signs

    def l2(E: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(E, axis=1, keepdims=True)
        return np.divide(E, norm, out=np.zeros_like(E), where=norm > 0)

    return JointCCA(embeddings=[l2(U), l2(V)], singular_values=s[:n_comps])
