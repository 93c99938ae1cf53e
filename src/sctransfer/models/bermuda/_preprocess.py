"""BERMUDA's preprocessing: log-normalised values on the variable genes of every batch (no torch).

:class:`~sctransfer.models.BERMUDA` applies it to the values it is given, with the choices of its preset
(``target_sum``, ``gene_selection``, ``n_top_genes``, ``min_cells`` of
:class:`~sctransfer.models.bermuda.BERMUDAConfig`); :func:`sctransfer.tl.bermuda` applies the same
function first, to cluster every batch on the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..._utils._validation import (
    check_choice,
    check_int,
    check_values,
    is_in_memory,
    iter_rows,
    looks_like_counts,
    read_rows,
    take_columns,
)
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
    X,
    *,
    target_sum: float,
    copy: bool = True,
    columns: np.ndarray | None = None,
    counts: bool | None = None,
) -> tuple[Any, bool]:
    """:func:`~sctransfer.kernels._pca.log_normalize` counts (float32); other values unchanged (as float32).

    Returns the values and whether they were counts (and so normalised); ``counts`` says so when it is
    known (``None``: :func:`~sctransfer._utils._validation.looks_like_counts` decides). With ``copy=False``
    a float32 ``X`` (one just read from a backed file) is normalised in place rather than copied. With
    ``columns`` only those columns are returned, normalised by the totals of the full rows (the same values
    as normalising every column and then selecting, without a normalised copy of the whole matrix). A
    backed or dask ``X`` is read in row chunks, each normalised and cut to ``columns`` as it is read.
    """
    counts = looks_like_counts(X) if counts is None else counts
    if not is_in_memory(X):

        def prepare(block):  # a chunk just read: normalised in place
            return _float32(log_normalize(block, target_sum=target_sum, copy=False) if counts else block)

        return read_rows(X, columns, prepare=prepare), counts
    if columns is None or np.array_equal(columns, np.arange(X.shape[1])):
        values = log_normalize(X, target_sum=target_sum, copy=copy) if counts else X
        return _float32(values), counts
    totals = row_totals(X) if counts else None
    X = take_columns(X, columns)  # a new matrix: normalised in place
    if counts:
        X = log_normalize(X, target_sum=target_sum, copy=False, totals=totals)
    return _float32(X), counts


@dataclass
class BatchMoments:
    """Every batch's per-gene moments of ``expm1`` of the log-normalised values (see :func:`batch_moments`).

    Attributes
    ----------
    n_cells
        Cells of every batch (``n_batches``).
    detected, sums, squares
        ``n_batches x n_genes``: the cells with a value above 0, and the sums of ``expm1`` of the values
        and of its squares (float64).
    counts
        Whether the values were counts (and so log-normalised first).
    """

    n_cells: np.ndarray
    detected: np.ndarray
    sums: np.ndarray
    squares: np.ndarray
    counts: bool


#: values per block of a dense chunk whose float64 temporaries :func:`batch_moments` makes at once
_MOMENT_VALUES = 1 << 22


def _add_moments(block, codes: np.ndarray, counts: bool, target_sum: float, moments: BatchMoments) -> None:
    """Add the rows of ``block`` (checked; batches ``codes``) to the per-batch sums of ``moments``."""
    m = block.shape[0]
    values = _float32(log_normalize(block, target_sum=target_sum) if counts else block)
    # scanpy's flavour="seurat" takes expm1 of the float32 values, then float64 moments
    if sp.issparse(values):
        values = sp.csr_matrix(values)
        values = sp.csr_matrix(  # a new matrix on the same structure: the block is left as it is
            (np.expm1(values.data).astype(np.float64), values.indices, values.indptr), shape=values.shape
        )
        squared = values.multiply(values)
        positive = (block > 0).astype(np.float64)
    else:
        values = np.expm1(values).astype(np.float64)
        squared = values * values
        positive = (np.asarray(block) > 0).astype(np.float64)
    member = sp.csr_matrix((np.ones(m), (codes, np.arange(m))), shape=(len(moments.n_cells), m))
    for total, part in ((moments.sums, values), (moments.squares, squared), (moments.detected, positive)):
        product = member @ part  # every batch's column sums at once
        total += product.toarray() if sp.issparse(product) else product


def batch_moments(
    X, batch_codes: np.ndarray, n_batches: int, *, target_sum: float, name: str = "the matrix"
) -> BatchMoments:
    """One pass over the rows of ``X`` (in memory, backed or dask) for :func:`select_genes`.

    The rows are read, checked (:func:`~sctransfer._utils._validation.check_values`) and, for counts,
    log-normalised (float32, every cell on its own total) a chunk at a time, so neither the matrix nor a
    normalised copy of it is held; a dense chunk is worked on in blocks of rows. ``batch_codes`` gives
    every cell's batch (``0 .. n_batches - 1``). The variance comes from the float64 sums of the values and
    their squares, so a gene constant within a batch has variance 0 there (no dispersion), as scanpy finds
    for sparse values.
    """
    batch_codes = np.asarray(batch_codes, dtype=np.int64)
    n_genes = int(X.shape[1])
    n_cells = np.bincount(batch_codes, minlength=n_batches)
    moments = BatchMoments(
        n_cells, np.zeros((n_batches, n_genes)), np.zeros((n_batches, n_genes)), np.zeros((n_batches, n_genes)),
        counts=False,
    )  # fmt: skip
    counts: bool | None = None
    rows = max(1, _MOMENT_VALUES // max(n_genes, 1))
    for start, block in iter_rows(X, name=name, split=True):
        check_values(block, name)
        if counts is None:  # after the first chunk's check: a matrix of strings gets its own message
            counts = looks_like_counts(X)
        codes = batch_codes[start : start + block.shape[0]]
        step = block.shape[0] if sp.issparse(block) else rows
        for lo in range(0, block.shape[0], step):
            _add_moments(block[lo : lo + step], codes[lo : lo + step], counts, target_sum, moments)
    moments.detected = moments.detected.astype(np.int64)
    moments.counts = bool(counts)
    return moments


def seurat_dispersion(mean: np.ndarray, var: np.ndarray, *, n_top_genes: int | None) -> np.ndarray:
    """Highly variable genes by Seurat's dispersion method, from each gene's mean and variance.

    ``mean`` and ``var`` (unbiased) are those of ``expm1`` of log-normalised values. The method of
    ``scanpy.pp.highly_variable_genes(flavor="seurat")``: the log dispersion ``log(var / mean)`` is
    z-scored within 20 equal-width bins of ``log1p(mean)`` (a bin of one gene gets 1). With
    ``n_top_genes`` the genes whose normalised dispersion reaches the ``n_top_genes``-th highest are kept;
    without, Seurat v2's cut-offs (``0.1 < log1p(mean) < 8``, normalised dispersion above 1).
    """
    mean = np.where(mean == 0, 1e-12, mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        dispersion = var / mean
        dispersion[dispersion == 0] = np.nan
        dispersion = np.log(dispersion)
    log_mean = np.log1p(mean)
    frame = pd.DataFrame({"means": log_mean, "dispersions": dispersion})
    frame["mean_bin"] = pd.cut(frame["means"], bins=20)
    stats = frame.groupby("mean_bin", observed=True)["dispersions"].agg(avg="mean", dev="std")
    single = stats["dev"].isnull()  # one gene in the bin: normalised dispersion 1
    stats.loc[single, "dev"] = stats.loc[single, "avg"]
    stats.loc[single, "avg"] = 0
    stats = stats.loc[frame["mean_bin"]]
    norm = (dispersion - stats["avg"].to_numpy()) / stats["dev"].to_numpy()
    if n_top_genes is None:
        norm = np.nan_to_num(norm)
        return (log_mean > 0.1) & (log_mean < 8) & (norm > 1)
    ranked = np.sort(norm[~np.isnan(norm)])[::-1]
    if ranked.size == 0:
        return np.zeros(norm.size, dtype=bool)
    cut_off = ranked[min(n_top_genes, ranked.size) - 1]
    return np.nan_to_num(norm, nan=-np.inf) >= cut_off


def select_genes(
    moments: BatchMoments, *, gene_selection: str, n_top_genes: int | None, min_cells: int
) -> np.ndarray:
    """Positions of the genes detected in ``min_cells`` cells of every batch and variable in one batch.

    The union over batches of each batch's variable genes (see
    :class:`~sctransfer.models.bermuda.BERMUDAConfig` and :func:`seurat_dispersion`), from the moments of
    :func:`batch_moments`; a batch's variable genes are chosen among the genes detected in every batch.
    """
    needed = np.minimum(min_cells, moments.n_cells)[:, None]
    detected = (moments.detected >= needed).all(axis=0)
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
    for b, n in enumerate(moments.n_cells):
        if n == 0:
            continue
        mean = moments.sums[b, genes] / n
        var = moments.squares[b, genes] / n - mean**2
        if n > 1:
            var *= n / (n - 1)
        union |= seurat_dispersion(mean, var, n_top_genes=None if seurat_v2 else n_top_genes)
    if union.sum() < 2:
        raise ValueError(
            "fewer than two highly variable genes were found; pass n_top_genes=None to use all genes."
        )
    return genes[union]


def preset_genes(
    X, batch_codes: np.ndarray, config: Any, *, name: str = "the matrix"
) -> tuple[np.ndarray, bool]:
    """Positions of the genes that ``config`` (a ``BERMUDAConfig``) selects, and whether ``X`` holds counts.

    ``X`` (cells x genes, in memory, backed or dask) is read once, a chunk of rows at a time, and its values
    are checked; ``batch_codes`` gives every cell's batch as ``0 .. n_batches - 1``. :func:`log_normalised`
    with ``columns`` then gives the values on those genes.
    """
    check_preprocessing(config)
    batch_codes = np.asarray(batch_codes, dtype=np.int64)
    n_batches = int(batch_codes.max()) + 1 if batch_codes.size else 0
    moments = batch_moments(X, batch_codes, n_batches, target_sum=config.target_sum, name=name)
    genes = select_genes(
        moments,
        gene_selection=config.gene_selection,
        n_top_genes=config.n_top_genes,
        min_cells=config.min_cells,
    )
    return genes, moments.counts


def preprocess(X, batches, config: Any, *, name: str = "the matrix") -> tuple[Any, np.ndarray, bool]:
    """Apply the preprocessing of ``config`` (a ``BERMUDAConfig``) to ``X`` (cells x genes, all genes).

    Returns
    -------
    The log-normalised values (float32) on the genes of :func:`preset_genes`, their positions, and whether
    ``X`` held counts (and so was normalised).
    """
    genes, counts = preset_genes(X, batches, config, name=name)
    values, counts = log_normalised(X, target_sum=config.target_sum, columns=genes, counts=counts)
    return values, genes, counts
