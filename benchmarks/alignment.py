"""Batch alignment on real data, scored with scib-metrics: BERMUDA against PCA, Harmony, scVI and Scanorama.

Protocol:
- Kang IFN-beta PBMC: CTRL and STIM are the two batches, ``seurat_annotations`` the truth (counts in .X).
- CITE/ASAP ADT: the 4 batches (c1-c4), scored on ``coarse_cluster`` and on ``cluster`` (216 antibody
  counts).
- Uncorrected: library-size normalisation and log1p, the union of the per-batch top 2,000 HVGs (all
  features for ADT), scaling and a 20-component PCA. Harmony (harmonypy, default settings) corrects that
  PCA for the batch. scVI (scvi-tools, default model and training, 10 latent dimensions) is trained on
  the counts of the same features (Kang only unless ``--scvi-all``: 400 epochs of 17,000 cells do not
  fit a 2-core run). Scanorama (default settings) integrates the log-normalised features of the
  batches. BERMUDA runs through ``sct.tl.bermuda`` on the counts; the faithful preset (2,000 epochs)
  runs on Kang only, unless ``--faithful-all`` (or ``--skip-faithful``).
- Scores: scib-metrics' ``Benchmarker`` with its default bio-conservation metrics (isolated labels,
  KMeans NMI and ARI, label silhouette, cLISI) and batch-correction metrics (BRAS, iLISI, kBET, graph
  connectivity, PCR comparison against the uncorrected PCA), raw values (no min-max scaling);
  ``batch`` and ``bio`` are the means of the two groups and ``total = 0.4 batch + 0.6 bio``, as scIB
  weighs them. Next to them the two scores of the BERMUDA paper that scib-metrics has no equivalent
  of (``sct.metrics``): divergence and entropy on a 2-d UMAP of the embedding (lower is better;
  entropy is -1 when every type is in every batch).
- Time is wall-clock for the whole method on the preprocessed data (Harmony: its PCA included; BERMUDA
  and scVI: from the counts), measured in the same run on this machine, so compare ratios. PCA, Harmony
  and the BERMUDA default run ``--repeats`` times (default 3), taking turns, and report the median: single
  runs of a second varied by up to 40 % between runs, and the machine had slower spells. PCA, Harmony and
  BERMUDA run once on a tiny simulation first, untimed: numba's first compilation and the imports are
  one-off costs. Every method runs with the
  same number of threads (``--threads``, default 1: BLAS through threadpoolctl, torch through
  ``torch.set_num_threads``): on a busy 2-core machine spinning BLAS pools made the same SVD
  several times slower with 2 threads than with 1.

scib-metrics (jax) and Scanorama live in their own environment, ``.venv-scib``, so that the package's
environment keeps its pins: ``make bench-env-scib`` builds it. This script computes the embeddings here,
writes them with the uncorrected values to an h5ad in a temporary directory and runs
``benchmarks/_scib_score.py`` with ``.venv-scib/bin/python`` (``--scib-python`` chooses another
interpreter), which runs Scanorama and scores every embedding.

    make bench-env-scib
    python benchmarks/alignment.py            # writes benchmarks/results/alignment.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import torch

import sctransfer as sct
from _provenance import source_commit

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "alignment.json"
SCIB_PYTHON = HERE.parent / ".venv-scib" / "bin" / "python"
N_PCS = 20
PAPER_SCORES = ["divergence", "entropy"]
#: the obsm key of the uncorrected PCA, which the scorer takes as the pre-integration reference
PCA_KEY = "X_pca"


def datasets() -> dict[str, tuple]:
    kang = sct.datasets.kang_ifnb()
    kang = kang[kang.obs["seurat_annotations"].notna()].copy()
    cite = sct.datasets.cite_asap_adt()
    return {
        "kang": (kang, "stim", ["seurat_annotations"]),
        "cite_asap": (cite, "batch", ["coarse_cluster", "cluster"]),
    }


def lognorm_features(adata, batch_key: str) -> ad.AnnData:
    """Log-normalised values on the union of the per-batch top 2,000 HVGs (all features when fewer)."""
    work = adata.copy()
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    if work.n_vars > 2000:
        sc.pp.highly_variable_genes(work, n_top_genes=2000, batch_key=batch_key, flavor="seurat")
        work = work[:, work.var["highly_variable"]].copy()
    return work


def uncorrected_pca(lognorm: ad.AnnData, seed: int) -> np.ndarray:
    work = lognorm.copy()
    sc.pp.scale(work, max_value=10)
    sc.pp.pca(work, n_comps=N_PCS, random_state=seed)
    return np.asarray(work.obsm["X_pca"])


def harmony(pcs: np.ndarray, adata, batch_key: str, seed: int) -> np.ndarray:
    import harmonypy

    result = harmonypy.run_harmony(pcs, adata.obs[[batch_key]], [batch_key], random_state=seed, verbose=False)
    z = np.asarray(result.Z_corr)
    return z.T if z.shape[0] != pcs.shape[0] else z


def scvi_latent(adata, features, batch_key: str, seed: int) -> np.ndarray:
    import scvi

    scvi.settings.seed = seed
    counts = ad.AnnData(adata[:, features].X.copy(), obs=adata.obs[[batch_key]].copy())
    scvi.model.SCVI.setup_anndata(counts, batch_key=batch_key)
    model = scvi.model.SCVI(counts, n_latent=10)
    model.train(enable_progress_bar=False)
    return np.asarray(model.get_latent_representation())


def paper_scores(embedding: np.ndarray, batches, types, seed: int) -> dict[str, float]:
    umap_2d = sct.metrics.alignment_umap(embedding, random_state=seed)
    return {
        "divergence": sct.metrics.divergence_score(umap_2d, batches, types),
        "entropy": sct.metrics.entropy_score(umap_2d, batches, types),
    }


def scib_scores(
    lognorm: ad.AnnData,
    embeddings: dict[str, np.ndarray],
    pcs: np.ndarray,
    batch_key: str,
    label_keys: list[str],
    *,
    python: Path,
    scanorama: bool,
    seed: int,
    threads: int = 1,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Run ``_scib_score.py`` under ``python`` on the embeddings: its JSON output and Scanorama's embedding."""
    if not python.exists():
        raise FileNotFoundError(f"{python} does not exist; build it with `make bench-env-scib`.")
    data = ad.AnnData(
        np.asarray(lognorm.X.toarray() if hasattr(lognorm.X, "toarray") else lognorm.X, dtype=np.float32),
        obs=pd.DataFrame(
            {k: lognorm.obs[k].astype(str).to_numpy() for k in [batch_key, *label_keys]},
            index=lognorm.obs_names.astype(str),
        ),
        var=pd.DataFrame(index=lognorm.var_names.astype(str)),
    )
    data.obsm[PCA_KEY] = pcs
    for name, emb in embeddings.items():
        data.obsm[name] = np.asarray(emb, dtype=np.float64)
    with tempfile.TemporaryDirectory() as tmp:
        path_in, path_out = Path(tmp) / "in.h5ad", Path(tmp) / "out.json"
        data.write_h5ad(path_in)
        command = [str(python), str(HERE / "_scib_score.py"), str(path_in), str(path_out),
                   "--batch-key", batch_key, "--label-keys", *label_keys, "--seed", str(seed)]  # fmt: skip
        if scanorama:
            command.append("--scanorama")
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)  # Scanorama is timed with the threads of the other methods
        subprocess.run(command, check=True, env=env)
        scored = json.loads(path_out.read_text())
        extra = {"Scanorama": np.load(Path(tmp) / "Scanorama.npy")} if scanorama else {}
        return scored, extra


def warm_up() -> None:
    """Run the peers' PCA, Harmony and BERMUDA once on a tiny simulation, outside the timings.

    The first call in a process compiles the numba kernels (scanpy's, the kNN, MetaNeighbor) unless their
    on-disk cache is warm, and imports the libraries; both are one-off costs that would otherwise be charged
    to whichever method and dataset come first (with a cold cache, 4 s of Kang's PCA and so of Harmony).
    """
    tiny, _ = sct.datasets.simulate_multiome(n_cells=300, n_genes=60, n_types=3, n_batches=2, random_state=0)
    pcs = uncorrected_pca(lognorm_features(tiny, "batch"), 0)
    harmony(pcs, tiny, "batch", 0)
    sct.tl.bermuda(tiny, batch_key="batch", n_top_genes=None, n_neighbors=10, max_epochs=1,
                   enable_progress_bar=False)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--faithful-all", action="store_true", help="run the faithful preset on every dataset"
    )
    parser.add_argument("--skip-faithful", action="store_true")
    parser.add_argument("--scvi-all", action="store_true", help="run scVI on every dataset")
    parser.add_argument("--skip-scvi", action="store_true")
    parser.add_argument("--datasets", nargs="+", default=None, help="a subset of the datasets")
    parser.add_argument("--scib-python", type=Path, default=SCIB_PYTHON)
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads of every method")
    parser.add_argument(
        "--repeats", type=int, default=3,
        help="runs of PCA, Harmony and the BERMUDA default, whose median time is reported (one run of "
        "scVI, Scanorama and the faithful preset)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=args.threads)
    torch.set_num_threads(args.threads)
    logging.getLogger("sctransfer").setLevel(logging.WARNING)
    logging.getLogger("scvi").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warm_up()
    rows = []
    for name, (adata, batch_key, label_keys) in datasets().items():
        if args.datasets is not None and name not in args.datasets:
            continue
        batches = adata.obs[batch_key].astype(str).to_numpy()
        print(f"\n{name}: {adata.n_obs} cells x {adata.n_vars} features, {len(set(batches))} batches")

        def bermuda_run(preset: str, adata=adata, batch_key=batch_key):
            work = adata.copy()
            t = time.perf_counter()
            sct.tl.bermuda(work, batch_key=batch_key, preset=preset, random_state=args.seed,
                           enable_progress_bar=False)  # fmt: skip
            return work, time.perf_counter() - t  # the copy is not timed

        # the repeats take turns (PCA, Harmony, BERMUDA, then again), so that a slower spell of the machine
        # falls on every method alike
        runs: dict[str, list[float]] = {"PCA": [], "Harmony": [], "BERMUDA default": []}
        for _ in range(args.repeats):
            t = time.perf_counter()
            lognorm = lognorm_features(adata, batch_key)
            pcs = uncorrected_pca(lognorm, args.seed)
            runs["PCA"].append(time.perf_counter() - t)
            t = time.perf_counter()
            corrected = harmony(pcs, adata, batch_key, args.seed)
            runs["Harmony"].append(time.perf_counter() - t)
            work, seconds = bermuda_run("default")
            runs["BERMUDA default"].append(seconds)
        t_pca = float(np.median(runs["PCA"]))
        methods = {"PCA": (pcs, t_pca, {"seconds_runs": runs["PCA"]})}
        # Harmony's time includes its PCA's (medians of the runs)
        methods["Harmony"] = (
            corrected,
            t_pca + float(np.median(runs["Harmony"])),
            {"seconds_runs_harmony_only": runs["Harmony"]},
        )
        bermuda_runs = {
            "BERMUDA default": (work, float(np.median(runs["BERMUDA default"])), runs["BERMUDA default"])
        }
        if not args.skip_scvi and (name == "kang" or args.scvi_all):
            t = time.perf_counter()
            methods["scVI"] = (scvi_latent(adata, lognorm.var_names, batch_key, args.seed),
                               time.perf_counter() - t, {})  # fmt: skip
        if not args.skip_faithful and (name == "kang" or args.faithful_all):
            work, seconds = bermuda_run("faithful")  # once: the faithful preset trains for minutes
            bermuda_runs["BERMUDA faithful"] = (work, seconds, [seconds])
        for label, (work, elapsed, seconds_runs) in bermuda_runs.items():
            info = work.uns["bermuda"]
            extra = {
                "seconds_runs": seconds_runs,
                "epochs_trained": info["epochs_trained"],
                "n_clusters": len(info["clusters"]),
                "n_pairs": len(info["cluster_pairs"]),
                "n_genes": len(info["genes"]),
            }
            methods[label] = (work.obsm["X_bermuda"], elapsed, extra)
        scored, computed = scib_scores(
            lognorm, {k: v[0] for k, v in methods.items()}, pcs, batch_key, label_keys,
            python=args.scib_python, scanorama=True, seed=args.seed, threads=args.threads,
        )  # fmt: skip
        for method, emb in computed.items():
            methods[method] = (emb, scored["seconds"][method], {})
        order = ["PCA", "Harmony", "scVI", "Scanorama", *[k for k in methods if k.startswith("BERMUDA")]]
        for label_key in label_keys:
            per_method = scored["scores"][label_key]
            types = adata.obs[label_key].astype(str).to_numpy()
            print(f"\n{name}, labels {label_key!r}")
            print(
                f"{'method':<18}{'batch':>8}{'bio':>8}{'total':>8}{'divergence':>12}{'entropy':>9}{'time (s)':>10}"
            )
            for method in order:
                if method not in per_method:
                    continue
                emb, elapsed, extra = methods[method]
                result = per_method[method]
                paper = paper_scores(emb, batches, types, args.seed)
                rows.append({
                    "dataset": name, "labels": label_key, "method": method,
                    "batch": result["batch"], "bio": result["bio"], "total": result["total"],
                    **result["metrics"], **paper, "seconds": elapsed, **extra,
                })  # fmt: skip
                print(f"{method:<18}{result['batch']:>8.3f}{result['bio']:>8.3f}{result['total']:>8.3f}"
                      f"{paper['divergence']:>12.3f}{paper['entropy']:>9.3f}{elapsed:>10.1f}")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "alignment",
        "command": " ".join(["python", "benchmarks/alignment.py", *sys.argv[1:]]),
        "threads": args.threads,
        "repeats": args.repeats,
        "commit": source_commit(),
        "scores": "scib-metrics Benchmarker, default metrics, raw values; total = 0.4 batch + 0.6 bio",
        "higher_is_better": ["batch", "bio", "total"],
        "lower_is_better": PAPER_SCORES,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "sctransfer": sct.__version__,
            "scib_metrics": _scib_version(args.scib_python),
        },
        "results": rows,
    }
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.output}")


def _scib_version(python: Path) -> str:
    command = [str(python), "-c", "import scib_metrics, scanorama; print(scib_metrics.__version__)"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
