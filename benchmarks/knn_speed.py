"""Exact kNN speed: sctransfer's tiled BLAS + numba kernel against scikit-learn brute force and pynndescent.

Data: a seeded float32 Gaussian mixture (50 clusters plus isotropic noise) for the reference and the
query, so that approximate recall is meaningful. Every method answers the same k-NN query; recall@k is
measured against sctransfer's exact answer.

    python benchmarks/knn_speed.py                      # 100k x 100k x 64, k=30, cosine
    python benchmarks/knn_speed.py --n-query 20000 --n-ref 20000
    # writes benchmarks/results/knn_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np
import pynndescent
import sklearn
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_info

import sctransfer as sct

RESULTS = Path(__file__).parent / "results" / "knn_speed.json"


def gaussian_mixture(n_query, n_ref, dim, n_clusters, seed):
    """Reference and query cells drawn from the same clusters (different cluster sizes and noise)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim)).astype(np.float32) * 3.0
    scales = rng.uniform(0.5, 1.5, size=n_clusters).astype(np.float32)
    weights = rng.dirichlet(np.full(n_clusters, 2.0))

    def draw(n):
        z = rng.choice(n_clusters, size=n, p=weights)
        x = rng.standard_normal((n, dim), dtype=np.float32)
        x *= scales[z, None]
        x += centers[z]
        return x

    return draw(n_query), draw(n_ref)


def recall_at_k(found, truth):
    """Share of the true k neighbours found (rows of unique indices)."""
    both = np.sort(np.hstack([found, truth]), axis=1)
    hits = np.count_nonzero(both[:, 1:] == both[:, :-1])
    return hits / truth.size


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-query", type=int, default=100_000)
    parser.add_argument("--n-ref", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--metric", choices=["cosine", "euclidean"], default="cosine")
    parser.add_argument("--n-clusters", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sklearn", action="store_true", help="leave out scikit-learn brute force")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    k, metric = args.k, args.metric

    load_before = os.getloadavg()
    query, reference = gaussian_mixture(args.n_query, args.n_ref, args.dim, args.n_clusters, args.seed)
    print(
        f"{args.n_query} queries x {args.n_ref} references x {args.dim} dims, float32, {metric}, k={k}, "
        f"{os.cpu_count()} cores, load average {load_before[0]:.2f}",
        flush=True,
    )

    # warm-up on tiny data: numba compile (first run) or cache load, kept out of the timing
    tiny_q, tiny_r = query[:64], reference[:256]
    _, first_call = timed(lambda: sct.kernels.knn(tiny_q, tiny_r, k=min(k, 256), metric=metric))
    print(f"sctransfer first call (compile / cache load): {first_call:.2f} s", flush=True)
    exact, t_exact = timed(lambda: sct.kernels.knn(query, reference, k=k, metric=metric))
    print(f"sctransfer exact: {t_exact:.2f} s", flush=True)
    rows = [
        {
            "method": "sctransfer exact (BLAS tiles + numba top-k)",
            "seconds": t_exact,
            "recall_at_k": recall_at_k(exact.indices, exact.indices),
        }
    ]

    if not args.skip_sklearn:

        def run_sklearn():
            nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric, n_jobs=-1).fit(reference)
            return nn.kneighbors(query, return_distance=True)

        (sk_dist, sk_idx), t_sklearn = timed(run_sklearn)
        print(f"scikit-learn brute: {t_sklearn:.2f} s", flush=True)
        rows.append(
            {
                "method": "scikit-learn NearestNeighbors(brute, n_jobs=-1)",
                "seconds": t_sklearn,
                "recall_at_k": recall_at_k(sk_idx, exact.indices),
                "max_abs_distance_difference": float(np.abs(sk_dist - exact.distances).max()),
            }
        )
        del sk_dist, sk_idx

    # pynndescent: warm up its JIT on tiny data first, then time the index build and the query separately
    _, pnn_first = timed(
        lambda: pynndescent.NNDescent(tiny_r, metric=metric, n_neighbors=15, random_state=args.seed).query(
            tiny_q, k=10
        )
    )
    print(f"pynndescent first call (JIT compile): {pnn_first:.2f} s", flush=True)
    index, t_build = timed(
        lambda: pynndescent.NNDescent(
            reference, metric=metric, n_neighbors=max(k, 30), random_state=args.seed, n_jobs=-1
        )
    )
    # prepare() builds the search graph and JIT-compiles this index's search function (per index)
    _, t_prepare = timed(index.prepare)
    (pnn_idx, _), t_query = timed(lambda: index.query(query, k=k))
    print(f"pynndescent: build {t_build:.2f} s, prepare {t_prepare:.2f} s, query {t_query:.2f} s", flush=True)
    rows.append(
        {
            "method": "pynndescent (build + prepare + query)",
            "seconds": t_build + t_prepare + t_query,
            "build_seconds": t_build,
            "prepare_seconds": t_prepare,
            "query_seconds": t_query,
            "recall_at_k": recall_at_k(pnn_idx, exact.indices),
        }
    )

    baseline = next((r["seconds"] for r in rows if r["method"].startswith("scikit-learn")), None)
    for r in rows:
        r["speedup_vs_sklearn"] = None if baseline is None else baseline / r["seconds"]

    print()
    header = f"{'method':50s} {'seconds':>9s} {'vs sklearn':>10s} {'recall@k':>9s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        speedup = "" if r["speedup_vs_sklearn"] is None else f"{r['speedup_vs_sklearn']:9.2f}x"
        print(f"{r['method']:50s} {r['seconds']:9.2f} {speedup:>10s} {r['recall_at_k']:9.4f}")
    print(
        f"(sctransfer compile / cache load {first_call:.2f} s and pynndescent JIT warm-up {pnn_first:.2f} s "
        "are not included)"
    )

    blas = [
        {key: info.get(key) for key in ("internal_api", "version", "architecture", "num_threads")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    result = {
        "benchmark": "knn_speed",
        "data": f"float32 Gaussian mixture, {args.n_clusters} clusters, seed {args.seed}",
        "n_query": args.n_query,
        "n_ref": args.n_ref,
        "dim": args.dim,
        "k": k,
        "metric": metric,
        "dtype": "float32",
        "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "threading_env": {
            name: os.environ.get(name)
            for name in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS")
        },
        "numba_threads": numba.get_num_threads(),
        "sctransfer_first_call_seconds": first_call,
        "pynndescent_first_call_seconds": pnn_first,
        "environment": {
            "sctransfer": sct.__version__,
            "numpy": np.__version__,
            "numba": numba.__version__,
            "scikit-learn": sklearn.__version__,
            "pynndescent": pynndescent.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "blas": blas,
        },
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
