"""Approximate kNN backends against the exact search: recall@k, agreement of the kNN vote, wall and CPU time.

Two kinds of data, each at every size (n query cells = n reference cells):

* ``atlas``: what ``sct.tl.label_transfer(method="knn")`` searches, the 50-component joint PCA of a
  reference and a query written by :func:`sctransfer.datasets.simulate_atlas` (20 cell types, 2,000
  genes; the same files as ``benchmarks/scale.py``), cosine, k=30, the reference's cell types voting;
* ``mixture``: the harder float32 Gaussian mixture of ``benchmarks/knn_speed.py`` (50 clusters in 64
  dimensions with isotropic noise, so the neighbours within a cluster are nearly random), the
  mixture components voting.

Every backend answers the same query in the same process: ``exact``, ``ivf`` (the package's
inverted-file search, calibrated to a recall), ``faiss`` (faiss's IVF-Flat calibrated the same way,
needs faiss-cpu) and ``pynndescent``. Recall@k and the agreement of the vote are measured against the
exact neighbours of a seeded sample of the queries (``--recall-rows``), so the approximate backends can
be measured at sizes where the full exact search would take most of an hour; the accuracy of the vote
is over every query. JIT compilation and the numba cache load are done once on tiny data first and
reported apart. CPU seconds are the process's user + system time during the call (all threads).

    python benchmarks/knn_backends.py --sizes 100000 300000 --backends exact ivf faiss
    python benchmarks/knn_backends.py --sizes 1000000 --data atlas --backends ivf faiss --merge
    # writes benchmarks/results/knn_backends.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import sctransfer as sct
from sctransfer.kernels import AUTO_EXACT_MAX_PAIRS, TARGET_RECALL, _knn, knn, knn_vote

sys.path.insert(0, str(Path(__file__).parent))
from knn_speed import gaussian_mixture, recall_at_k

RESULTS = Path(__file__).parent / "results" / "knn_backends.json"
K = 30


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def atlas_embedding(n: int, data_dir: Path):
    """Joint PCA (50 components) of the simulated atlas reference and query, cached in ``data_dir``."""
    import anndata as ad

    from scale import make_data
    from sctransfer.kernels._pca import joint_pca, log_normalize

    cache = data_dir / f"atlas_pca50_{n}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return z["query"], z["reference"], z["ref_codes"], z["query_codes"]
    ref_path, query_path, _ = make_data(n, data_dir)
    ref, query = ad.read_h5ad(ref_path), ad.read_h5ad(query_path)
    types = np.union1d(ref.obs["cell_type"].astype(str), query.obs["cell_type"].astype(str))
    ref_codes = np.searchsorted(types, ref.obs["cell_type"].astype(str))
    query_codes = np.searchsorted(types, query.obs["cell_type"].astype(str))
    pca = joint_pca([log_normalize(ref.X), log_normalize(query.X)], n_comps=50, random_state=0)
    emb_ref, emb_query = (e.astype(np.float32) for e in pca.embeddings)
    np.savez(cache, query=emb_query, reference=emb_ref, ref_codes=ref_codes, query_codes=query_codes)
    return emb_query, emb_ref, ref_codes, query_codes


def mixture(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    query, reference = gaussian_mixture(n, n, 64, 50, seed)
    # the component of every row: the nearest centre (the draws do not return it)
    centers = rng.normal(size=(50, 64)).astype(np.float32) * 3.0
    half_sq = 0.5 * (centers**2).sum(axis=1)
    codes = [np.argmax(x @ centers.T - half_sq, axis=1) for x in (reference, query)]
    return query, reference, codes[0], codes[1]


class IndexRecord(logging.Handler):
    """Keeps the arguments of the approximate backends' log line (lists, lists probed, sample recall)."""

    def __init__(self):
        super().__init__()
        self.args = None

    def emit(self, record):
        if record.getMessage().startswith(("knn faiss:", "knn ivf:")):
            self.args = record.args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--data", nargs="+", choices=["atlas", "mixture"], default=["atlas", "mixture"])
    parser.add_argument("--backends", nargs="+", default=["exact", "ivf", "faiss", "pynndescent"])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "sctransfer_scale",
        help="where the atlas files are written once and reused (the same default as scale.py)",
    )
    parser.add_argument(
        "--targets", type=float, nargs="+", default=[TARGET_RECALL],
        help="calibration recall targets of the ivf and faiss backends to measure (the first is the default)",
    )  # fmt: skip
    parser.add_argument(
        "--recall-rows", type=int, default=10_000,
        help="seeded sample of query rows whose exact neighbours the recall and the vote agreement use",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--merge", action="store_true", help="keep the rows of --output that this run does not measure again"
    )
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")  # marks this run's rows when --merge keeps older ones
    handler = IndexRecord()
    logging.getLogger("sctransfer").addHandler(handler)
    logging.getLogger("sctransfer").setLevel(logging.INFO)

    # warm-ups on tiny data, kept out of the timings
    rng = np.random.default_rng(0)
    tiny = rng.normal(size=(600, 16)).astype(np.float32)
    warm = {}
    for backend in args.backends:
        t0 = time.perf_counter()
        knn(tiny[:100], tiny, k=10, backend=backend)
        warm[backend] = time.perf_counter() - t0
    print("warm-up (compile / cache load) seconds:", {b: round(s, 2) for b, s in warm.items()}, flush=True)

    rows = []
    for data in args.data:
        for n in args.sizes:
            t0 = time.perf_counter()
            query, reference, ref_codes, query_codes = (
                atlas_embedding(n, args.data_dir) if data == "atlas" else mixture(n)
            )
            print(f"\n{data} n={n}: data ready in {time.perf_counter() - t0:.1f} s", flush=True)
            n_classes = int(max(ref_codes.max(), query_codes.max())) + 1
            sample = np.sort(np.random.default_rng(0).choice(n, size=min(n, args.recall_rows), replace=False))
            truth = knn(query[sample], reference, k=K, metric="cosine", backend="exact").indices
            truth_vote = knn_vote(truth, ref_codes, n_classes)[0]
            runs = [
                (backend, target)
                for backend in args.backends
                for target in (args.targets if backend in ("ivf", "faiss") else [None])
            ]
            for backend, target in runs:
                handler.args = None
                if target is not None:
                    _knn.TARGET_RECALL = target
                w0, c0 = time.perf_counter(), cpu_seconds()
                nbrs = knn(query, reference, k=K, metric="cosine", backend=backend, random_state=0)
                wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
                _knn.TARGET_RECALL = TARGET_RECALL
                pred = knn_vote(nbrs.indices, ref_codes, n_classes)[0]
                row = {
                    "data": data,
                    "n_query": n,
                    "n_reference": n,
                    "backend": backend,
                    "wall_seconds": round(wall, 2),
                    "cpu_seconds": round(cpu, 2),
                    "recall_at_k": recall_at_k(nbrs.indices[sample], truth),
                    "recall_rows": int(sample.size),
                    "vote_agreement": float(np.mean(pred[sample] == truth_vote)),
                    "vote_accuracy": float(np.mean(pred == query_codes)),
                    "run_started": started,
                }
                if target is not None and handler.args is not None:
                    nlist, nprobe, sample_recall, m = handler.args[:4]
                    row.update(
                        target_recall=target,
                        nlist=nlist,
                        nprobe=nprobe,
                        calibration_recall=sample_recall,
                        calibration_rows=m,
                    )
                    if backend == "ivf":  # the mean size of a block's union of lists
                        row["lists_scanned_per_block"] = handler.args[4]
                rows.append(row)
                label = backend if target is None else f"{backend}@{target}"
                print(
                    f"  {label:12s} wall {wall:7.2f} s  cpu {cpu:7.2f} s  recall {row['recall_at_k']}  "
                    f"vote agreement {row['vote_agreement']}  accuracy {row['vote_accuracy']:.4f}"
                    + (
                        f"  nlist {row.get('nlist')} nprobe {row.get('nprobe')}" if target is not None else ""
                    ),
                    flush=True,
                )

    import numba
    import pynndescent

    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = None
    result = {
        "benchmark": "knn_backends",
        "k": K,
        "metric": "cosine",
        "auto_exact_max_pairs": AUTO_EXACT_MAX_PAIRS,
        "target_recall": TARGET_RECALL,
        "recall_rows": args.recall_rows,
        "cores": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "started": started,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "warm_up_seconds": warm,
        "environment": {
            "sctransfer": sct.__version__,
            "numpy": np.__version__,
            "numba": numba.__version__,
            "pynndescent": pynndescent.__version__,
            "faiss": faiss_version,
            "python": platform.python_version(),
        },
        "results": rows,
    }
    if args.merge and args.output.exists():
        previous = json.loads(args.output.read_text())

        def key(row):
            return row["data"], row["n_query"], row["backend"], row.get("target_recall")

        measured = {key(row) for row in rows}
        kept = [row for row in previous["results"] if key(row) not in measured]
        result["results"] = kept + rows
        result["previous_runs"] = [
            *previous.get("previous_runs", []),
            {
                k: previous.get(k)
                for k in ("started", "load_average_before", "load_average_after", "warm_up_seconds")
            },
        ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
