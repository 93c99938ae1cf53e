"""Input checks shared by every verb.

They raise ``ValueError``/``KeyError`` with a message that says what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def in_memory(X: ArrayLike) -> ArrayLike:
    """``X`` as a NumPy array or SciPy sparse matrix; the datasets of a backed AnnData are read into memory."""
    if isinstance(X, np.ndarray) or sp.issparse(X):
        return X
    if hasattr(X, "to_memory"):  # anndata's backed sparse dataset (np.asarray would wrap it as an object)
        return X.to_memory()
    # h5py datasets (backed dense) and dask arrays expose __array__
    return np.asarray(X)


def take_columns(X: ArrayLike, columns: Sequence[int] | np.ndarray) -> ArrayLike:
    """``X[:, columns]`` in the order of ``columns`` (distinct), also for the datasets of a backed AnnData.

    h5py reads only increasing indices, so a backed matrix is read in sorted order and then reordered.
    """
    columns = np.asarray(columns, dtype=np.int64)
    if isinstance(X, np.ndarray) or sp.issparse(X):
        return X[:, columns]
    order = np.argsort(columns, kind="stable")
    block = in_memory(X[:, columns[order]])
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    return block[:, position]


def _values(X: ArrayLike) -> np.ndarray:
    X = in_memory(X)
    if sp.issparse(X):
        return np.asarray(X.data)
    return np.asarray(X)


def check_values(X: ArrayLike, name: str, *, nonnegative: bool = True) -> None:
    """Raise if ``X`` holds NaN/Inf, or negative values when ``nonnegative``."""
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


def looks_like_counts(X: ArrayLike, *, n_values: int = 10_000) -> bool:
    """``True`` when the first ``n_values`` stored values are all integers (raw counts, not log-normalised)."""
    values = X.data if sp.issparse(X) else np.asarray(X).ravel()
    sample = np.asarray(values[:n_values], dtype=np.float64)
    return bool(np.all(sample == np.round(sample)))


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


def check_choice(value: str, name: str, choices: Sequence[str]) -> str:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value


#: what :func:`infer_scale` can say about a matrix of expression values
SCALES = ("counts", "log", "normalized", "scaled")
#: largest value log-normalised data reach in practice (log1p of 10,000 per cell is 9.2; log2 CPM ~20)
_MAX_LOG_VALUE = 30.0


def infer_scale(X: ArrayLike, *, n_values: int = 100_000) -> str:
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


def to_log_scale(X: ArrayLike, scale: str, name: str) -> ArrayLike:
    """Log-normalised values of ``X`` given its :func:`infer_scale` scale; a new matrix unless already log.

    counts are scaled to 10,000 per cell and ``log1p``-transformed; ``"normalized"`` values are
    ``log1p``-transformed; ``"scaled"`` values are refused, because the log-normalised expression they came
    from cannot be recovered.
    """
    from ..kernels._pca import log_normalize

    if scale == "counts":
        return log_normalize(X)
    if scale == "log":
        return X
    if scale == "normalized":
        if sp.issparse(X):
            X = sp.csr_matrix(X, dtype=np.float64, copy=True)
            np.log1p(X.data, out=X.data)
            return X
        return np.log1p(np.asarray(X, dtype=np.float64))
    raise ValueError(
        f"{name} holds negative values, like scaled (z-scored) data; label transfer needs counts or "
        "log-normalised expression. Pass the unscaled values (for example adata.raw, or a counts layer with "
        "layer=...)."
    )
