"""trVAE on Kang IFN-beta PBMC: predict the stimulated cells of a held-out type, against two baselines.

Protocol:
- data: ``sct.datasets.kang_ifnb()`` (1,000 CTRL + 1,000 STIM cells), ``layers["lognorm"]`` (Seurat
  LogNormalize, natural log), 2,000 highly variable genes (``sc.pp.highly_variable_genes``, Seurat
  flavour, on all cells).
- for each held-out type (CD14 Mono, CD4 Naive T, NK, B): the STIM cells of that type are removed, the
  model trains on every other cell (``condition_key="stim"``), and the type's CTRL cells are predicted
  under STIM (encoded with CTRL, decoded with STIM; posterior mean).
- baselines in the same run: identity (the CTRL cells themselves) and the global delta (CTRL cells plus
  the mean STIM - CTRL difference of all the other cells, the shift scGen applies in its latent space,
  here in expression space).
- scoring: R² (squared Pearson) of per-gene means and of per-gene variances between predicted and real
  STIM cells of the type (``sct.metrics.prediction_r2``), on the top-100 DEGs (STIM vs CTRL within the
  type, Wilcoxon, ranked by score: ``sct.metrics.condition_degs``) and on all 2,000 genes; the bootstrap
  columns resample both sets with replacement at full size.
- timing: wall time of ``TRVAE.train`` (one torch thread), with the machine's load average recorded.

    python benchmarks/trvae_kang.py            # writes benchmarks/results/trvae_kang.json
    python benchmarks/trvae_kang.py --types 'CD14 Mono' --set beta=5e4 --set mmd_on=y --output /tmp/t.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import scanpy as sc
import scipy.sparse as sp
import torch
from anndata import AnnData

import sctransfer as sct
from sctransfer.models import TRVAE

RESULTS = Path(__file__).parent / "results" / "trvae_kang.json"
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


def run_type(
    adata: AnnData, cell_type: str, *, preset: str, seed: int, n_bootstrap: int, **config
) -> list[dict]:
    split = held_out_split(adata, cell_type)
    held_out, ctrl_mask, degs = split["held_out"], split["ctrl"], split["degs"]
    ctrl = dense(adata.X[ctrl_mask])
    real = dense(adata.X[held_out])
    rows = []
    common = {"type": cell_type, "n_ctrl": int(ctrl_mask.sum()), "n_stim": int(held_out.sum())}

    train = adata[~held_out].copy()
    TRVAE.setup_anndata(train, condition_key=CONDITION_KEY)
    model = TRVAE(train, preset=preset, **config)
    start = time.perf_counter()
    model.train(random_state=seed, enable_progress_bar=False)
    seconds = time.perf_counter() - start
    pred = model.predict(adata[ctrl_mask], source_condition="CTRL", target_condition="STIM").X
    rows.append(
        {
            **common, "method": f"trVAE {preset}", "seed": seed, "train_seconds": round(seconds, 1),
            "epochs": model.train_info_["epochs"], "best_epoch": model.train_info_["best_epoch"],
            **score(pred, real, degs, n_bootstrap),
        }
    )  # fmt: skip
    rows.append({**common, "method": "identity (CTRL)", **score(ctrl, real, degs, n_bootstrap)})
    delta = condition_shift(adata, split["stim"], ~split["in_type"])
    rows.append({**common, "method": "global delta", **score(ctrl + delta, real, degs, n_bootstrap)})
    return rows


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
        if key == "output":
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n-bootstrap", type=int, default=100)
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one setting of the preset (a TRVAEConfig field), e.g. --set beta=5e4",
    )  # fmt: skip
    args = parser.parse_args()
    overrides = parse_overrides(args.overrides)
    warnings.filterwarnings("ignore", category=FutureWarning)
    load_start = os.getloadavg()
    start = time.perf_counter()
    adata = load_data()
    rows = []
    for cell_type in args.types:
        for seed in args.seeds:
            type_rows = run_type(
                adata, cell_type, preset=args.preset, seed=seed, n_bootstrap=args.n_bootstrap, **overrides
            )
            rows.extend(type_rows if seed == args.seeds[0] else type_rows[:1])
            print(f"done: {cell_type}, seed {seed} ({type_rows[0]['train_seconds']} s)", flush=True)

    header = (
        f"{'held-out type':12s} {'method':18s} {'R2 mean DEG':>11s} {'R2 var DEG':>10s} "
        f"{'R2 mean all':>11s} {'R2 var all':>10s} {'train s':>8s}"
    )
    print("\n" + header)
    print("-" * len(header))
    for r in rows:
        seconds = f"{r['train_seconds']:8.1f}" if "train_seconds" in r else " " * 8
        print(
            f"{r['type']:12s} {r['method']:18s} {r['r2_mean_degs']:11.3f} {r['r2_var_degs']:10.3f} "
            f"{r['r2_mean_all']:11.3f} {r['r2_var_all']:10.3f} {seconds}"
        )
    checks = {}
    for cell_type in args.types:
        trvae = [r for r in rows if r["type"] == cell_type and r["method"].startswith("trVAE")]
        delta = next(r for r in rows if r["type"] == cell_type and r["method"] == "global delta")
        mean_r2 = float(np.mean([r["r2_mean_degs"] for r in trvae]))
        checks[cell_type] = {
            "trvae_r2_mean_degs": round(mean_r2, 4),
            "target": TARGETS.get(cell_type),
            "meets_target": None if cell_type not in TARGETS else bool(mean_r2 >= TARGETS[cell_type]),
            "beats_global_delta": bool(mean_r2 > delta["r2_mean_degs"]),
            "max_train_seconds": max(r["train_seconds"] for r in trvae),
        }
    print("\nTargets (R2 of the means on the top-100 DEGs, averaged over seeds):")
    for cell_type, c in checks.items():
        print(
            f"{cell_type:12s} {c['trvae_r2_mean_degs']:.3f}  target {c['target']}  meets {c['meets_target']}  "
            f"beats delta {c['beats_global_delta']}  train {c['max_train_seconds']:.1f} s"
        )
    result = {
        "benchmark": "trvae_kang",
        "command": command(args),
        "protocol": {
            "data": "sct.datasets.kang_ifnb(), layers['lognorm'], 2,000 HVGs (Seurat flavour, all cells)",
            "held_out": "STIM cells of the type; predicted from the type's CTRL cells (CTRL -> STIM)",
            "degs": f"top {N_DEGS} by Wilcoxon score, STIM vs CTRL within the type (sct.metrics.condition_degs)",
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
        },
        "results": rows,
        "checks": checks,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
