"""Batch alignment on real data: BERMUDA (default and faithful) against uncorrected PCA and Harmony.

Protocol:
- Kang IFN-beta PBMC: CTRL and STIM are the two batches, ``seurat_annotations`` the truth (counts in .X).
- CITE/ASAP ADT: the 4 batches (c1-c4), ``coarse_cluster`` the truth (216 antibody counts).
- Uncorrected: library-size normalisation and log1p, the union of the per-batch top 2,000 HVGs (all
  features for ADT), scaling and a 20-component PCA. Harmony (harmonypy, default settings) corrects that
  PCA for the batch. BERMUDA runs through ``sct.tl.bermuda`` (per-batch Leiden, MetaNeighbor pairs at
  0.85); the faithful preset (2,000 epochs) runs on Kang only, unless ``--faithful-all``.
- Scores on each embedding (``sct.metrics``): BERMUDA's divergence and entropy (2-d UMAP of the
  embedding) and cosine silhouette of the cell types, batch-mixing entropy among 30 neighbours
  (normalised to [0, 1]) and kNN cell-type purity (30 neighbours). Entropy is -1 when every type is in
  every batch.
- Time is wall-clock for the whole method on the preprocessed data, on this machine.

    python benchmarks/alignment.py            # writes benchmarks/results/alignment.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import scanpy as sc
import torch

import sctransfer as sct

RESULTS = Path(__file__).parent / "results" / "alignment.json"
N_PCS = 20
SCORES = ["silhouette", "batch_entropy", "knn_purity", "divergence", "entropy"]


def datasets() -> dict[str, tuple]:
    kang = sct.datasets.kang_ifnb()
    kang = kang[kang.obs["seurat_annotations"].notna()].copy()
    cite = sct.datasets.cite_asap_adt()
    return {"kang": (kang, "stim", "seurat_annotations"), "cite_asap": (cite, "batch", "coarse_cluster")}


def uncorrected_pca(adata, batch_key: str, seed: int) -> np.ndarray:
    work = adata.copy()
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    if work.n_vars > 2000:
        sc.pp.highly_variable_genes(work, n_top_genes=2000, batch_key=batch_key, flavor="seurat")
        work = work[:, work.var["highly_variable"]].copy()
    sc.pp.scale(work, max_value=10)
    sc.pp.pca(work, n_comps=N_PCS, random_state=seed)
    return np.asarray(work.obsm["X_pca"])


def harmony(pcs: np.ndarray, adata, batch_key: str, seed: int) -> np.ndarray:
    import harmonypy

    result = harmonypy.run_harmony(pcs, adata.obs[[batch_key]], [batch_key], random_state=seed, verbose=False)
    z = np.asarray(result.Z_corr)
    return z.T if z.shape[0] != pcs.shape[0] else z


def scores(embedding: np.ndarray, batches, types, seed: int) -> dict[str, float]:
    umap_2d = sct.metrics.alignment_umap(embedding, random_state=seed)
    return {
        "silhouette": sct.metrics.silhouette_score(embedding, types),
        "batch_entropy": sct.metrics.batch_mixing_entropy(embedding, batches),
        "knn_purity": sct.metrics.knn_purity(embedding, types),
        "divergence": sct.metrics.divergence_score(umap_2d, batches, types),
        "entropy": sct.metrics.entropy_score(umap_2d, batches, types),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--faithful-all", action="store_true", help="run the faithful preset on every dataset"
    )
    parser.add_argument("--skip-faithful", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.getLogger("sctransfer").setLevel(logging.WARNING)
    rows = []
    for name, (adata, batch_key, truth_key) in datasets().items():
        batches = adata.obs[batch_key].astype(str).to_numpy()
        types = adata.obs[truth_key].astype(str).to_numpy()
        print(f"\n{name}: {adata.n_obs} cells x {adata.n_vars} features, {len(set(batches))} batches")
        t = time.perf_counter()
        pcs = uncorrected_pca(adata, batch_key, args.seed)
        t_pca = time.perf_counter() - t
        methods = {"uncorrected PCA": (pcs, t_pca, {})}
        t = time.perf_counter()
        methods["Harmony"] = (harmony(pcs, adata, batch_key, args.seed), t_pca + time.perf_counter() - t, {})
        presets = [("BERMUDA default", "default")]
        if not args.skip_faithful and (name == "kang" or args.faithful_all):
            presets.append(("BERMUDA faithful", "faithful"))
        for label, preset in presets:
            work = adata.copy()
            t = time.perf_counter()
            sct.tl.bermuda(
                work,
                batch_key=batch_key,
                preset=preset,
                random_state=args.seed,
                enable_progress_bar=False,
            )
            elapsed = time.perf_counter() - t
            info = work.uns["bermuda"]
            extra = {
                "epochs_trained": info["epochs_trained"],
                "n_clusters": len(info["clusters"]),
                "n_pairs": len(info["cluster_pairs"]),
                "n_genes": len(info["genes"]),
            }
            methods[label] = (work.obsm["X_bermuda"], elapsed, extra)
        print(f"{'method':<20}" + "".join(f"{s:>14}" for s in SCORES) + f"{'time (s)':>10}")
        for label, (embedding, elapsed, extra) in methods.items():
            result = scores(embedding, batches, types, args.seed)
            rows.append({"dataset": name, "method": label, **result, "seconds": elapsed, **extra})
            print(f"{label:<20}" + "".join(f"{result[s]:>14.3f}" for s in SCORES) + f"{elapsed:>10.1f}")
            if extra:
                print(f"{'':<20}{extra}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "alignment",
        "command": "python benchmarks/alignment.py",
        "higher_is_better": ["silhouette", "batch_entropy", "knn_purity"],
        "lower_is_better": ["divergence", "entropy"],
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "sctransfer": sct.__version__,
        },
        "results": rows,
    }
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
