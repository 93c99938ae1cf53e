"""Batch-alignment metrics on embeddings (arrays in, numbers out).

BERMUDA's three scores, as its evaluation defines them:

- :func:`divergence_score` (lower is better): the mean k-NN estimate of the KL divergence between two
  batches' cells of their shared cell types, in a 2-d UMAP, both directions, over batch pairs;
- :func:`entropy_score` (lower is better): the batch entropy among the 100 nearest neighbours of cells
  whose type exists in only one batch of a pair (``-1`` when every type is shared);
- :func:`silhouette_score` (higher is better): the cell-type silhouette with cosine distance.

And two general scores on the embedding itself:

- :func:`batch_mixing_entropy` (higher is better): the batch entropy among each cell's neighbours,
  normalised by its maximum so that 1 is perfect mixing;
- :func:`knn_purity` (higher is better): the fraction of each cell's neighbours that share its type.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..kernels._knn import knn

__all__ = [
    "alignment_umap",
    "batch_mixing_entropy",
    "divergence_score",
    "entropy_score",
    "knn_kl_divergence",
    "knn_purity",
    "silhouette_score",
]


def _labels(values: Sequence | np.ndarray, name: str, n: int) -> np.ndarray:
    arr = np.asarray(pd.Series(values).astype(str))
    if arr.shape != (n,):
        raise ValueError(f"{name} must give one label per cell ({n}), got {arr.shape[0]}.")
    return arr


def _embedding(X, name: str = "embedding") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"{name} must be a cells x dimensions array with at least two cells, got {X.shape}.")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return X


def alignment_umap(embedding, *, random_state: int = 0) -> np.ndarray:
    """The 2-d UMAP that BERMUDA's divergence and entropy scores use.

    PCA to 50 dimensions first when the input has more, then UMAP with 30 neighbours, ``min_dist=0.1``
    and the cosine metric.
    """
    import umap
    from sklearn.decomposition import PCA

    X = _embedding(embedding)
    if X.shape[1] > 50:
        X = PCA(n_components=50, random_state=random_state).fit_transform(X)
    reducer = umap.UMAP(n_neighbors=30, min_dist=0.1, metric="cosine", random_state=random_state)
    return reducer.fit_transform(X)


def knn_kl_divergence(X, Y, *, k: int = 30) -> float:
    """k-NN estimate of ``KL(P_X || P_Y)`` from samples (Wang, Kulkarni and Verdú).

    ``D = d / n * sum_i log(nu_k(x_i) / rho_k(x_i)) + log(m / (n - 1))``, where ``rho_k`` is the distance
    to the k-th neighbour of ``x_i`` among the other rows of ``X`` and ``nu_k`` to the k-th neighbour in
    ``Y``.
    """
    X, Y = _embedding(X, "X"), _embedding(Y, "Y")
    n, d = X.shape
    m = Y.shape[0]
    if n <= k or m < k:
        raise ValueError(
            f"the estimator needs more than k={k} rows in X and at least k in Y, got {n} and {m}."
        )
    rho = cKDTree(X).query(X, k=k + 1)[0][:, -1]
    nu = cKDTree(Y).query(X, k=k)[0]
    nu = nu[:, -1] if nu.ndim == 2 else nu
    with np.errstate(divide="ignore"):
        ratio = np.log(nu) - np.log(rho)
    finite = np.isfinite(ratio)
    return float(d / n * ratio[finite].sum() + np.log(m / (n - 1)))


def divergence_score(
    umap_2d, batches: Sequence, cell_types: Sequence, *, k: int = 30, min_cells: int = 30
) -> float:
    """BERMUDA's divergence score (lower is better): how well shared cell types mix across batches.

    For every pair of batches, the cells of the types present in both are compared in both directions
    with :func:`knn_kl_divergence` (each clipped at 0); the score is the mean over pairs of the two
    directions' average. Pairs where either side has fewer than ``min_cells`` such cells are skipped.

    Returns
    -------
    The score, or ``nan`` when no pair qualifies.
    """
    X = _embedding(umap_2d, "umap_2d")
    b = _labels(batches, "batches", X.shape[0])
    t = _labels(cell_types, "cell_types", X.shape[0])
    forward, backward = [], []
    for p, q in combinations(np.unique(b), 2):
        shared = np.intersect1d(t[b == p], t[b == q])
        xp = X[(b == p) & np.isin(t, shared)]
        xq = X[(b == q) & np.isin(t, shared)]
        if xp.shape[0] < min_cells or xq.shape[0] < min_cells:
            continue
        forward.append(max(knn_kl_divergence(xp, xq, k=k), 0.0))
        backward.append(max(knn_kl_divergence(xq, xp, k=k), 0.0))
    if not forward:
        return float("nan")
    return float((np.mean(forward) + np.mean(backward)) / 2.0)


def entropy_score(umap_2d, batches: Sequence, cell_types: Sequence, *, k: int = 100) -> float:
    """BERMUDA's entropy score (lower is better): batch-specific cell types should stay unmixed.

    For every pair of batches, the cells whose type occurs in only one of the two get the Shannon entropy
    (natural log) of the batch labels of their ``k`` nearest neighbours (Euclidean, among the pair's
    cells, the cell itself included); the score averages over those cells, then over pairs.

    Returns
    -------
    The score, or ``-1`` when every cell type is shared by every pair of batches.
    """
    X = _embedding(umap_2d, "umap_2d")
    b = _labels(batches, "batches", X.shape[0])
    t = _labels(cell_types, "cell_types", X.shape[0])
    scores = []
    for p, q in combinations(np.unique(b), 2):
        in_pair = (b == p) | (b == q)
        shared = np.intersect1d(t[b == p], t[b == q])
        specific = in_pair & ~np.isin(t, shared)
        if not specific.any():
            continue
        pair_rows = np.flatnonzero(in_pair)
        kk = min(k, pair_rows.size)
        _, idx = cKDTree(X[pair_rows]).query(X[specific], k=kk)
        idx = idx.reshape(-1, kk)
        from_p = (b[pair_rows][idx] == p).mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -(np.nan_to_num(from_p * np.log(from_p)) + np.nan_to_num((1 - from_p) * np.log(1 - from_p)))
        scores.append(float(ent.mean()))
    return float(np.mean(scores)) if scores else -1.0


def silhouette_score(
    embedding, cell_types: Sequence, *, metric: str = "cosine", n_comps: int | None = 20
) -> float:
    """Mean cell-type silhouette (higher is better), BERMUDA's third score.

    The embedding is reduced to ``n_comps`` principal components first when it has more dimensions
    (``None`` never reduces); distances are cosine by default.
    """
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_samples

    X = _embedding(embedding)
    t = _labels(cell_types, "cell_types", X.shape[0])
    if np.unique(t).size < 2:
        raise ValueError("the silhouette needs at least two cell types.")
    if n_comps is not None and X.shape[1] > n_comps:
        X = PCA(n_components=n_comps, random_state=0).fit_transform(X)
    return float(silhouette_samples(X, t, metric=metric).mean())


def _neighbours(X: np.ndarray, n_neighbors: int) -> np.ndarray:
    if not 1 <= n_neighbors < X.shape[0]:
        raise ValueError(
            f"n_neighbors must be between 1 and n_cells - 1 ({X.shape[0] - 1}), got {n_neighbors}."
        )
    idx = knn(X, X, k=n_neighbors + 1, metric="euclidean").indices
    # drop each cell itself (ties may put another identical cell first: drop the first match of self)
    rows = np.arange(X.shape[0])[:, None]
    is_self = idx == rows
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), n_neighbors)
    keep = np.ones_like(idx, dtype=bool)
    keep[np.arange(X.shape[0]), drop] = False
    return idx[keep].reshape(X.shape[0], n_neighbors)


def batch_mixing_entropy(embedding, batches: Sequence, *, n_neighbors: int = 30) -> float:
    """Mean entropy of the batch labels among each cell's neighbours, over its maximum (higher is better).

    Each cell's ``n_neighbors`` nearest other cells (Euclidean) give a distribution over the batches;
    its Shannon entropy is divided by ``log(n_batches)``, so 0 means the neighbours all come from one batch
    and 1 that every batch is equally represented.
    """
    X = _embedding(embedding)
    b = _labels(batches, "batches", X.shape[0])
    levels, codes = np.unique(b, return_inverse=True)
    if levels.size < 2:
        raise ValueError("batch mixing needs at least two batches.")
    idx = _neighbours(X, n_neighbors)
    counts = np.zeros((X.shape[0], levels.size))
    np.add.at(counts, (np.repeat(np.arange(X.shape[0]), n_neighbors), codes[idx].ravel()), 1.0)
    p = counts / n_neighbors
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
    return float(ent.mean() / np.log(levels.size))


def knn_purity(embedding, cell_types: Sequence, *, n_neighbors: int = 30) -> float:
    """Mean fraction of each cell's ``n_neighbors`` nearest other cells that share its type (higher is better)."""
    X = _embedding(embedding)
    t = _labels(cell_types, "cell_types", X.shape[0])
    idx = _neighbours(X, n_neighbors)
    return float((t[idx] == t[:, None]).mean())
