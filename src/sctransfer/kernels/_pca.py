"""Per-dataset standardisation and joint PCA without densifying sparse inputs.

Each dataset ``d`` is log-normalised, then standardised with its own per-feature mean and standard
deviation: ``Z_d = (X_d - mean_d) / std_d``. The joint PCA is the truncated SVD of the stacked ``Z``,
computed by a seeded randomised range finder that only ever multiplies the sparse ``X_d`` by thin dense
matrices, so memory stays O((n_cells + n_features) x n_comps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._utils._validation import ArrayLike


def log_normalize(X: ArrayLike, *, target_sum: float = 1e4) -> sp.csr_matrix | np.ndarray:
    """Scale every cell to ``target_sum`` total counts and apply ``log1p``; returns a new matrix.

    Cells with no counts stay all-zero.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64, copy=True)
        totals = np.asarray(X.sum(axis=1)).ravel()
        scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
        X.data *= np.repeat(scale, np.diff(X.indptr))
        np.log1p(X.data, out=X.data)
        return X
    X = np.array(X, dtype=np.float64, copy=True)
    totals = X.sum(axis=1)
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    X *= scale[:, None]
    np.log1p(X, out=X)
    return X


@dataclass
class _Block:
    X: sp.csr_matrix | np.ndarray
    mean: np.ndarray
    inv_std: np.ndarray


def _standardised_block(X: sp.csr_matrix | np.ndarray) -> _Block:
    n = X.shape[0]
    if sp.issparse(X):
        mean = np.asarray(X.mean(axis=0)).ravel()
        sq = np.asarray(X.multiply(X).mean(axis=0)).ravel()
    else:
        mean = X.mean(axis=0)
        sq = (X * X).mean(axis=0)
    var = np.maximum(sq - mean**2, 0.0) * (n / max(n - 1, 1))
    std = np.sqrt(var)
    inv_std = np.divide(1.0, std, out=np.zeros_like(std), where=std > 1e-12)
    return _Block(X, mean, inv_std)


def _matmul(block: _Block, M: np.ndarray) -> np.ndarray:
    """``Z @ M`` for a standardised block."""
    scaled = block.inv_std[:, None] * M
    return np.asarray(block.X @ scaled) - (block.mean @ scaled)[None, :]


def _rmatmul(block: _Block, Y: np.ndarray) -> np.ndarray:
    """``Z.T @ Y`` for a standardised block."""
    XtY = np.asarray(block.X.T @ Y)
    return block.inv_std[:, None] * (XtY - np.outer(block.mean, Y.sum(axis=0)))


@dataclass
class JointPCA:
    """Result of :func:`joint_pca`: one score matrix per dataset plus the shared loadings."""

    embeddings: list[np.ndarray]
    components: np.ndarray
    singular_values: np.ndarray
    explained_variance_ratio: np.ndarray


def joint_pca(
    blocks: list[ArrayLike], *, n_comps: int = 50, n_iter: int = 7, random_state: int = 0
) -> JointPCA:
    """Joint PCA of several datasets, each standardised per feature on its own.

    Parameters
    ----------
    blocks
        One ``cells x features`` matrix per dataset (dense or sparse, same features in the same order),
        already log-normalised.
    n_comps
        Number of principal components (lowered to what the data allow).
    n_iter
        Power iterations of the randomised range finder (7 is accurate to well below the kNN's noise).
    random_state
        Seed of the random test matrix; the same seed gives the same embedding.

    Returns
    -------
    :class:`JointPCA` with ``embeddings[d]`` of shape ``(n_cells_d, n_comps)``.
    """
    parts = [_standardised_block(sp.csr_matrix(b) if sp.issparse(b) else np.asarray(b)) for b in blocks]
    n_features = parts[0].X.shape[1]
    n_total = sum(p.X.shape[0] for p in parts)
    n_comps = int(max(1, min(n_comps, n_features - 1 if n_features > 1 else 1, n_total - 1)))
    width = min(n_comps + 10, n_features)
    rng = np.random.default_rng(random_state)
    omega = rng.standard_normal((n_features, width))

    def z_dot(M: np.ndarray) -> np.ndarray:
        return np.vstack([_matmul(p, M) for p in parts])

    def zt_dot(Y: np.ndarray) -> np.ndarray:
        out = np.zeros((n_features, Y.shape[1]))
        start = 0
        for p in parts:
            stop = start + p.X.shape[0]
            out += _rmatmul(p, Y[start:stop])
            start = stop
        return out

    Q, _ = np.linalg.qr(z_dot(omega))
    for _ in range(n_iter):
        W, _ = np.linalg.qr(zt_dot(Q))
        Q, _ = np.linalg.qr(z_dot(W))
    B = zt_dot(Q).T  # (width, n_features) = Q^T Z
    _, s, Vt = np.linalg.svd(B, full_matrices=False)
    Vt = Vt[:n_comps]
    s = s[:n_comps]
    # deterministic signs: the largest-magnitude loading of every component is positive
    signs = np.sign(Vt[np.arange(n_comps), np.abs(Vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    Vt *= signs[:, None]
    # each block is standardised with the unbiased variance: its total sum of squares is (n_d - 1) per feature
    total_ss = sum((p.X.shape[0] - 1) * float((p.inv_std > 0).sum()) for p in parts)
    embeddings = [_matmul(p, Vt.T) for p in parts]
    return JointPCA(
        embeddings=embeddings,
        components=Vt,
        singular_values=s,
        explained_variance_ratio=(s**2) / max(total_ss, 1e-12),
    )
