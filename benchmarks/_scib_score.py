"""Score embeddings with scib-metrics' Benchmarker, and run Scanorama; runs under ``.venv-scib`` only.

``benchmarks/alignment.py`` computes the embeddings in the package's environment, writes them to an h5ad
and calls this script with the interpreter of ``.venv-scib`` (``make bench-env-scib``), which holds
scib-metrics 0.5 (jax on the CPU) and Scanorama but neither torch nor the package. Input h5ad:

- ``.X``: the log-normalised values on the features of the uncorrected PCA (Scanorama's input);
- ``.obs``: the batch column and one column per label set;
- ``.obsm``: one embedding per method, plus ``X_pca`` (the uncorrected PCA), which every method is
  compared with by ``pcr_comparison``.

Every label set gets its own Benchmarker run with the default bio-conservation and batch-correction
metrics; the output JSON holds, per label set and embedding, every metric's raw value (no min-max
scaling), ``batch`` and ``bio`` (the means of the two groups) and ``total = 0.4 batch + 0.6 bio``.
Scanorama's embedding is written beside the output JSON as ``Scanorama.npy``.

    .venv-scib/bin/python benchmarks/_scib_score.py in.h5ad out.json --batch-key batch \
        --label-keys cell_type --scanorama
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np


def run_scanorama(adata: ad.AnnData, batch_key: str, seed: int) -> tuple[np.ndarray, float]:
    """Scanorama's joint embedding (default settings) of the batches of ``adata``, in its cell order."""
    import scanorama

    start = time.perf_counter()
    batches = adata.obs[batch_key].astype(str).to_numpy()
    order = list(dict.fromkeys(batches))
    parts = [adata[batches == b].copy() for b in order]
    np.random.seed(seed)  # noqa: NPY002 (Scanorama draws from the global state)
    scanorama.integrate_scanpy(parts, verbose=0)
    out = np.zeros((adata.n_obs, parts[0].obsm["X_scanorama"].shape[1]), dtype=np.float64)
    for b, part in zip(order, parts, strict=True):
        out[batches == b] = part.obsm["X_scanorama"]
    return out, time.perf_counter() - start


def score(adata: ad.AnnData, batch_key: str, label_key: str, keys: list[str], n_jobs: int) -> dict:
    """Raw scib-metrics results for every embedding in ``keys``, with batch, bio and total."""
    from scib_metrics.benchmark import Benchmarker

    bench = Benchmarker(
        adata,
        batch_key=batch_key,
        label_key=label_key,
        embedding_obsm_keys=keys,
        pre_integrated_embedding_obsm_key="X_pca",
        n_jobs=n_jobs,
        progress_bar=False,
    )
    bench.benchmark()
    table = bench.get_results(min_max_scale=False)
    kinds = table.loc["Metric Type"]
    out = {}
    for key in keys:
        row = table.loc[key]
        metrics = {
            name: float(row[name]) for name in table.columns if kinds[name] not in ("Aggregate score",)
        }
        out[key] = {
            "batch": float(row["Batch correction"]),
            "bio": float(row["Bio conservation"]),
            "total": float(row["Total"]),
            "metrics": metrics,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--batch-key", required=True)
    parser.add_argument("--label-keys", nargs="+", required=True)
    parser.add_argument("--scanorama", action="store_true", help="also run and score Scanorama")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    adata = ad.read_h5ad(args.input)
    seconds = {}
    if args.scanorama:
        adata.obsm["Scanorama"], seconds["Scanorama"] = run_scanorama(adata, args.batch_key, args.seed)
        np.save(Path(args.output).with_name("Scanorama.npy"), adata.obsm["Scanorama"])
    keys = [k for k in adata.obsm if k != "X_pca"]
    result = {
        "seconds": seconds,
        "scores": {
            label: score(adata, args.batch_key, label, keys, args.n_jobs) for label in args.label_keys
        },
    }
    with open(args.output, "w") as fh:
        json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
