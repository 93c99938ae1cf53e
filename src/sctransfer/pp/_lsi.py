"""``sct.pp.lsi``: latent semantic indexing of a peak (or any count) matrix, the usual ATAC representation."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .._utils._anndata import check_key_name, copy_of, write_result
from .._utils._docs import inject_docs
from .._utils._logging import logger
from .._utils._validation import (
    CHUNK_ROWS,
    CSRRows,
    check_int,
    check_nonempty,
    check_values,
    check_writable,
    get_matrix,
    is_in_memory,
    iter_rows,
)

__all__ = ["lsi"]


@inject_docs()
def lsi(
    adata: AnnData,
    *,
    n_comps: int = 30,
    layer: str | None = None,
    drop_first: bool = True,
    key_added: str = "lsi",
    random_state: int = 0,
    copy: bool = False,
) -> AnnData | None:
    """Latent semantic indexing: TF-IDF of the binarised peaks, then a truncated SVD.

    The representation of scATAC-seq cells that Signac and ArchR use for their neighbour graphs. Every
    peak is counted as open (1) or closed (0) in each cell; the term frequency divides by the cell's
    number of open peaks, the inverse document frequency is ``n_cells / n_cells_with_the_peak``, and the
    matrix ``log1p(10,000 x TF x IDF)`` is reduced by a randomised truncated SVD. The first component
    follows sequencing depth in most data and is dropped with ``drop_first=True``.

    Pass the result to :func:`sctransfer.tl.label_transfer` as ``query_rep`` so that the query's own
    peaks shape the graph over which the transferred labels are smoothed.

    Parameters
    ----------
    adata
        Cells x peaks, counts or binary values (non-negative) in ``.X`` or ``layer``.
    n_comps
        Components kept (after dropping the first with ``drop_first``).
    layer
        Layer holding the peaks; ``None`` uses ``.X``.
    drop_first
        Drop the first SVD component (correlated with depth).
    key_added
        The components go to ``.obsm[f"X_{{key_added}}"]`` and the parameters to ``.uns[key_added]``.
    {random_state}
    copy
        If ``False`` (default) write into ``adata`` and return ``None``; if ``True`` return an annotated copy.

    Returns
    -------
    ``None``, or with ``copy=True`` the annotated copy. Sets ``.obsm[f"X_{{key_added}}"]`` (cells x
    ``n_comps``, float32) and ``.uns[key_added]`` (``params``, ``singular_values``, ``seconds``,
    ``version``, ``keys``).

    Examples
    --------
    >>> import scipy.sparse as sp, anndata as ad
    >>> import sctransfer as sct
    >>> peaks = ad.AnnData(sp.random(200, 500, density=0.1, format="csr", random_state=0))
    >>> sct.pp.lsi(peaks, n_comps=10)
    >>> peaks.obsm["X_lsi"].shape
    (200, 10)
    """
    start = time.perf_counter()
    check_nonempty(adata, "adata")
    check_writable(adata, "adata", copy=copy)
    check_key_name(key_added)
    n_comps = check_int(n_comps, "n_comps")
    n_total = n_comps + int(bool(drop_first))
    if n_total >= min(adata.n_obs, adata.n_vars):
        raise ValueError(
            f"n_comps={n_comps} needs more than {n_total} cells and peaks, but adata has {adata.n_obs} cells "
            f"and {adata.n_vars} peaks; lower n_comps."
        )
    name = "adata" if layer is None else f"layers[{layer!r}]"
    X = get_matrix(adata, layer, "adata")
    if is_in_memory(X):
        check_values(X, name, nonnegative=True)
        binary = _binary(X)
    else:  # a backed or dask matrix: read in row chunks, keeping only the binarised CSR of each chunk
        logger.info(
            "lsi: reading %s (%d x %d) in chunks of %d rows", name, X.shape[0], X.shape[1], CHUNK_ROWS
        )
        rows = CSRRows(X.shape[0], X.shape[1])
        for _, block in iter_rows(X, name=name):
            check_values(block, name, nonnegative=True)
            rows.append(_binary(block))
        binary = rows.finish()
    embedding, singular_values = _lsi(binary, n_total, random_state=random_state)
    if drop_first:
        embedding, singular_values = embedding[:, 1:], singular_values[1:]
    target = copy_of(adata) if copy else adata
    write_result(
        target, key_added, start=start, obsm={f"X_{key_added}": embedding.astype(np.float32)},
        params={"n_comps": n_comps, "layer": layer, "drop_first": bool(drop_first), "random_state": random_state,
                "key_added": key_added},
        uns={"singular_values": singular_values},
    )  # fmt: skip
    logger.info("lsi: %d components of %d cells x %d peaks", n_comps, adata.n_obs, adata.n_vars)
    return target if copy else None


def _binary(X: Any) -> sp.csr_matrix:
    """A new float32 CSR matrix with 1 where ``X`` is non-zero (its values are never copied)."""
    if not sp.issparse(X):
        return sp.csr_matrix(np.asarray(X) != 0, dtype=np.float32)
    X = sp.csr_matrix(X)
    if not X.has_canonical_format:  # a repeated (cell, peak) entry is one open peak
        X = X.copy()
        X.sum_duplicates()
    binary = sp.csr_matrix(
        ((X.data != 0).astype(np.float32), X.indices.copy(), X.indptr.copy()), shape=X.shape
    )
    binary.eliminate_zeros()
    return binary


def _tfidf(binary: sp.csr_matrix) -> sp.csr_matrix:
    """``log1p(1e4 * tf * idf)`` of a binary CSR matrix, in float32 (built in place of ``binary``'s values).

    The weights of each row chunk are computed in float64 and rounded once to float32, so no float64
    array of every stored value is made.
    """
    open_per_cell = np.diff(binary.indptr).astype(np.float64)
    cells_per_peak = np.bincount(binary.indices, minlength=binary.shape[1]).astype(np.float64)
    tf = np.divide(1e4, open_per_cell, out=np.zeros_like(open_per_cell), where=open_per_cell > 0)
    idf = np.divide(
        binary.shape[0], cells_per_peak, out=np.zeros_like(cells_per_peak), where=cells_per_peak > 0
    )
    data = binary.data
    for start in range(0, binary.shape[0], CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, binary.shape[0])
        a, b = binary.indptr[start], binary.indptr[stop]
        counts = np.diff(binary.indptr[start : stop + 1])
        data[a:b] = np.log1p(np.repeat(tf[start:stop], counts) * idf[binary.indices[a:b]])
    return binary


def _lsi(binary: sp.csr_matrix, n_comps: int, *, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """TF-IDF of the binarised matrix (from :func:`_binary`, overwritten) and its truncated SVD: ``(U * S, S)``.

    The SVD runs in float32, the dtype of the TF-IDF matrix.
    """
    from sklearn.utils.extmath import randomized_svd
    from threadpoolctl import threadpool_limits

    tfidf = _tfidf(binary)
    # one BLAS thread: the QR steps of the randomised SVD are thin, and nested pools slow them down
    with threadpool_limits(limits=1, user_api="blas"):
        U, S, _ = randomized_svd(tfidf, n_comps, random_state=random_state)
    return U * S, S
