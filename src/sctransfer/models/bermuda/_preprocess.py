"""BERMUDA's preprocessing: log-normalised values on the variable genes of every batch (no torch).

:class:`~sctransfer.models.BERMUDA` applies it to the values it is given, with the choices of its preset
(``target_sum``, ``gene_selection``, ``n_top_genes``, ``min_cells`` of
:class:`~sctransfer.models.bermuda.BERMUDAConfig`); :func:`sctransfer.tl.bermuda` applies the same
function first, to cluster every batch on the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..._utils._validation import check_choice, check_int, looks_like_counts, take_columns
from ...kernels._pca import log_normalize, row_totals

#: the gene selections of :class:`~sctransfer.models.bermuda.BERMUDAConfig`
GENE_SELECTIONS = ("seurat_v2", "top")


def check_preprocessing(config: Any) -> None:
    """Raise unless the preprocessing settings of ``config`` (a ``BERMUDAConfig``) are valid."""
    check_choice(config.gene_selection, "gene_selection", GENE_SELECTIONS)
    check_int(config.min_cells, "min_cells", 1)
    if config.n_top_genes is not None:
        check_int(config.n_top_genes, "n_top_genes", 2)
    target = config.target_sum
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target < np.inf:
        raise ValueError(f"target_sum must be a positive number, got {target!r}.")


def _float32(X) -> Any:
    return X.astype(np.float32, copy=False) if sp.issparse(X) else np.asarray(X, dtype=np.float32)


def log_normalised(
    X, *, target_sum: float, copy: bool = True, columns: np.ndarray | None = None
) -> tuple[Any, bool]:
    """:func:`~sctransfer.kernels._pca.log_normalize` counts (float32); other values unchanged (as float32).

    Returns the values and whether they were counts (and so normalised). With ``copy=False`` a float32
    ``X`` (one just read from a backed file) is normalised in place rather than copied. With ``columns``
    only those columns are returned, normalised by the totals of the full rows (the same values as
    normalising every column and then selecting, without a normalised copy of the whole matrix).
    """
    counts = looks_like_counts(X)
    if columns is None:
        values = log_normalize(X, target_sum=target_sum, copy=copy) if counts else X
        return _float32(values), counts
    totals = row_totals(X) if counts else None
    X = take_columns(X, columns)  # a new matrix: normalised in place
    if counts:
        X = log_normalize(X, target_sum=target_sum, copy=False, totals=totals)
    return _float32(X), counts


def select_genes(
    X,
    batches,
    *,
    gene_selection: str,
    n_top_genes: int | None,
    min_cells: int,
    target_sum: float | None = None,
    totals: np.ndarray | None = None,
) -> np.ndarray:
    """Positions of the genes detected in ``min_cells`` cells of every batch and variable in one batch.

    The union over batches of each batch's variable genes (see
    :class:`~sctransfer.models.bermuda.BERMUDAConfig`). ``X`` holds log-normalised values, or counts
    when ``totals`` (their rows' totals) and ``target_sum`` are given: each batch's rows are then
    normalised on their own, on the detected genes, as :func:`log_normalised` would normalise them.
    """
    import scanpy as sc
    from anndata import AnnData

    batches = np.asarray(batches)
    detected = np.ones(X.shape[1], dtype=bool)
    for b in pd.unique(batches):
        block = X[batches == b]  # counts and their log-normalised values are positive at the same places
        n_cells = np.asarray((block > 0).sum(axis=0)).ravel()
        detected &= n_cells >= min(min_cells, block.shape[0])
    if detected.sum() < 2:
        raise ValueError(
            f"fewer than two genes are detected in at least {min_cells} cells of every batch; the batches "
            "share too few genes to align (check that they use the same gene identifiers)."
        )
    genes = np.flatnonzero(detected)
    seurat_v2 = check_choice(gene_selection, "gene_selection", GENE_SELECTIONS) == "seurat_v2"
    if not seurat_v2 and (n_top_genes is None or genes.size <= n_top_genes):
        return genes
    union = np.zeros(genes.size, dtype=bool)
    for b in pd.unique(batches):
        rows = batches == b
        values = X[rows][:, genes]
        if totals is not None:
            values = _float32(log_normalize(values, target_sum=target_sum, copy=False, totals=totals[rows]))
        sub = AnnData(values)
        if seurat_v2:
            # Seurat v2 FindVariableGenes cut-offs: mean 0.1-8, log dispersion above 1
            sc.pp.highly_variable_genes(sub, flavor="seurat", min_mean=0.1, max_mean=8, min_disp=1)
        else:
            sc.pp.highly_variable_genes(sub, flavor="seurat", n_top_genes=min(n_top_genes, genes.size))
        union |= sub.var["highly_variable"].to_numpy()
    if union.sum() < 2:
        raise ValueError(
            "fewer than two highly variable genes were found; pass n_top_genes=None to use all genes."
        )
    return genes[union]


def preset_genes(X, batches, config: Any) -> tuple[np.ndarray, bool]:
    """Positions of the genes that ``config`` (a ``BERMUDAConfig``) selects, and whether ``X`` holds counts.

    Counts are normalised one batch at a time to select them, so no normalised copy of the whole matrix is
    made; :func:`log_normalised` with ``columns`` then gives the values on those genes.
    """
    check_preprocessing(config)
    options = {
        "gene_selection": config.gene_selection,
        "n_top_genes": config.n_top_genes,
        "min_cells": config.min_cells,
    }
    if looks_like_counts(X):
        return select_genes(X, batches, target_sum=config.target_sum, totals=row_totals(X), **options), True
    return select_genes(_float32(X), batches, **options), False


def preprocess(X, batches, config: Any) -> tuple[Any, np.ndarray, bool]:
    """Apply the preprocessing of ``config`` (a ``BERMUDAConfig``) to ``X`` (cells x genes, all genes).

    Returns
    -------
    The log-normalised values (float32) on the genes of :func:`preset_genes`, their positions, and whether
    ``X`` held counts (and so was normalised).
    """
    genes, _ = preset_genes(X, batches, config)
    values, counts = log_normalised(X, target_sum=config.target_sum, columns=genes)
    return values, genes, counts
