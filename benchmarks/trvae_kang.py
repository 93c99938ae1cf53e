"""trVAE on Kang IFN-beta PBMC: predict the stimulated cells of a held-out type, against scGen and baselines.

Protocol:
- data: ``sct.datasets.kang_ifnb()`` (1,000 CTRL + 1,000 STIM cells), ``layers["lognorm"]`` (Seurat
  LogNormalize, natural log), 2,000 highly variable genes (``sc.pp.highly_variable_genes``, Seurat
  flavour, on all cells).
- for each held-out type (CD14 Mono, CD4 Naive T, NK, B): the STIM cells of that type are removed, the
  model trains on every other cell (``condition_key="stim"``), and the type's CTRL cells are predicted
  under STIM (encoded with CTRL, decoded with STIM; posterior mean). trVAE is scored with the preset's own
  prediction method and, from the same trained model, with the other one (``TRVAE.predict(method=...)``),
  each also with ``latent_delta=True`` (the mean latent difference between the training cells of STIM and
  of CTRL added to each cell's ``z`` before decoding, scGen's latent arithmetic).
- scGen: pertpy's ``Scgen`` with its defaults and early stopping, trained on the same cells and predicting
  the same CTRL cells (``benchmarks/scgen_kang_runner.py``, run in its own environment: ``make
  scgen-env``; skipped with a note when that environment is missing).
- baselines in the same run: identity (the CTRL cells themselves) and the global delta (CTRL cells plus
  the mean STIM - CTRL difference of all the other cells, the shift scGen applies in its latent space,
  here in expression space).
- scoring: R² (squared Pearson) of per-gene means and of per-gene variances between predicted and real
  STIM cells of the type (``sct.metrics.prediction_r2``), on the top-100 DEGs (STIM vs CTRL within the
  type, Wilcoxon, ranked by score: ``sct.metrics.condition_degs``) and on all 2,000 genes, with the same
  DEG lists and scorer for every method; the bootstrap columns resample both sets with replacement at
  full size.
- timing: wall time of the training alone (trVAE ``TRVAE.train`` with one torch thread; scGen's
  ``train`` with one torch thread and one XLA thread), both in the same job one after the other, with
  the machine's load average recorded. With ``--jobs N`` the (type, seed) jobs run in N processes at
  once: compare the times of the two methods within one job, as ratios.

Each job writes its rows to ``benchmarks/results/trvae_kang_parts/`` as soon as a method is measured, and
the JSON merges every part found there, so the methods can be measured in separate runs (or an
interrupted run resumed) and merged with ``--merge-only``.

    python benchmarks/trvae_kang.py            # writes benchmarks/results/trvae_kang.json
    python benchmarks/trvae_kang.py --jobs 8 --methods trvae baselines   # then: --methods scgen; --merge-only
    python benchmarks/trvae_kang.py --types 'CD14 Mono' --set beta=5e4 --set mmd_on=y --output /tmp/t.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import scanpy as sc
import scipy.sparse as sp
import torch
from anndata import AnnData

import sctransfer as sct
from sctransfer.models import TRVAE

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "trvae_kang.json"
SCGEN_RUNNER = HERE / "scgen_kang_runner.py"
#: scGen's environment (``make scgen-env``)
SCGEN_PYTHON = HERE.parent / ".venv-scgen" / "bin" / "python"
#: one XLA (JAX) thread for scGen, as trVAE trains with one torch thread
SCGEN_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
TYPES = ["CD14 Mono", "CD4 Naive T", "NK", "B"]
TYPE_KEY, CONDITION_KEY = "seurat_annotations", "stim"
N_DEGS = 100
#: targets for the trVAE default (R² of the means on the top-100 DEGs)
TARGETS = {"CD14 Mono": 0.80, "NK": 0.90, "B": 0.90}


def load_data() -> AnnData:
    kang = sct.datasets.kang_ifnb()
    adata = AnnData(X=kang.layers["lognorm"].copy(), obs=kang.obs.copy(), var=kang.var.copy())
    sc.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat")
    return adata[:, adata.var["highly_variable"].to_numpy()].copy()


def dense(X) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def score(pred: np.ndarray, real: np.ndarray, degs: np.ndarray, n_bootstrap: int) -> dict[str, float]:
    out = {}
    for genes_name, genes in (("degs", degs), ("all", None)):
        r = sct.metrics.prediction_r2(pred, real, genes=genes, n_bootstrap=n_bootstrap, random_state=0)
        out[f"r2_mean_{genes_name}"] = round(r.mean, 4)
        out[f"r2_var_{genes_name}"] = round(r.var, 4)
        if n_bootstrap:
            out[f"r2_mean_{genes_name}_sd"] = round(r.mean_sd, 4)
            out[f"r2_var_{genes_name}_sd"] = round(r.var_sd, 4)
    return out


def held_out_split(adata: AnnData, cell_type: str) -> dict[str, np.ndarray]:
    """The protocol's masks for one held-out type, and its top DEGs (STIM vs CTRL within the type)."""
    types = adata.obs[TYPE_KEY].astype(str).to_numpy()
    stim = adata.obs[CONDITION_KEY].astype(str).to_numpy()
    in_type = types == cell_type
    for condition in ("CTRL", "STIM"):
        if not (in_type & (stim == condition)).any():
            raise ValueError(
                f"{cell_type!r} has no {condition} cells: the protocol predicts a type's STIM cells from its "
                "CTRL cells and scores them against its real STIM cells."
            )
    degs = sct.metrics.condition_degs(
        adata.X[in_type],
        stim[in_type],
        target="STIM",
        reference="CTRL",
        var_names=adata.var_names,
        n_top=N_DEGS,
    )["position"].to_numpy()
    return {
        "types": types,
        "stim": stim,
        "in_type": in_type,
        "held_out": in_type & (stim == "STIM"),
        "ctrl": in_type & (stim == "CTRL"),
        "degs": degs,
    }


def condition_shift(adata: AnnData, stim: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Mean STIM minus mean CTRL expression over ``cells`` (a boolean mask)."""
    return dense(adata.X[cells & (stim == "STIM")]).mean(0) - dense(adata.X[cells & (stim == "CTRL")]).mean(0)


def run_scgen(train: AnnData, cell_type: str, seed: int, python: Path) -> tuple[np.ndarray, dict]:
    """pertpy's scGen in its own environment: the predicted STIM values of ``cell_type``'s CTRL cells."""
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "train.h5ad", Path(tmp) / "pred.npz"
        light = AnnData(X=train.X, obs=train.obs[[TYPE_KEY, CONDITION_KEY]].copy(), var=train.var[[]].copy())
        light.write_h5ad(path)
        cmd = [str(python), str(SCGEN_RUNNER), str(path), "--cell-type", cell_type, "--seed", str(seed)]
        cmd += ["--condition-key", CONDITION_KEY, "--type-key", TYPE_KEY, "--output", str(out)]
        done = subprocess.run(cmd, env={**os.environ, **SCGEN_ENV}, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"scGen failed on {cell_type}, seed {seed}:\n{done.stderr[-3000:]}")
        result = np.load(out)
        return result["X"], json.loads(str(result["info"]))


def save_part(parts: Path, cell_type: str, seed: int, name: str, rows: list[dict], command: str) -> None:
    """Write the rows of one method of one job at once, so that an interrupted run keeps what it measured."""
    path = parts / f"{cell_type.replace(' ', '_')}__seed{seed}__{name}.json"
    path.write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")


def trvae_name(preset: str, method: str, own: str, latent_delta: bool) -> str:
    """The row name of one trVAE prediction: the preset's own method plain, the others named."""
    name = f"trVAE {preset}" + ("" if method == own else f", method={method}")
    return name + (", latent_delta" if latent_delta else "")


def trvae_row(
    common: dict,
    preset: str,
    method: str,
    own: str,
    latent_delta: bool,
    seed: int,
    seconds: float,
    load: float,
    model: TRVAE,
) -> dict:
    """The fields of a trVAE row other than its scores."""
    return {
        **common, "method": trvae_name(preset, method, own, latent_delta), "predict_method": method,
        "latent_delta": latent_delta, "seed": seed, "train_seconds": round(seconds, 1),
        "epochs": model.train_info_["epochs"], "best_epoch": model.train_info_["best_epoch"],
        "load_average_1min": round(load, 2),
    }  # fmt: skip


def against_scgen(trvae: list[dict], scgen: list[dict]) -> dict:
    """trVAE's rows against scGen's on each metric, seed by seed and averaged over the seeds."""
    out = {}
    for metric in ("r2_mean_degs", "r2_mean_all", "r2_var_degs"):
        t = {r["seed"]: r[metric] for r in trvae}
        g = {r["seed"]: r[metric] for r in scgen}
        out[f"{metric}_trvae_vs_scgen"] = {
            "trvae": round(float(np.mean(list(t.values()))), 4),
            "scgen": round(float(np.mean(list(g.values()))), 4),
            "at_least_scgen_on_average": bool(np.mean(list(t.values())) >= np.mean(list(g.values()))),
            "at_least_scgen_every_seed": all(t[k] >= g[k] for k in t if k in g),
        }
    return out


def run_job(
    cell_type: str,
    seed: int,
    *,
    preset: str,
    n_bootstrap: int,
    methods: list[str],
    baselines: bool,
    scgen_python: Path | None,
    overrides: dict,
    parts: Path,
    command: str,
) -> None:
    """One held-out type and seed: trVAE (both prediction methods), scGen and, if asked, the baselines."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    adata = load_data()
    split = held_out_split(adata, cell_type)
    held_out, ctrl_mask, degs = split["held_out"], split["ctrl"], split["degs"]
    ctrl = dense(adata.X[ctrl_mask])
    real = dense(adata.X[held_out])
    common = {"type": cell_type, "n_ctrl": int(ctrl_mask.sum()), "n_stim": int(held_out.sum())}
    if baselines:
        rows = [{**common, "method": "identity (CTRL)", **score(ctrl, real, degs, n_bootstrap)}]
        delta = condition_shift(adata, split["stim"], ~split["in_type"])
        rows.append({**common, "method": "global delta", **score(ctrl + delta, real, degs, n_bootstrap)})
        save_part(parts, cell_type, seed, "baselines", rows, command)

    if "trvae" in methods:
        load = os.getloadavg()[0]
        train = adata[~held_out].copy()
        TRVAE.setup_anndata(train, condition_key=CONDITION_KEY)
        model = TRVAE(train, preset=preset, **overrides)
        start = time.perf_counter()
        model.train(random_state=seed, enable_progress_bar=False)
        seconds = time.perf_counter() - start
        own = model.config.predict_method
        rows = []
        for latent_delta in (False, True):
            for method in (own, *(m for m in ("decode", "shift") if m != own)):
                pred = model.predict(
                    adata[ctrl_mask], source_condition="CTRL", target_condition="STIM", method=method,
                    latent_delta=latent_delta,
                )  # fmt: skip
                rows.append(
                    trvae_row(common, preset, method, own, latent_delta, seed, seconds, load, model)
                    | score(pred.X, real, degs, n_bootstrap)
                )
        save_part(parts, cell_type, seed, f"trvae_{preset}", rows, command)
        print(f"done: trVAE {cell_type}, seed {seed} ({seconds:.1f} s)", flush=True)

    if "scgen" in methods and scgen_python is not None:
        load = os.getloadavg()[0]
        pred, info = run_scgen(adata[~held_out], cell_type, seed, scgen_python)
        row = {
            **common, "method": "scGen (pertpy)", "seed": seed, "train_seconds": round(info["train_seconds"], 1),
            "epochs": info["epochs"], "load_average_1min": round(load, 2),
            "versions": {k: info[k] for k in ("pertpy", "scvi-tools", "torch")},
            **score(pred, real, degs, n_bootstrap),
        }  # fmt: skip
        save_part(parts, cell_type, seed, "scgen", [row], command)
        print(f"done: scGen {cell_type}, seed {seed} ({info['train_seconds']:.1f} s)", flush=True)


def merged_rows(parts: Path) -> tuple[list[dict], list[str]]:
    """Every row in ``parts``, by type, seed and method, and the commands that measured them."""
    rows, commands = [], []
    for path in sorted(parts.glob("*.json")):
        part = json.loads(path.read_text())
        rows.extend(part["rows"])
        if part["command"] not in commands:
            commands.append(part["command"])
    order = {"scGen (pertpy)": 2, "identity (CTRL)": 3, "global delta": 4}

    def key(r: dict) -> tuple:
        rank = order.get(r["method"], 0 if r["method"].startswith("trVAE") and "," not in r["method"] else 1)
        return (
            TYPES.index(r["type"]) if r["type"] in TYPES else len(TYPES),
            r["type"],
            rank,
            r.get("seed", -1),
        )

    return sorted(rows, key=key), commands


def parse_overrides(items: list[str]) -> dict:
    """``["beta=5e4", "mmd_on=y"]`` -> ``{"beta": 50000.0, "mmd_on": "y"}`` (JSON values, else strings)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE (a TRVAEConfig field), got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def command(args: argparse.Namespace) -> str:
    parts = ["python benchmarks/trvae_kang.py"]
    for key, value in vars(args).items():
        if key in ("output", "scgen_python", "parts_dir", "merge_only"):
            continue
        if key == "overrides":
            parts.extend(f"--set {item}" for item in value)
            continue
        values = value if isinstance(value, list) else [value]
        parts.append(
            f"--{key.replace('_', '-')} " + " ".join(f"'{v}'" if " " in str(v) else str(v) for v in values)
        )
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--types", nargs="+", default=TYPES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-bootstrap", type=int, default=100)
    parser.add_argument(
        "--jobs", type=int, default=1, help="(type, seed) jobs run in this many processes at once"
    )
    parser.add_argument(
        "--methods", nargs="+", choices=["trvae", "scgen", "baselines"], default=["trvae", "scgen", "baselines"],
        help="what to measure in this run (the output merges every part measured so far)",
    )  # fmt: skip
    parser.add_argument(
        "--merge-only",
        action="store_true",
        help="measure nothing: write the output from the parts measured so far",
    )
    parser.add_argument(
        "--parts-dir", type=Path, default=None,
        help="where each job writes its rows as soon as they are measured (default: beside --output, "
        "<stem>_parts); the output merges every part in it, so delete it to start afresh",
    )  # fmt: skip
    parser.add_argument(
        "--scgen-python", type=Path, default=SCGEN_PYTHON,
        help="Python of scGen's environment (make scgen-env); 'none' skips scGen",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one setting of the preset (a TRVAEConfig field), e.g. --set beta=5e4",
    )  # fmt: skip
    args = parser.parse_args()
    overrides = parse_overrides(args.overrides)
    scgen_python = None if str(args.scgen_python) == "none" else args.scgen_python
    scgen_note = None
    if "scgen" not in args.methods or args.merge_only:
        scgen_python = None
    elif scgen_python is not None and not scgen_python.exists():
        scgen_note = f"scGen skipped: {scgen_python} not found (make scgen-env builds it)"
        print(scgen_note, file=sys.stderr)
        scgen_python = None
    warnings.filterwarnings("ignore", category=FutureWarning)
    load_start = os.getloadavg()
    start = time.perf_counter()
    jobs = [(cell_type, seed) for cell_type in args.types for seed in args.seeds]
    parts = args.parts_dir or args.output.parent / f"{args.output.stem}_parts"
    parts.mkdir(parents=True, exist_ok=True)
    settings = {
        "preset": args.preset, "n_bootstrap": args.n_bootstrap, "methods": args.methods,
        "scgen_python": scgen_python, "overrides": overrides, "parts": parts, "command": command(args),
    }  # fmt: skip
    if args.merge_only:
        jobs = []
    if args.jobs > 1 and jobs:
        import multiprocessing

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [
                pool.submit(
                    run_job, t, s, baselines="baselines" in args.methods and s == args.seeds[0], **settings
                )
                for t, s in jobs
            ]
            for f in futures:
                f.result()
    else:
        for t, s in jobs:
            run_job(t, s, baselines="baselines" in args.methods and s == args.seeds[0], **settings)
    rows, commands = merged_rows(parts)

    header = (
        f"{'held-out type':12s} {'method':44s} {'seed':>4s} {'R2 mean DEG':>11s} {'R2 var DEG':>10s} "
        f"{'R2 mean all':>11s} {'R2 var all':>10s} {'train s':>8s}"
    )
    print("\n" + header)
    print("-" * len(header))
    for r in rows:
        seconds = f"{r['train_seconds']:8.1f}" if "train_seconds" in r else " " * 8
        print(
            f"{r['type']:12s} {r['method']:44s} {r.get('seed', ''):>4} {r['r2_mean_degs']:11.3f} "
            f"{r['r2_var_degs']:10.3f} {r['r2_mean_all']:11.3f} {r['r2_var_all']:10.3f} {seconds}"
        )
    checks = {}
    own = replace(sct.models.trvae.PRESETS[args.preset], **overrides).predict_method
    plain, with_delta = (trvae_name(args.preset, own, own, delta) for delta in (False, True))
    for cell_type in dict.fromkeys(r["type"] for r in rows):
        of_type = [r for r in rows if r["type"] == cell_type]
        trvae = [r for r in of_type if r["method"] == plain]
        scgen = [r for r in of_type if r["method"] == "scGen (pertpy)"]
        delta = next((r for r in of_type if r["method"] == "global delta"), None)
        if not trvae or delta is None:
            continue
        mean_r2 = float(np.mean([r["r2_mean_degs"] for r in trvae]))
        check = {
            "trvae_r2_mean_degs": round(mean_r2, 4),
            "target": TARGETS.get(cell_type),
            "meets_target": None if cell_type not in TARGETS else bool(mean_r2 >= TARGETS[cell_type]),
            "beats_global_delta": bool(mean_r2 > delta["r2_mean_degs"]),
            "max_train_seconds": max(r["train_seconds"] for r in trvae),
        }
        if scgen:
            # trVAE against scGen, seed by seed and averaged over the seeds
            check.update(against_scgen(trvae, scgen))
            latent_delta = [r for r in of_type if r["method"] == with_delta]
            if latent_delta:
                check["latent_delta"] = against_scgen(latent_delta, scgen)
            check["train_seconds_ratio_trvae_over_scgen"] = round(
                float(
                    np.mean([r["train_seconds"] for r in trvae])
                    / np.mean([r["train_seconds"] for r in scgen])
                ),
                2,
            )
        checks[cell_type] = check
    print("\nChecks (averaged over seeds):")
    for cell_type, c in checks.items():
        line = (
            f"{cell_type:12s} trVAE {c['trvae_r2_mean_degs']:.3f} DEGs  beats delta {c['beats_global_delta']}"
        )
        for metric in ("r2_mean_degs", "r2_mean_all", "r2_var_degs"):
            v = c.get(f"{metric}_trvae_vs_scgen")
            if v:
                line += f"  {metric}: {v['trvae']:.3f} vs scGen {v['scgen']:.3f}"
        print(line)
        if "latent_delta" in c:
            print(f"{'':12s} with latent_delta:" + "".join(
                f"  {m.removesuffix('_trvae_vs_scgen')}: {v['trvae']:.3f} vs scGen {v['scgen']:.3f}"
                for m, v in c["latent_delta"].items()
            ))  # fmt: skip
    result = {
        "benchmark": "trvae_kang",
        "command": commands[0] if len(commands) == 1 else commands,
        "protocol": {
            "data": "sct.datasets.kang_ifnb(), layers['lognorm'], 2,000 HVGs (Seurat flavour, all cells)",
            "held_out": "STIM cells of the type; predicted from the type's CTRL cells (CTRL -> STIM)",
            "degs": f"top {N_DEGS} by Wilcoxon score, STIM vs CTRL within the type (sct.metrics.condition_degs)",
            "scgen": "pertpy Scgen, its defaults, train(early_stopping=True), predict(celltype_to_predict=type)",
            "baselines": {
                "identity (CTRL)": "the type's CTRL cells",
                "global delta": "CTRL cells + mean(STIM) - mean(CTRL) over all cells of the other types",
            },
            "bootstrap": f"{args.n_bootstrap} rounds, both sets resampled with replacement at full size",
            "preset": args.preset,
            "overrides": overrides,
            "settings": replace(sct.models.trvae.PRESETS[args.preset], **overrides).to_dict(),
        },
        "environment": {
            "sctransfer": sct.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch_threads_while_training": 1,
            "load_average_at_start": [round(v, 2) for v in load_start],
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
            "total_seconds": round(time.perf_counter() - start, 1),
            "jobs_at_once": args.jobs,
            # with --merge-only the load averages and seconds above are the merge's; each row has its own
            "merge_only": args.merge_only,
            "scgen": scgen_note or "benchmarks/scgen_kang_runner.py in its own environment (make scgen-env)",
        },
        "results": rows,
        "checks": checks,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
