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
        blocks = []
        for _, block in iter_rows(X, name=name):
            check_values(block, name, nonnegative=True)
            blocks.append(_binary(block))
        binary = sp.vstack(blocks, format="csr")
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
    """A new float64 CSR matrix with 1 where ``X`` is non-zero."""
    binary = sp.csr_matrix(X, dtype=np.float64, copy=True)
    binary.eliminate_zeros()
    binary.data[:] = 1.0
    return binary


def _lsi(binary: sp.csr_matrix, n_comps: int, *, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """TF-IDF of the binarised matrix (from :func:`_binary`) and its truncated SVD: ``(U * S, S)``."""
    from sklearn.utils.extmath import randomized_svd
    from threadpoolctl import threadpool_limits

    open_per_cell = np.asarray(binary.sum(axis=1)).ravel()
    cells_per_peak = np.asarray(binary.sum(axis=0)).ravel()
    tf = sp.diags(np.divide(1.0, open_per_cell, out=np.zeros_like(open_per_cell), where=open_per_cell > 0))
    idf = np.divide(
        binary.shape[0], cells_per_peak, out=np.zeros_like(cells_per_peak), where=cells_per_peak > 0
    )
    tfidf = sp.csr_matrix(tf @ binary @ sp.diags(idf))
    tfidf.data = np.log1p(tfidf.data * 1e4)
    # one BLAS thread: the QR steps of the randomised SVD are thin, and nested pools slow them down
    with threadpool_limits(limits=1, user_api="blas"):
        U, S, _ = randomized_svd(tfidf, n_comps, random_state=random_state)
    return U * S, S
