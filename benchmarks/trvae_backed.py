"""trVAE trained from a backed h5ad by blocks of rows, against the same training in memory.

A backed or dask matrix is read ``BLOCK_ROWS`` contiguous rows at a time, and an epoch shuffles the
cells of ``BUFFER_BLOCKS`` randomly chosen blocks at a time (``sctransfer.models.trvae._data``). This
script measures what that costs and changes, on the simulated atlas of ``benchmarks/scale.py``
(``sct.datasets.simulate_atlas``: counts of 2,000 genes, 20 types, 8 batches), log-normalised, with
the batch as trVAE's condition:

1. **Minibatch mixing** (no training): for the file in its own order and sorted by batch (the worst
   layout for blocks), the share of minibatches that hold cells of at least two batches (the MMD needs
   them) and the mean total-variation distance between a minibatch's batch mix and the whole file's,
   for the in-memory shuffle and for the blocks.
2. **Training** (each run in a fresh process): the default preset for ``--epochs`` epochs on the
   in-memory matrix, on the backed file in its own order and on the backed file sorted by batch. It
   reports the seconds per epoch, the peak RSS and, on a sample of cells, the latent's kNN purity of
   the cell types and its batch-mixing entropy (``sct.metrics``).

Run: ``python benchmarks/trvae_backed.py --n-cells 300000`` (``--runs`` picks the trainings). Each size
replaces its own entry in ``benchmarks/results/trvae_backed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _process import peak_rss_bytes
from _provenance import source_commit

RESULTS = Path(__file__).parent / "results" / "trvae_backed.json"
N_SAMPLE = 10_000  # cells scored with the latent metrics
#: training runs: (where the values are, the file's layout)
RUNS = {
    "memory": ("memory", "own order"),
    "backed": ("backed", "own order"),
    "backed-sorted": ("backed", "sorted by batch"),
}


LAYOUTS = {"own order": "", "sorted by batch": "_sorted"}


def lognormalised_file(n: int, layout: str, data_dir: Path) -> Path:
    """The atlas reference of ``n`` cells, log-normalised, in its own order or sorted by batch."""
    import anndata as ad
    import scanpy as sc

    path = data_dir / f"trvae_atlas_{n}{LAYOUTS[layout]}.h5ad"
    if path.exists():
        return path
    from scale import make_data

    ref, _, _ = make_data(n, data_dir)
    adata = ad.read_h5ad(ref)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    if layout == "sorted by batch":
        adata = adata[np.argsort(adata.obs["batch"].astype(str).to_numpy(), kind="stable")].copy()
    adata.write_h5ad(path)
    return path


def mixing(batches: np.ndarray, *, batch_size: int, seed: int = 0, epochs: int = 2) -> dict:
    """How the minibatches of the in-memory shuffle and of the blocks mix the batches of one layout."""
    from sctransfer.models.trvae import _data

    levels, codes = np.unique(batches, return_inverse=True)
    whole = np.bincount(codes, minlength=levels.size) / codes.size
    cells = np.arange(codes.size)
    out = {}
    # the package's blocks, and fewer, larger blocks in a buffer of the same size
    settings = [
        ("in memory", None, 0),
        *((f"blocks {r} x {b}", r, b) for r, b in ((_data.BLOCK_ROWS, _data.BUFFER_BLOCKS), (4096, 16))),
    ]
    for name, block_rows, buffer_blocks in settings:
        sampler = _data._MinibatchSampler(
            cells, codes, batch_size=batch_size, seed=seed, shuffle=True, block_rows=block_rows,
            buffer_blocks=buffer_blocks,
        )  # fmt: skip
        several, tv, n_batches = [], [], []
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            for idx in sampler:
                mix = np.bincount(codes[idx], minlength=levels.size) / idx.size
                several.append((mix > 0).sum() >= 2)
                n_batches.append((mix > 0).sum())
                tv.append(0.5 * np.abs(mix - whole).sum())
        out[name] = {
            "minibatches_with_two_or_more_batches": round(float(np.mean(several)), 4),
            "mean_batches_per_minibatch": round(float(np.mean(n_batches)), 2),
            "mean_total_variation_to_whole": round(float(np.mean(tv)), 4),
        }
    return out


def worker(path: Path, mode: str, epochs: int, out: Path) -> None:
    """One training in this (fresh) process: ``mode`` is ``"memory"`` or ``"backed"``."""
    import warnings

    import anndata as ad

    import sctransfer as sct
    from _epochs import EpochTimer

    warnings.filterwarnings("ignore", category=FutureWarning)
    timer = EpochTimer()

    t0 = time.perf_counter()
    adata = ad.read_h5ad(path, backed="r")
    if mode == "memory":
        adata = adata.to_memory()
    from sctransfer.models import TRVAE

    work = ad.AnnData(X=adata.X, obs=adata.obs[["batch", "cell_type"]].copy())
    TRVAE.setup_anndata(work, condition_key="batch")
    model = TRVAE(work, preset="default")
    model.train(
        max_epochs=epochs, early_stopping=False, random_state=0, enable_progress_bar=False,
        callbacks=[timer],
    )  # fmt: skip
    latent = model.get_latent_representation()
    seconds = time.perf_counter() - t0
    # the peak of reading, training and the latent (the metrics below hold a sample's distance matrix);
    # VmHWM, not ru_maxrss, which keeps the RSS that the parent had when it forked this process
    peak_gb = peak_rss_bytes() / 1e9
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(latent.shape[0], min(N_SAMPLE, latent.shape[0]), replace=False))
    obs = adata.obs.iloc[sample]
    result = {
        "mode": mode,
        "seconds": round(seconds, 1),
        "epoch_seconds": [round(s, 1) for s in timer.seconds],
        "peak_rss_gb": round(peak_gb, 2),
        "knn_purity_cell_type": round(sct.metrics.knn_purity(latent[sample], obs["cell_type"].to_numpy()), 4),
        "batch_mixing_entropy": round(
            sct.metrics.batch_mixing_entropy(latent[sample], obs["batch"].to_numpy()), 4
        ),
    }
    out.write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=300_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/sct_scale"))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument(
        "--worker", nargs=4, metavar=("PATH", "MODE", "EPOCHS", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        path, mode, epochs, out = args.worker
        worker(Path(path), mode, int(epochs), Path(out))
        return

    import anndata as ad

    from scale import make_data
    from sctransfer.models.trvae import PRESETS, _data

    args.data_dir.mkdir(parents=True, exist_ok=True)
    batch_size = PRESETS["default"].batch_size
    command, commit = "python benchmarks/trvae_backed.py " + " ".join(sys.argv[1:]), source_commit()
    result: dict = {
        "n_cells": args.n_cells,
        "block_rows": _data.BLOCK_ROWS,
        "buffer_blocks": _data.BUFFER_BLOCKS,
        "batch_size": batch_size,
        "epochs": args.epochs,
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count()},
        "mixing": {},
        "training": [],
    }
    ref, _, _ = make_data(args.n_cells, args.data_dir)  # the counts file: its batches give both layouts
    batches = ad.read_h5ad(ref, backed="r").obs["batch"].astype(str).to_numpy()
    for layout, order in (("own order", batches), ("sorted by batch", np.sort(batches, kind="stable"))):
        result["mixing"][layout] = mixing(order, batch_size=batch_size)
        for name, row in result["mixing"][layout].items():
            print(f"mixing  {layout:16s} {name:16s} {row}", flush=True)
    for run in [] if args.skip_training else args.runs:
        mode, layout = RUNS[run]
        path = lognormalised_file(args.n_cells, layout, args.data_dir)
        out = args.data_dir / f"trvae_backed_{args.n_cells}_{run}.json"
        cmd = [sys.executable, __file__, "--worker", str(path), mode, str(args.epochs), str(out)]
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        row = {"layout": layout, **json.loads(out.read_text()), "source_commit": commit, "command": command}
        result["training"].append(row)
        print(f"train   {layout:16s} {row}", flush=True)
    # one file for every size; a run replaces the rows it measured again and keeps the others
    sizes = json.loads(args.output.read_text())["sizes"] if args.output.exists() else []
    for old in (r for r in sizes if r["n_cells"] == args.n_cells):
        done = {(row["mode"], row["layout"]) for row in result["training"]}
        for row in old["training"]:
            if (row["mode"], row["layout"]) not in done:
                row.setdefault("source_commit", old.get("source_commit"))
                row.setdefault("command", old.get("command"))
                result["training"].append(row)
    for entry in sizes:  # entries written before the rows recorded their own commit and command
        for key in ("source_commit", "command"):
            value = entry.pop(key, None)
            for row in entry["training"]:
                row.setdefault(key, value)
    order = list(RUNS.values())
    result["training"].sort(key=lambda row: order.index((row["mode"], row["layout"])))
    sizes = sorted([r for r in sizes if r["n_cells"] != args.n_cells] + [result], key=lambda r: r["n_cells"])
    args.output.write_text(json.dumps({"benchmark": "trvae_backed", "sizes": sizes}, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
