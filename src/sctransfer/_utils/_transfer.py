"""Input preparation shared by every label-transfer method: labels, feature matching, value scale."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from ._keys import REJECTION_LABELS
from ._logging import logger
from ._validation import (
    CHUNK_ROWS,
    SCALE_SAMPLE,
    check_n_classes,
    check_obs_key,
    check_readable,
    check_values,
    get_matrix,
    infer_scale,
    is_in_memory,
    read_chunk,
    refuse_scaled,
    take_columns,
    to_log_scale,
)

#: below this many shared features (unless they are all of the smaller dataset's) a transfer warns that
#: its labels may be poor
MIN_SHARED_FEATURES = 200
#: ... and below this fraction of the smaller dataset's features, whatever their number
MIN_SHARED_FRACTION = 0.25
#: ``gene_case="auto"`` matches case-insensitively when that finds this much more than exact matching
_CASE_GAIN = 1.1

GeneCase = Literal["auto", "exact", "ignore"]


@dataclass
class FeatureMatch:
    """Shared features of a reference and a query: column indices into each, and how they were matched."""

    reference_index: np.ndarray
    query_index: np.ndarray
    names: list[str]
    matching: str  # "exact" or "case-insensitive"


def check_unique_names(adata: AnnData, name: str) -> None:
    """Raise when ``var_names`` or ``obs_names`` hold duplicates."""
    for axis, index, fix in (
        ("var_names", adata.var_names, ".var_names_make_unique()"),
        ("obs_names", adata.obs_names, ".obs_names_make_unique()"),
    ):
        if not index.is_unique:
            dup = index[index.duplicated()][:3].tolist()
            raise ValueError(f"{name} has duplicated {axis} (e.g. {dup}); call {fix} first.")


def reference_codes(
    adata: AnnData, labels_key: str, name: str = "the reference"
) -> tuple[np.ndarray, list[str]]:
    """Class codes (``-1`` for a missing label) and sorted class names of ``adata.obs[labels_key]``."""
    labels = check_obs_key(adata, labels_key, name)
    if pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels):
        raise ValueError(
            f"{name}.obs[{labels_key!r}] holds numbers ({labels.dtype}), not cell-type names. If they are "
            f"cluster ids, make them categories first: adata.obs[{labels_key!r}] = "
            f"adata.obs[{labels_key!r}].astype(str).astype('category')."
        )
    classes = check_n_classes(labels, name)
    reserved = sorted(REJECTION_LABELS.intersection(classes))
    if reserved:
        raise ValueError(
            f"{name}.obs[{labels_key!r}] has the class(es) {reserved}, the label(s) that mean a rejected "
            "cell (the query's cells below the confidence threshold are labelled 'unknown'). Rename that "
            "class, or set those cells' labels to NaN (they are then embedded but never vote)."
        )
    values = labels.astype(object).where(labels.notna(), None)
    codes = pd.Categorical(
        [None if v is None else str(v) for v in values], categories=list(classes)
    ).codes.astype(np.int64)
    return codes, [str(c) for c in classes]


def _case_keys(names: pd.Index) -> pd.Index:
    return pd.Index([str(n).upper() for n in names])


def match_features(
    reference_names: pd.Index, query_names: pd.Index, *, gene_case: GeneCase = "auto", what: tuple[str, str]
) -> FeatureMatch:
    """Features shared by two datasets, in the reference's order.

    ``gene_case="auto"`` matches names exactly, unless case-insensitive matching (for example human
    ``CD3E`` with mouse ``Cd3e``) finds at least 10 % more shared features; names that become ambiguous
    when upper-cased are left out. Warns when few features are shared.
    """
    from ._validation import check_choice

    check_choice(gene_case, "gene_case", ("auto", "exact", "ignore"))
    ref, qry = pd.Index(reference_names), pd.Index(query_names)
    for name, names in zip(what, (ref, qry), strict=True):
        if not names.is_unique:
            dup = names[names.duplicated()][:3].tolist()
            raise ValueError(
                f"{name} has duplicated var_names (e.g. {dup}); call .var_names_make_unique() first."
            )
    exact = ref.get_indexer(qry[qry.isin(ref)])
    chosen = ("exact", ref.isin(qry), None)
    if gene_case != "exact":
        ref_keys, qry_keys = _case_keys(ref), _case_keys(qry)
        ref_ok = ~ref_keys.duplicated(keep=False)
        qry_ok = ~qry_keys.duplicated(keep=False)
        in_both = ref_ok & ref_keys.isin(qry_keys[qry_ok])
        n_case = int(in_both.sum())
        if gene_case == "ignore" or n_case >= max(len(exact) * _CASE_GAIN, len(exact) + 1):
            chosen = ("case-insensitive", in_both, (ref_keys, qry_keys, qry_ok))
    matching, ref_mask, keys = chosen
    ref_index = np.flatnonzero(np.asarray(ref_mask))
    if keys is None:
        query_index = qry.get_indexer(ref[ref_index])
    else:
        ref_keys, qry_keys, qry_ok = keys
        lookup = pd.Index(qry_keys[qry_ok])
        query_index = np.flatnonzero(qry_ok)[lookup.get_indexer(ref_keys[ref_index])]
    if len(ref_index) == 0:
        raise ValueError(
            f"{what[0]} and {what[1]} share no features (var_names). Use the same gene identifiers in both "
            "(for example symbols in both, not symbols vs Ensembl IDs); for ATAC peaks compute gene activity "
            f"first with sct.pp.gene_activity. Examples: {list(ref[:3])} vs {list(qry[:3])}."
        )
    n = len(ref_index)
    smaller = min(len(ref), len(qry))
    # a small panel that both datasets share whole (antibody tags) is not a matching problem
    if (n < MIN_SHARED_FEATURES and n < smaller) or n < MIN_SHARED_FRACTION * smaller:
        warnings.warn(
            f"{what[0]} and {what[1]} share only {n} features ({n / smaller:.0%} of the smaller one's "
            f"{smaller}); the transferred labels may be poor. Check that both use the same gene identifiers "
            "and the same species or genome, and that neither was reduced to a small gene panel.",
            UserWarning,
            stacklevel=4,
        )
    logger.info("%d shared features (%s matching)", n, matching)
    return FeatureMatch(ref_index, query_index, [str(x) for x in ref[ref_index]], matching)


def log_values(adata: AnnData, layer: str | None, columns: np.ndarray, name: str) -> tuple[Any, str]:
    """Log-normalised values of ``adata`` on ``columns`` and the scale the input was on.

    The one input-scale check of label transfer: counts are log-normalised, unlogged normalised values are
    ``log1p``-transformed, log-normalised values are used as they are, and scaled values are refused.
    """
    X, scale = raw_values(adata, layer, columns, name)
    # a backed or dask matrix was just read (only on ``columns``): normalise that copy in place
    return to_log_scale(X, scale, name, copy=is_in_memory(get_matrix(adata, layer, name))), scale


def _checked_scale(X: Any, name: str) -> str:
    """The input checks of label transfer on ``X``: its values, then its scale (scaled values refused)."""
    check_values(X, f"{name} values")
    scale = infer_scale(X)
    refuse_scaled(scale, name)
    return scale


def streamed_log_values(adata: AnnData, layer: str | None, columns: np.ndarray, name: str) -> tuple[Any, str]:
    """:func:`log_values` of a backed or dask matrix, as rows made when they are read (never held whole).

    Returns a :class:`~sctransfer.kernels._pca.LogNormalisedRows` on ``columns`` and the input scale. The
    scale comes from the first stored values, as :func:`infer_scale` takes them from a whole matrix; every
    chunk's values are checked as it is read.
    """
    import scipy.sparse as sp

    from ..kernels._pca import LogNormalisedRows

    source = get_matrix(adata, layer, name)
    check_readable(source, name)
    columns = np.asarray(columns, dtype=np.int64)
    n_rows, seen, blocks = int(source.shape[0]), 0, []
    for start in range(0, n_rows, CHUNK_ROWS):  # the first chunks, up to the values infer_scale samples
        block = read_chunk(source, start, min(start + CHUNK_ROWS, n_rows))
        block = block[:, columns] if sp.issparse(block) else np.take(block, columns, axis=1)
        blocks.append(block)
        seen += block.nnz if sp.issparse(block) else block.size
        if seen >= SCALE_SAMPLE:
            break
    first = sp.vstack(blocks, format="csr") if sp.issparse(blocks[0]) else np.vstack(blocks)
    scale = _checked_scale(first, name)
    rows = LogNormalisedRows(source, columns=columns, scale=scale, check=True, name=f"{name} values")
    logger.info("%s: %d x %d values read and log-normalised by chunks at every pass", name, *rows.shape)
    return rows, scale


def raw_values(adata: AnnData, layer: str | None, columns: np.ndarray, name: str) -> tuple[Any, str]:
    """The values of ``adata`` on ``columns`` as given, and the input scale (scaled values are refused).

    Label transfer's input checks (values, then scale), without a log-normalised copy: what the methods
    that train on the values as given (scJoint) read, and what :func:`log_values` normalises. A backed or
    dask matrix is read once, in row chunks, only on ``columns``.
    """
    X = take_columns(get_matrix(adata, layer, name), columns, name=name)
    return X, _checked_scale(X, name)


def reference_arrays(
    adata: AnnData, *, labels_key: str, layer: str | None
) -> tuple[Any, np.ndarray, list[str]]:
    """Log-normalised values, class codes and classes of a labelled reference AnnData."""
    from ._validation import check_nonempty

    check_nonempty(adata, "the reference")
    check_unique_names(adata, "the reference")
    codes, classes = reference_codes(adata, labels_key)
    X, _ = log_values(adata, layer, np.arange(adata.n_vars), "the reference")
    return X, codes, classes


def query_arrays(adata: AnnData, features: list[str], *, layer: str | None) -> tuple[Any, np.ndarray]:
    """Log-normalised query values on the ``features`` it has, in their order, and the presence mask."""
    from ._validation import check_nonempty

    check_nonempty(adata, "the query")
    check_unique_names(adata, "the query")
    match = match_features(pd.Index(features), adata.var_names, what=("the model", "the query"))
    X, _ = log_values(adata, layer, match.query_index, "the query")
    present = np.zeros(len(features), dtype=bool)
    present[match.reference_index] = True
    return X, present


def query_representation(adata: Any, key: str) -> np.ndarray:
    """The query's ``.obsm[key]`` as a finite float32 array (cells x dimensions), checked."""
    if key not in adata.obsm:
        raise KeyError(
            f"query_rep={key!r} is not in the query's .obsm (keys: {list(adata.obsm)}); compute it first, "
            "for example sct.pp.lsi(atac_peaks) for the LSI of the ATAC peaks (.obsm['X_lsi'])."
        )
    rep = adata.obsm[key]
    rep = rep.to_numpy() if hasattr(rep, "to_numpy") else rep
    rep = rep.toarray() if hasattr(rep, "toarray") else np.asarray(rep)
    if rep.ndim != 2 or rep.shape[0] != adata.n_obs or rep.shape[1] == 0 or rep.dtype.kind not in "biuf":
        raise ValueError(
            f"query_rep={key!r} must be a numeric cells x dimensions array with one row per query cell "
            f"({adata.n_obs}), got shape {rep.shape} and dtype {rep.dtype}."
        )
    if not np.isfinite(rep).all():
        raise ValueError(f"query_rep={key!r} contains NaN or infinite values; recompute it.")
    return rep.astype(np.float32)
