"""MetaNeighbor speed: the exact version on 10,000 cells and the fast version on 100,000 cells.

Data come from a seeded generator (sparse log-normalised counts with cluster-specific gene programmes
and a batch shift), so any size can be timed:

- exact: 10,000 cells x 1,000 genes, 2 batches x 10 clusters; next to it, in the same run, a plain
  NumPy/SciPy implementation of the same algorithm (``scipy.stats.rankdata`` on the whole network), which
  also checks that both agree;
- fast: 100,000 cells x 2,000 genes, 2 batches, 50 clusters.

Each timing is the best of ``--repeats`` runs after one warm-up call on a small slice (numba compiles and
caches its kernels on first use).

    python benchmarks/metaneighbor_speed.py     # writes benchmarks/results/metaneighbor_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

import sctransfer as sct
from sctransfer.kernels import metaneighbor

RESULTS = Path(__file__).parent / "results" / "metaneighbor_speed.json"


def generate(n_cells: int, n_genes: int, n_clusters: int, n_batches: int, seed: int = 0):
    """Sparse log-normalised cells; cluster c lies in batch c % n_batches and shares a programme with c + B."""
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, n_clusters, n_cells)
    batches = clusters % n_batches
    programme = clusters // n_batches  # the same population in every batch
    n_prog = int(programme.max()) + 1
    base = rng.gamma(0.6, 1.0, size=n_genes)
    up = rng.random((n_prog, n_genes)) < 0.05
    batch_shift = rng.lognormal(0.0, 0.3, size=(n_batches, n_genes))
    mean = base[None, :] * np.where(up, 4.0, 1.0)[programme] * batch_shift[batches] * 0.2
    counts = rng.poisson(mean).astype(np.float32)
    X = sp.csr_matrix(counts)
    totals = np.asarray(X.sum(axis=1)).ravel()
    X = sp.diags((1e4 / np.maximum(totals, 1)).astype(np.float32)) @ X
    X.data = np.log1p(X.data)
    return X.tocsr(), batches, clusters


def reference_exact(X, batches, clusters) -> np.ndarray:
    """Straightforward NumPy/SciPy exact MetaNeighbor (dense network, rankdata of all N^2 entries)."""
    dense = X.toarray() if sp.issparse(X) else np.asarray(X)
    ranks = np.apply_along_axis(rankdata, 1, dense)
    rho = np.corrcoef(ranks)
    R = rankdata(rho, method="average").reshape(rho.shape)
    R /= R.max()
    labels = np.unique(clusters)
    onehot = (clusters[:, None] == labels[None, :]).astype(float)
    P = (R @ onehot) / R.sum(axis=1, keepdims=True)
    cluster_batch = np.array([batches[clusters == c][0] for c in labels])
    nv = np.zeros((labels.size, labels.size))
    for s in np.unique(batches):
        rows = batches == s
        r = np.apply_along_axis(rankdata, 0, P[rows])
        for i in np.flatnonzero(cluster_batch == s):
            pos = clusters[rows] == labels[i]
            n_p, n_n = pos.sum(), (~pos).sum()
            nv[i] = (r[pos].sum(axis=0) / n_p - (n_p + 1) / 2) / n_n
    nv = (nv + nv.T) / 2
    nv[cluster_batch[:, None] == cluster_batch[None, :]] = 0
    return nv


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-reference", action="store_true", help="do not time the NumPy/SciPy reference")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []

    X, b, c = generate(10_000, 1_000, 20, 2)
    metaneighbor(X[:300], b[:300], c[:300], fast=False)  # compile / load the cached kernels
    t_exact, ours = best_of(lambda: metaneighbor(X, b, c, fast=False), args.repeats)
    row = {"version": "exact", "n_cells": 10_000, "n_genes": 1_000, "n_clusters": 20, "seconds": t_exact}
    if not args.skip_reference:
        t_ref, ref = best_of(lambda: reference_exact(X, b, c), 1)
        row["reference_seconds"] = t_ref
        row["max_abs_difference"] = float(np.abs(ours.to_numpy() - ref).max())
    rows.append(row)

    X, b, c = generate(100_000, 2_000, 50, 2)
    metaneighbor(X[:300], b[:300], c[:300], fast=True)
    t_fast, _ = best_of(lambda: metaneighbor(X, b, c, fast=True), args.repeats)
    rows.append(
        {"version": "fast", "n_cells": 100_000, "n_genes": 2_000, "n_clusters": 50, "seconds": t_fast}
    )

    print(
        f"{'version':<8}{'cells':>9}{'genes':>7}{'clusters':>10}{'sctransfer (s)':>16}{'NumPy/SciPy (s)':>17}"
    )
    for r in rows:
        ref = f"{r['reference_seconds']:>17.1f}" if "reference_seconds" in r else f"{'-':>17}"
        print(
            f"{r['version']:<8}{r['n_cells']:>9}{r['n_genes']:>7}{r['n_clusters']:>10}{r['seconds']:>16.2f}{ref}"
        )
        if "max_abs_difference" in r:
            print(f"         max |sctransfer - NumPy/SciPy| = {r['max_abs_difference']:.2e}")
    payload = {
        "benchmark": "metaneighbor_speed",
        "command": "python benchmarks/metaneighbor_speed.py",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "sctransfer": sct.__version__},
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
