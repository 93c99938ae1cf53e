"""Input checks shared by every verb.

They raise ``ValueError``/``KeyError`` with a message that says what to do.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

ArrayLike = np.ndarray | sp.spmatrix | sp.sparray


def check_nonempty(adata: AnnData, name: str) -> None:
    """Raise if ``adata`` has no cells or no features."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"{name} must be an AnnData object, got {type(adata).__name__}.")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"{name} is empty ({adata.n_obs} cells x {adata.n_vars} features); pass an AnnData with at least "
            "one cell and one feature."
        )


def check_writable(adata: AnnData, name: str, *, copy: bool = False) -> None:
    """Raise if results would be written into a view (``copy=False``), which would silently copy it.

    Writing into a view makes AnnData turn it into an independent object (or fail for a view of a backed
    AnnData), so the verbs refuse it, as :func:`sctransfer.tl.label_transfer` does for its query.
    """
    if not copy and adata.is_view:
        raise ValueError(
            f"{name} is a view of another AnnData (for example adata[mask]), so results cannot be written "
            "into it; pass adata[mask].copy(), or copy=True."
        )


def layer_names(adata: AnnData) -> list[str]:
    """The names of ``adata.layers``, sorted; anndata 0.13 also lists ``.X`` there, under the key ``None``."""
    return sorted(str(key) for key in adata.layers.keys() if key is not None)


def get_matrix(adata: AnnData, layer: str | None, name: str) -> ArrayLike:
    """Return ``adata.layers[layer]`` or ``adata.X`` without copying."""
    if layer is None:
        X = adata.X
        if X is None:
            raise ValueError(f"{name}.X is None; store the values in .X or pass layer=<name of a layer>.")
        return X
    if layer not in adata.layers:
        raise KeyError(
            f"layer {layer!r} not found in {name}.layers (available: {layer_names(adata)}); "
            "pass layer=None to use .X."
        )
    return adata.layers[layer]


#: rows read at a time from a backed or dask matrix
CHUNK_ROWS = 10_000


def float_dtype(X: ArrayLike) -> np.dtype:
    """float64 for float64 input, else float32: no float64 copy of a float32 or integer matrix."""
    return np.dtype(np.float64) if X.dtype == np.float64 else np.dtype(np.float32)


def is_in_memory(X: object) -> bool:
    """``True`` for a NumPy array or a SciPy sparse matrix (not a backed dataset or a dask array)."""
    return isinstance(X, np.ndarray) or sp.issparse(X)


def is_dask(X: object) -> bool:
    """``True`` for a dask array (without importing dask)."""
    return type(X).__module__.split(".")[0] == "dask"


def check_readable(X: object, name: str) -> None:
    """Raise unless ``X`` can be read in row chunks: a backed dataset, an h5py dataset or a dask array."""
    if is_dask(X):
        chunks = getattr(X, "chunks", ())
        if any(not np.isfinite(size) for axis in chunks for size in axis):
            raise ValueError(
                f"{name} is a dask array with unknown (irregular) chunk sizes {chunks}; call "
                "X.compute_chunk_sizes() (or build it with known lengths, e.g. to_dask_array(lengths=True)) "
                "first."
            )
        if getattr(X, "ndim", 2) != 2:
            raise ValueError(f"{name} must be a 2-d cells x features matrix, got {X.ndim} dimension(s).")
        return
    if hasattr(X, "shape") and hasattr(X, "__getitem__") and len(getattr(X, "shape", ())) == 2:
        return  # anndata's backed sparse datasets, h5py/zarr datasets of a backed dense X
    raise ValueError(
        f"{name} is a {type(X).__module__}.{type(X).__name__}, which sctransfer cannot read; pass a NumPy "
        "array, a SciPy sparse matrix, an AnnData opened with anndata.read_h5ad(path, backed='r'), or a dask "
        "array (pip install dask)."
    )


def read_chunk(X: object, start: int, stop: int) -> ArrayLike:
    """Rows ``start:stop`` of a backed, dask or in-memory matrix, in memory (CSR or NumPy).

    For a backed or dask matrix the block is always a new matrix, which the caller may change in place.
    """
    block = X[start:stop]
    if hasattr(block, "compute"):  # dask: compute() may return a view of the array it wraps
        block = block.compute()
        block = block.copy() if sp.issparse(block) else np.array(block)
    if hasattr(block, "to_memory"):
        block = block.to_memory()
    if sp.issparse(block):
        return sp.csr_matrix(block)
    return np.asarray(block)


def read_rows(
    X: object,
    columns: Sequence[int] | np.ndarray | None = None,
    *,
    name: str = "the matrix",
    chunk_size: int | None = None,
    prepare: Callable[[ArrayLike], ArrayLike] | None = None,
) -> ArrayLike:
    """A backed or dask matrix read into memory ``chunk_size`` rows at a time, only on ``columns``.

    ``chunk_size`` ``None`` is :data:`CHUNK_ROWS` (read when called).

    Only the requested columns of each chunk are kept, so the full matrix is never held; the result is a
    CSR matrix for sparse data and a NumPy array for dense data, in the stored dtype (no float64 copy).
    ``prepare`` is applied to each chunk as read (all its columns, a new matrix that it may change in
    place) before the columns are taken; the result then has the dtype it returns.
    """
    check_readable(X, name)
    chunk_size = chunk_size or CHUNK_ROWS
    n_rows = int(X.shape[0])
    cols = None if columns is None else np.asarray(columns, dtype=np.int64)
    if cols is not None and np.array_equal(cols, np.arange(X.shape[1])):
        cols = None  # every column, in order: no column copy of each chunk
    rows: CSRRows | None = None  # sparse chunks are copied into one growing CSR matrix
    out: np.ndarray | None = None  # dense values go straight into one array: no second copy
    for start in range(0, max(n_rows, 1), chunk_size):
        stop = min(start + chunk_size, n_rows)
        block = read_chunk(X, start, stop)
        if prepare is not None:
            block = prepare(block)
        if cols is not None:
            block = block[:, cols] if sp.issparse(block) else np.take(block, cols, axis=1)
        if sp.issparse(block):
            rows = rows or CSRRows(n_rows, block.shape[1])
            rows.append(block)
            continue
        if out is None:
            out = np.empty((n_rows, block.shape[1]), dtype=block.dtype)
        out[start:stop] = block
    return rows.finish() if rows is not None else out


class CSRRows:
    """Row-stack CSR chunks as they are read, into one set of arrays that grows in place.

    Each chunk's values and column indices are copied into the result's arrays as it arrives, so it can be
    freed at once. The arrays are sized from the first chunk (pages never written are never resident) and,
    if the estimate falls short, grow with ``ndarray.resize``, which the allocator extends in place for
    large arrays. A matrix read in chunks is thus held about once; a list of chunks stacked at the end
    held it twice at the peak (the freed chunks stayed in the process's heap).

    Parameters
    ----------
    n_rows, n_cols
        Shape of the result.
    """

    def __init__(self, n_rows: int, n_cols: int) -> None:
        self.shape = (int(n_rows), int(n_cols))
        self.indptr = np.zeros(self.shape[0] + 1, dtype=np.int64)
        self.data: np.ndarray | None = None
        self.indices: np.ndarray | None = None
        self.row = 0
        self.pos = 0

    def append(self, block: sp.spmatrix | sp.sparray) -> None:
        """Copy the rows of ``block`` (CSR, or converted to it) after those already appended."""
        block = sp.csr_matrix(block)
        m, first, last = block.shape[0], int(block.indptr[0]), int(block.indptr[-1])
        n = last - first
        if self.row + m > self.shape[0] or block.shape[1] != self.shape[1]:
            raise ValueError(f"internal error: a {block.shape} chunk does not fit a {self.shape} matrix.")
        if self.data is None:  # sized from the first chunk, 10 % over: the unused tail is never touched
            rows_left = max(self.shape[0] - self.row, 1)
            capacity = max(int(1.1 * n * rows_left / max(m, 1)), n, 1)
            self.data = np.empty(capacity, dtype=block.dtype)
            index_dtype = np.int32 if self.shape[1] < np.iinfo(np.int32).max else np.int64
            self.indices = np.empty(capacity, dtype=index_dtype)
        elif block.dtype != self.data.dtype:
            self.data = self.data.astype(np.result_type(self.data, block.dtype))
        if self.pos + n > self.data.size:
            capacity = max(self.pos + n, int(1.25 * self.data.size))
            self.data.resize(capacity, refcheck=False)
            self.indices.resize(capacity, refcheck=False)
        self.data[self.pos : self.pos + n] = block.data[first:last]
        self.indices[self.pos : self.pos + n] = block.indices[first:last]
        self.indptr[self.row + 1 : self.row + m + 1] = block.indptr[1:] - first + self.pos
        self.row += m
        self.pos += n

    def finish(self) -> sp.csr_matrix:
        """The stacked matrix (its arrays trimmed to the values stored)."""
        if self.row != self.shape[0]:
            raise ValueError(f"internal error: {self.row} of {self.shape[0]} rows were appended.")
        if self.data is None:
            return sp.csr_matrix(self.shape, dtype=np.float32)
        self.data.resize(self.pos, refcheck=False)
        self.indices.resize(self.pos, refcheck=False)
        indptr = self.indptr.astype(np.int32) if self.pos < np.iinfo(np.int32).max else self.indptr
        indices = self.indices if indptr.dtype == self.indices.dtype else self.indices.astype(indptr.dtype)
        out = sp.csr_matrix((self.data, indices, indptr), shape=self.shape)
        self.data = self.indices = None
        return out


def in_memory(X: ArrayLike, name: str = "the matrix") -> ArrayLike:
    """``X`` as a NumPy array or SciPy sparse matrix; a backed or dask matrix is read once, in row chunks."""
    if is_in_memory(X):
        return X
    from ._logging import logger

    logger.info(
        "reading %s (%d x %d, %s) into memory in chunks of %d rows",
        name, X.shape[0], X.shape[1], type(X).__name__, CHUNK_ROWS,
    )  # fmt: skip
    return read_rows(X, name=name)


def iter_rows(X: ArrayLike, *, name: str = "the matrix", chunk_size: int | None = None, split: bool = False):
    """Yield ``(start, block)`` row chunks of ``X`` in memory (CSR or NumPy).

    In-memory ``X`` is one chunk, or with ``split`` chunks of ``chunk_size`` rows as well (row slices:
    views of a NumPy array, copies of a sparse matrix's rows, in CSR), for work that makes a temporary of
    the size of its block. ``chunk_size`` ``None`` is :data:`CHUNK_ROWS` (read when called).
    """
    chunk_size = chunk_size or CHUNK_ROWS
    if is_in_memory(X):
        if not split:
            yield 0, X
            return
        if sp.issparse(X) and X.format not in ("csr", "csc"):
            X = sp.csr_matrix(X)
        elif not sp.issparse(X):
            X = np.asarray(X)
        for start in range(0, max(X.shape[0], 1), chunk_size):
            block = X[start : start + chunk_size]
            yield start, sp.csr_matrix(block) if sp.issparse(block) else block
        return
    check_readable(X, name)
    n_rows = int(X.shape[0])
    for start in range(0, n_rows, chunk_size):
        yield start, read_chunk(X, start, min(start + chunk_size, n_rows))


def take_columns(X: ArrayLike, columns: Sequence[int] | np.ndarray, name: str = "the matrix") -> ArrayLike:
    """``X[:, columns]`` in the order of ``columns`` (distinct), also for backed and dask matrices.

    A backed or dask matrix is read in row chunks keeping only ``columns``, so the full matrix is never
    held in memory.
    """
    columns = np.asarray(columns, dtype=np.int64)
    if isinstance(X, np.ndarray):
        # C order, as a chunked read gives (X[:, columns] would be in F order, and the BLAS products then
        # round differently)
        return np.take(X, columns, axis=1)
    if sp.issparse(X):
        return X[:, columns]
    return read_rows(X, columns, name=name)


def _values(X: ArrayLike) -> np.ndarray:
    X = in_memory(X)
    if sp.issparse(X):
        return np.asarray(X.data)
    return np.asarray(X)


def check_values(X: ArrayLike, name: str, *, nonnegative: bool = True) -> None:
    """Raise if ``X`` holds NaN/Inf, or negative values when ``nonnegative``.

    A backed or dask ``X`` is checked in row chunks (never read whole).
    """
    if not is_in_memory(X):
        for _, block in iter_rows(X, name=name):
            check_values(block, name, nonnegative=nonnegative)
        return
    values = _values(X)
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers, got dtype {values.dtype}.")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        n_bad = int((~np.isfinite(values)).sum())
        raise ValueError(
            f"{name} contains {n_bad} NaN or infinite values; remove or impute them (for example "
            "np.nan_to_num) before calling sctransfer."
        )
    if nonnegative and values.size and values.min() < 0:
        raise ValueError(
            f"{name} contains negative values (minimum {values.min():.3g}); sctransfer expects counts or "
            "log-normalised expression. Pass the unscaled data (for example a counts layer with layer=...)."
        )


def count_detected(X: ArrayLike, *, name: str = "the matrix") -> np.ndarray:
    """Per-column number of rows with a value ``> 0``; a backed or dask matrix is read in row chunks."""
    counts = np.zeros(X.shape[1], dtype=np.int64)
    for _, block in iter_rows(X, name=name):
        counts += np.asarray((block > 0).sum(axis=0)).ravel().astype(np.int64)
    return counts


def looks_like_counts(X: ArrayLike, *, n_values: int = 10_000) -> bool:
    """``True`` when the first ``n_values`` non-zero values are all integers (raw counts, not log-normalised).

    The values are taken row by row (zeros say nothing: log-normalised values are 0 where counts are), from
    as many chunks of rows as it takes; a backed or dask matrix is read a chunk at a time.
    """
    found: list[np.ndarray] = []
    n_found = 0
    for _, block in iter_rows(X, split=True):
        values = block.data if sp.issparse(block) else np.asarray(block).ravel()
        values = values[values != 0][: n_values - n_found]
        found.append(np.asarray(values, dtype=np.float64))
        n_found += values.size
        if n_found >= n_values:
            break
    sample = np.concatenate(found) if found else np.zeros(0)
    return bool(np.all(sample == np.round(sample)))


def gene_positions(names: pd.Index, genes: Sequence[str], what: str) -> np.ndarray | None:
    """Column positions of ``genes`` in ``names`` (``None`` when they already match in order).

    Raises a ``ValueError`` naming ``what`` when ``names`` has duplicates or lacks some of ``genes``.
    """
    if not names.is_unique:
        raise ValueError(f"{what} has duplicated var_names; call .var_names_make_unique() first.")
    if len(names) == len(genes) and (names == pd.Index(genes)).all():
        return None
    missing = pd.Index(genes).difference(names)
    if len(missing):
        raise ValueError(
            f"{what} lacks {len(missing)} of the model's {len(genes)} genes (for example "
            f"{list(missing[:5])}); pass data measured on the training genes (genes are matched by name, "
            "extra genes are ignored and the order does not matter)."
        )
    return names.get_indexer(genes)


def check_obs_key(adata: AnnData, key: str, name: str, what: str = "labels") -> pd.Series:
    """Return ``adata.obs[key]``; raise ``KeyError`` if missing and ``ValueError`` if all missing values."""
    if key not in adata.obs.columns:
        raise KeyError(
            f"{what} key {key!r} not found in {name}.obs (columns: {list(adata.obs.columns)}); "
            f"pass the name of the .obs column that holds the {what}."
        )
    values = adata.obs[key]
    if values.isna().all():
        raise ValueError(f"{name}.obs[{key!r}] holds no values (all NaN); fill in the {what} first.")
    return values


def check_n_classes(labels: pd.Series | np.ndarray, name: str, minimum: int = 2) -> np.ndarray:
    """Return the sorted classes of ``labels`` (missing values ignored); raise if fewer than ``minimum``."""
    classes = np.asarray(pd.unique(pd.Series(labels).dropna().astype(str)))
    classes.sort()
    if classes.size < minimum:
        raise ValueError(
            f"{name} has {classes.size} class(es) ({list(classes)}); transferring labels needs at least "
            f"{minimum}. Check that the labels key is the cell-type column."
        )
    return classes


def shared_features(names_a: Sequence[str], names_b: Sequence[str], what: tuple[str, str]) -> np.ndarray:
    """Features present in both, in the order of ``names_a``; raise if there are none."""
    b = pd.Index(names_b)
    a = pd.Index(names_a)
    if not a.is_unique or not b.is_unique:
        dup = what[0] if not a.is_unique else what[1]
        raise ValueError(f"{dup} has duplicated var_names; call .var_names_make_unique() first.")
    common = a[a.isin(b)]
    if len(common) == 0:
        raise ValueError(
            f"{what[0]} and {what[1]} share no features (var_names). Use the same gene identifiers in both "
            f"(for example symbols in both, not symbols vs Ensembl IDs); for ATAC peaks compute gene "
            f"activity first with sct.pp.gene_activity. Examples: {list(a[:3])} vs {list(b[:3])}."
        )
    return np.asarray(common)


def check_int(value: int, name: str, minimum: int = 1) -> int:
    """Raise unless ``value`` is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_float(
    value: float, name: str, *, minimum: float = -np.inf, maximum: float = np.inf, open_minimum: bool = False
) -> float:
    """``value`` as a float; raise unless it is a finite number in ``[minimum, maximum]``.

    With ``open_minimum`` the lower bound is excluded (``(minimum, maximum]``).
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))
    if ok:
        ok = (value > minimum if open_minimum else value >= minimum) and value <= maximum
    if not ok:
        if np.isinf(maximum):
            bounds = f"{'>' if open_minimum else '>='} {minimum:g}"
        else:
            bounds = f"in {'(' if open_minimum else '['}{minimum:g}, {maximum:g}]"
        raise ValueError(f"{name} must be a finite number {bounds}, got {value!r}.")
    return float(value)


def check_choice(value: str, name: str, choices: Sequence[str]) -> str:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value


#: what :func:`infer_scale` can say about a matrix of expression values
SCALES = ("counts", "log", "normalized", "scaled")
#: largest value log-normalised data reach in practice (log1p of 10,000 per cell is 9.2; log2 CPM ~20)
_MAX_LOG_VALUE = 30.0


#: stored values (the first ones) from which :func:`infer_scale` tells the scale
SCALE_SAMPLE = 100_000


def infer_scale(X: ArrayLike, *, n_values: int = SCALE_SAMPLE) -> str:
    """Say what scale the expression values in ``X`` are on, from a sample of the stored values.

    ``"scaled"``: some values are negative (z-scored or regressed data); ``"counts"``: all integers;
    ``"log"``: non-integers up to 30 (log-normalised); ``"normalized"``: larger non-integers (for example
    counts per million that were never logged). The one check every label-transfer method uses.
    """
    values = X.data if sp.issparse(X) else np.asarray(X).ravel()
    sample = np.asarray(values[:n_values], dtype=np.float64)
    if sample.size == 0:
        return "counts"
    if sample.min() < 0:
        return "scaled"
    if np.all(sample == np.round(sample)):
        return "counts"
    return "log" if sample.max() <= _MAX_LOG_VALUE else "normalized"


def to_log_scale(X: ArrayLike, scale: str, name: str, *, copy: bool = True) -> ArrayLike:
    """Log-normalised values of ``X`` given its :func:`infer_scale` scale; a new matrix unless already log.

    counts are scaled to 10,000 per cell and ``log1p``-transformed; ``"normalized"`` values are
    ``log1p``-transformed; ``"scaled"`` values are refused, because the log-normalised expression they came
    from cannot be recovered. With ``copy=False`` a float ``X`` may be changed in place (a matrix just read
    from a backed file). The result is float32 unless ``X`` is float64.
    """
    from ..kernels._pca import log_normalize

    if scale == "counts":
        return log_normalize(X, copy=copy)
    if scale == "log":
        return X
    if scale == "normalized":
        dtype = float_dtype(X)
        if sp.issparse(X):
            inplace = not copy and isinstance(X, sp.csr_matrix) and X.dtype == dtype
            X = X if inplace else sp.csr_matrix(X, dtype=dtype, copy=True)
            np.log1p(X.data, out=X.data)
            return X
        if not copy and isinstance(X, np.ndarray) and X.dtype == dtype:
            return np.log1p(X, out=X)
        return np.log1p(np.asarray(X, dtype=dtype))
    refuse_scaled(scale, name)
    raise ValueError(f"internal error: unknown scale {scale!r}.")  # pragma: no cover - SCALES lists them


def refuse_scaled(scale: str, name: str) -> None:
    """Raise for ``"scaled"`` values (:func:`infer_scale`): the log-normalised expression cannot be recovered."""
    if scale == "scaled":
        raise ValueError(
            f"{name} holds negative values, like scaled (z-scored) data; label transfer needs counts or "
            "log-normalised expression. Pass the unscaled values (for example adata.raw, or a counts layer "
            "with layer=...)."
        )
