"""Harmony-style correction of an embedding, and the mapping of new cells.

Soft clusters that favour batch diversity, then a linear correction per cluster (Korsunsky et al.,
Nature Methods 2019). Every soft cluster's cells lose the batch effect they share:

1. cells are L2-normalised (cosine geometry) and softly assigned to ``K`` centroids, with a penalty on
   clusters whose batch mix departs from the global one (``theta``), by blocks of cells;
2. every cluster fits a ridge regression of the embedding on the batch indicators, weighted by its
   soft memberships, and removes the batch terms (the intercept stays);
3. 1 and 2 repeat until the objective stops falling.

The centroids and the per-cluster batch terms are kept (:class:`HarmonyFit`), so cells of the same batches
seen later are corrected with the same terms (:func:`harmony_transform`): each new cell takes its soft
memberships from the centroids (no diversity term, which needs the whole batch) and the matching mix of
the correction terms.

Everything is numpy on dense ``n_cells x n_dims`` embeddings (a few dozen dimensions); the costly products
are ``n_cells x K x n_dims``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HarmonyFit", "harmony", "harmony_transform"]


@dataclass
class HarmonyFit:
    """The result of :func:`harmony`: the corrected embedding and what corrects new cells.

    Attributes
    ----------
    corrected
        ``n_cells x n_dims`` corrected embedding.
    centroids
        ``K x n_dims`` unit-length cluster centroids.
    terms
        ``K x n_batches x n_dims`` batch terms of every cluster (what a cell of batch ``b`` with full
        membership in cluster ``k`` loses).
    sigma
        Softness of the cluster memberships.
    n_iter
        Rounds of clustering and correction run.
    """

    corrected: np.ndarray
    centroids: np.ndarray
    terms: np.ndarray
    sigma: float
    n_iter: int


def _unit_rows(M: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(M, axis=1, keepdims=True)
    return M / np.where(norms > 0, norms, 1.0)


def _distances(Zc: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Cosine distances ``2 (1 - z.y)`` of unit rows, computed in the product's array.

    ``2 - 2 z.y`` rounds as ``2 (1 - z.y)`` does (doubling is exact) without two more ``n_cells x K``
    temporaries, whose fresh pages cost more than the arithmetic.
    """
    dist = Zc @ centroids.T
    dist *= -2.0
    dist += 2.0
    return dist


def _memberships(Zc: np.ndarray, centroids: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances ``2 (1 - z.y)`` and the soft memberships ``exp(-d / sigma)`` (rows sum to 1).

    The memberships are computed in their own array (the logits and their exponentials were two more
    ``n_cells x K`` arrays).
    """
    dist = _distances(Zc, centroids)
    R = np.negative(dist)
    R /= sigma
    R -= R.max(axis=1, keepdims=True)
    np.exp(R, out=R)
    R /= R.sum(axis=1, keepdims=True)
    return dist, R


def _batch_sums(M: np.ndarray, codes: np.ndarray, n_batches: int) -> np.ndarray:
    """``n_batches x M.shape[1]``: the sums of the rows of ``M`` in every batch."""
    out = np.zeros((n_batches, M.shape[1]))
    for b in range(n_batches):
        out[b] = M[codes == b].sum(axis=0)
    return out


def _corrected(Z: np.ndarray, R: np.ndarray, masks: list[np.ndarray], terms: np.ndarray) -> np.ndarray:
    """``Z`` less every cell's mix of its batch's terms: ``z - sum_k R[., k] terms[k, b]``."""
    out = Z.copy()
    for b, m in enumerate(masks):
        out[m] -= R[m] @ terms[:, b, :]
    return out


#: cells whose terms of the objective are summed at a time (an ``n_cells x K`` buffer of the logarithms
#: was as large as the memberships)
_OBJECTIVE_ROWS = 65_536
#: cells per centroid that the k-means start of :func:`harmony` sees at most
_KMEANS_CELLS_PER_CENTROID = 50


def _kmeans_centroids(Zc: np.ndarray, k: int, random_state: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(random_state)
    # k-means on at most 50 cells per centroid: the centroids only start the soft clustering (for 100
    # centroids, all the rows of a random 17,000 x 20 matrix took 8 times as long as 5,000 of them)
    rows = rng.choice(Zc.shape[0], size=min(Zc.shape[0], _KMEANS_CELLS_PER_CENTROID * k), replace=False)
    rows.sort()
    fit = KMeans(n_clusters=k, n_init=1, max_iter=25, random_state=random_state).fit(Zc[rows])
    return _unit_rows(fit.cluster_centers_)


def harmony(
    Z: np.ndarray,
    batch_codes: np.ndarray,
    *,
    n_clusters: int | None = None,
    theta: float = 2.0,
    sigma: float = 0.1,
    ridge: float | None = None,
    ridge_share: float = 0.2,
    max_iter: int = 10,
    max_iter_cluster: int = 4,
    block_fraction: float = 0.05,
    tol: float = 1e-2,
    tol_cluster: float = 1e-3,
    random_state: int = 0,
) -> HarmonyFit:
    """Correct the embedding ``Z`` for the batches ``batch_codes`` (``0..B-1``).

    Parameters
    ----------
    Z
        ``n_cells x n_dims`` embedding (a PCA).
    batch_codes
        Batch of every cell, as integers ``0..B-1``.
    n_clusters
        Soft clusters; ``None``: ``min(100, n_cells / 30)``.
    theta
        Strength of the batch-diversity penalty (0: plain soft k-means).
    sigma
        Softness of the memberships.
    ridge
        Ridge penalty of the batch terms of the per-cluster regressions; ``None`` sets it per cluster and
        batch to ``ridge_share`` times the cluster's expected cells of the batch, so small clusters are
        corrected less.
    ridge_share
        See ``ridge``.
    max_iter, max_iter_cluster
        Rounds of clustering and correction, and clustering iterations per round.
    block_fraction
        Share of the cells whose memberships are updated together.
    tol, tol_cluster
        Relative decrease of the objective under which the rounds, and a round's clustering, stop.
    random_state
        Seed of the initial centroids and of the block order.

    Returns
    -------
    :class:`HarmonyFit`.
    """
    Z = np.asarray(Z, dtype=np.float64)
    codes = np.asarray(batch_codes, dtype=np.int64)
    n, _ = Z.shape
    n_batches = int(codes.max()) + 1
    k = int(min(100, max(2, round(n / 30)))) if n_clusters is None else int(n_clusters)
    k = max(1, min(k, n))
    rng = np.random.default_rng(random_state)
    share = np.bincount(codes, minlength=n_batches) / n  # the global batch mix

    Zc = _unit_rows(Z)
    centroids = _kmeans_centroids(Zc, k, random_state)
    dist, R = _memberships(Zc, centroids, sigma)
    # expected and observed cells of every batch in every cluster
    E = np.outer(R.sum(axis=0), share)
    Obs = _batch_sums(R, codes, n_batches).T

    # the objective's one buffer of rows (fresh temporaries tripled its time)
    log_R = np.empty((min(n, _OBJECTIVE_ROWS), k))

    def objective() -> float:
        entropy = cost = 0.0
        for start in range(0, n, _OBJECTIVE_ROWS):
            Rb = R[start : start + _OBJECTIVE_ROWS]
            log_b = log_R[: Rb.shape[0]]
            np.log(np.maximum(Rb, 1e-300, out=log_b), out=log_b)
            entropy += float(np.vdot(Rb, log_b))
            cost += float(np.vdot(Rb, dist[start : start + _OBJECTIVE_ROWS]))
        # sum_i sum_k R[i, k] theta log(...)[k, batch of i] over the cells is this sum over clusters and
        # batches (Obs holds each batch's sums of R), without an n_cells x K gather
        diversity = float(np.sum(Obs * (theta * np.log((Obs + 1.0) / (E + 1.0)))))
        return cost + sigma * entropy + sigma * diversity

    block = max(1, int(np.ceil(n * block_fraction)))
    masks = [codes == b for b in range(n_batches)]
    by_batch = [Z[m] for m in masks]
    corrected = Z.copy()
    terms = np.zeros((k, n_batches, Z.shape[1]))
    previous = objective()
    rounds = 0
    while rounds < max_iter:
        rounds += 1
        # ---- clustering: centroids, then memberships block by block with the diversity penalty
        last = previous
        for _ in range(max_iter_cluster):
            centroids = _unit_rows(R.T @ Zc)
            dist = _distances(Zc, centroids)
            order = rng.permutation(n)
            for start in range(0, n, block):
                rows = order[start : start + block]
                c = codes[rows]
                E -= np.outer(R[rows].sum(axis=0), share)
                Obs -= _batch_sums(R[rows], c, n_batches).T
                logits = -dist[rows] / sigma
                logits += theta * np.log((E + 1.0) / (Obs + 1.0))[:, c].T
                logits -= logits.max(axis=1, keepdims=True)
                Rb = np.exp(logits)
                Rb /= Rb.sum(axis=1, keepdims=True)
                R[rows] = Rb
                E += np.outer(Rb.sum(axis=0), share)
                Obs += _batch_sums(Rb, c, n_batches).T
            current = objective()
            converged = abs(last - current) < tol_cluster * abs(last)
            last = current
            if converged:
                break
        # ---- correction: per cluster, a ridge regression on the batch indicators (intercept unpenalised);
        # the weighted counts and sums of every cluster and batch come from one product per batch
        counts = np.stack([R[m].sum(axis=0) for m in masks], axis=1)  # K x B
        sums = np.stack([R[m].T @ Zb for m, Zb in zip(masks, by_batch, strict=True)], axis=1)  # K x B x d
        for j in range(k):
            gram = np.zeros((n_batches + 1, n_batches + 1))
            gram[0, 0] = counts[j].sum()
            gram[0, 1:] = gram[1:, 0] = counts[j]
            gram[1:, 1:] = np.diag(counts[j] + (ridge_share * E[j] if ridge is None else ridge))
            rhs = np.vstack([sums[j].sum(axis=0), sums[j]])
            beta = np.linalg.lstsq(gram, rhs, rcond=None)[0]  # a ridge of 0 leaves the design singular
            terms[j] = beta[1:]
        corrected = _corrected(Z, R, masks, terms)
        Zc = _unit_rows(corrected)
        dist = _distances(Zc, centroids)
        current = objective()
        done = abs(previous - current) < tol * abs(previous)
        previous = current
        if done:
            break
    return HarmonyFit(
        corrected=corrected, centroids=centroids, terms=terms, sigma=float(sigma), n_iter=rounds
    )


def harmony_transform(
    Z: np.ndarray, batch_codes: np.ndarray, centroids: np.ndarray, terms: np.ndarray, sigma: float
) -> np.ndarray:
    """Correct new cells of the fitted batches with a fit's centroids and batch terms."""
    Z = np.asarray(Z, dtype=np.float64)
    codes = np.asarray(batch_codes, dtype=np.int64)
    _, R = _memberships(_unit_rows(Z), centroids, sigma)
    return _corrected(Z, R, [codes == b for b in range(terms.shape[1])], terms)
