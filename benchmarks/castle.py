"""CaSTLe across datasets: pbmc3k <-> Kang CTRL, coarse and fine labels, against baselines; plus rejection.

Protocol:
- source/target pairs: pbmc3k -> Kang CTRL and Kang CTRL -> pbmc3k, both log-normalised (Seurat
  LogNormalize, natural log; ``layers["lognorm"]``). Kang's Eryth cells are left out (none are CTRL).
- coarse vocabulary shared by both datasets (``COARSE``); the fine level splits monocytes (CD14 / CD16) and
  CD4 T cells (naive / memory). Kang's "T activated" has no fine counterpart and is left out at that level.
- methods: CaSTLe default and reference presets (plus a few variants of the default), logistic
  regression on per-dataset z-scored shared genes, and the foundation's kNN label transfer
  (``sct.tl.label_transfer(method="knn")``, which uses log-normalised values as they are). Target labels
  are used only for scoring; rejected cells count as wrong for accuracy and macro-F1.
- seeds: the CaSTLe default (with and without self-training) is also run with ``random_state`` 0-4 (its
  detection matching draws at random).
- rejection: in both directions, one coarse type at a time is removed from the source; the table gives the
  fraction of target cells of that type that CaSTLe rejects ("unknown") against the fraction of the
  other target cells.

    python benchmarks/castle.py            # writes benchmarks/results/castle.json
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
import sklearn
import xgboost
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import sctransfer as sct

RESULTS = Path(__file__).parent / "results" / "castle.json"
LAYER = "lognorm"
# xgboost threads; results do not depend on it. One thread: on a 2-core machine shared with other jobs,
# OpenMP threads that wait by spinning made two threads up to 10x slower than one.
N_JOBS = 1
N_TIMINGS = 3

COARSE = {
    "Naive CD4 T": "CD4 T", "Memory CD4 T": "CD4 T", "CD4 Naive T": "CD4 T", "CD4 Memory T": "CD4 T",
    "T activated": "CD4 T", "CD8 T": "CD8 T", "NK": "NK", "B": "B", "B Activated": "B",
    "CD14+ Mono": "Mono", "FCGR3A+ Mono": "Mono", "CD14 Mono": "Mono", "CD16 Mono": "Mono",
    "DC": "DC", "pDC": "DC", "Platelet": "Mk", "Mk": "Mk",
}  # fmt: skip
FINE = {
    "Naive CD4 T": "CD4 Naive T", "CD4 Naive T": "CD4 Naive T",
    "Memory CD4 T": "CD4 Memory T", "CD4 Memory T": "CD4 Memory T",
    "CD8 T": "CD8 T", "NK": "NK", "B": "B", "B Activated": "B",
    "CD14+ Mono": "CD14 Mono", "CD14 Mono": "CD14 Mono",
    "FCGR3A+ Mono": "CD16 Mono", "CD16 Mono": "CD16 Mono",
    "DC": "DC", "pDC": "DC", "Platelet": "Mk", "Mk": "Mk",
}  # fmt: skip
LEVELS = {"coarse": COARSE, "fine": FINE}

CASTLE_VARIANTS = {
    "CaSTLe default (one-vs-rest, threshold 0.5)": {},
    "CaSTLe default, no rejection (threshold 0)": {"threshold": 0.0},
    "CaSTLe default, multiclass": {"mode": "multiclass"},
    "CaSTLe default without detection matching": {"match_detection": False},
    "CaSTLe default without class weights": {"class_weight": "none"},
    "CaSTLe default + self-training (1 round)": {"self_training": 1},
    "CaSTLe default + self-training (2 rounds)": {"self_training": 2},
    "CaSTLe reference (one-vs-rest)": {"preset": "faithful"},
    "CaSTLe reference, multiclass": {"preset": "faithful", "mode": "multiclass"},
}
REJECTION_TYPES = ["B", "CD4 T", "CD8 T", "Mono", "NK"]
REJECTION_PRESETS = {
    "default": {},
    "default + self-training (1 round)": {"self_training": 1},
    "reference": {"preset": "faithful"},
}
SEED_VARIANTS = {
    "CaSTLe default (one-vs-rest, threshold 0.5)": {},
    "CaSTLe default + self-training (1 round)": {"self_training": 1},
}


def load_data():
    pbmc = sct.datasets.pbmc3k()
    kang = sct.datasets.kang_ifnb()
    keep = (kang.obs["stim"] == "CTRL").to_numpy() & (kang.obs["seurat_annotations"] != "Eryth").to_numpy()
    kang = kang[keep].copy()
    labels = {
        "pbmc3k": pbmc.obs["classified"].astype(str).to_numpy(),
        "Kang CTRL": kang.obs["seurat_annotations"].astype(str).to_numpy(),
    }
    for adata in (pbmc, kang):  # the methods see the values and nothing of the annotation
        adata.obs = adata.obs[[]].copy()
    data = {"pbmc3k": pbmc, "Kang CTRL": kang}
    return data, labels


def subset(adata, keep):
    return adata[keep].copy() if not keep.all() else adata


def run_castle(source, target, labels, **kwargs):
    source = source.copy()
    source.obs["label"] = labels
    t0 = time.perf_counter()
    out = sct.tl.castle(
        source, target, labels_key="label", source_layer=LAYER, target_layer=LAYER, n_jobs=N_JOBS, copy=True,
        **kwargs,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    return out.obs["castle"].astype(str).to_numpy(), seconds, out.uns["castle"]


def run_logreg(source, target, labels, seed=0):
    """Logistic regression on the shared genes, each dataset z-scored on its own."""
    t0 = time.perf_counter()
    shared = source.var_names.intersection(target.var_names)

    def zscore(adata):
        X = adata[:, shared].layers[LAYER]
        return StandardScaler().fit_transform(X.toarray() if sp.issparse(X) else np.asarray(X))

    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(zscore(source), labels)
    pred = clf.predict(zscore(target))
    return pred, time.perf_counter() - t0


def run_knn(source, target, labels):
    """The foundation's kNN label transfer on the log-normalised values."""
    source = source.copy()
    source.obs["label"] = labels
    t0 = time.perf_counter()
    out = sct.tl.label_transfer(
        source,
        target.copy(),
        labels_key="label",
        method="knn",
        layer=LAYER,
        query_layer=LAYER,
        copy=True,
    )
    return out.obs["sct_label"].astype(str).to_numpy(), time.perf_counter() - t0


def score(truth, pred, source_labels):
    report = sct.metrics.label_transfer_report(truth, pred, reference_labels=source_labels)
    out = report.to_dict(tables=True)
    out["fraction_rejected"] = report.n_rejected / report.n_evaluated if report.n_evaluated else float("nan")
    return out


def castle_run(**kwargs):
    def fn(source, target, y_source):
        return run_castle(source, target, y_source, **kwargs)[:2]

    return fn


def method_runs():
    runs = {name: castle_run(**kw) for name, kw in CASTLE_VARIANTS.items()}
    runs["logistic regression (per-dataset z-scored shared genes)"] = run_logreg
    runs["kNN label transfer (sct.tl.label_transfer, knn)"] = run_knn
    return runs


def directions(data, labels, level):
    mapping = LEVELS[level]
    mapped = {
        name: np.array([mapping.get(v) for v in values], dtype=object) for name, values in labels.items()
    }
    for src, tgt in (("pbmc3k", "Kang CTRL"), ("Kang CTRL", "pbmc3k")):
        keep_s = np.array([v is not None for v in mapped[src]])
        keep_t = np.array([v is not None for v in mapped[tgt]])
        yield (
            f"{src} -> {tgt}",
            subset(data[src], keep_s),
            subset(data[tgt], keep_t),
            mapped[src][keep_s].astype(str),
            mapped[tgt][keep_t].astype(str),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the CaSTLe default's seed spread")
    args = parser.parse_args()
    start = time.perf_counter()
    load_start = os.getloadavg()
    data, labels = load_data()

    rows = []
    for level in LEVELS:
        for direction, source, target, y_source, y_target in directions(data, labels, level):
            for method, fn in method_runs().items():
                pred, seconds = fn(source, target, y_source)
                rows.append(
                    {
                        "direction": direction,
                        "level": level,
                        "method": method,
                        "seconds": round(seconds, 2),
                        "n_source": int(source.n_obs),
                        "n_target": int(target.n_obs),
                        **score(y_target, pred, y_source),
                    }
                )
                print(f"done: {direction} {level} {method} ({seconds:.1f} s)", flush=True)

    # seed spread of the default (detection matching draws at random)
    seeds = []
    for method, kw in SEED_VARIANTS.items():
        for direction, source, target, y_source, y_target in directions(data, labels, "coarse"):
            accs, f1s, rejected = [], [], []
            for seed in range(args.seeds):
                pred, _, _ = run_castle(source, target, y_source, random_state=seed, **kw)
                s = score(y_target, pred, y_source)
                accs.append(s["accuracy"])
                f1s.append(s["macro_f1"])
                rejected.append(s["fraction_rejected"])
            seeds.append(
                {
                    "direction": direction,
                    "level": "coarse",
                    "method": method,
                    "random_state": list(range(args.seeds)),
                    "accuracy": accs,
                    "macro_f1": f1s,
                    "fraction_rejected": rejected,
                }
            )

    # wall time of the default on a (possibly shared) machine: several runs
    timings = []
    for method, kw in SEED_VARIANTS.items():
        for direction, source, target, y_source, _ in directions(data, labels, "coarse"):
            times = [run_castle(source, target, y_source, **kw)[1] for _ in range(N_TIMINGS)]
            timings.append(
                {
                    "direction": direction,
                    "level": "coarse",
                    "method": method,
                    "n_jobs": N_JOBS,
                    "seconds": times,
                }
            )

    # rejection: remove one type from the source
    rejection = []
    for direction, source, target, y_source, y_target in directions(data, labels, "coarse"):
        for removed in REJECTION_TYPES:
            keep = y_source != removed
            for preset, kw in REJECTION_PRESETS.items():
                pred, _, _ = run_castle(subset(source, keep), target, y_source[keep], **kw)
                rejected = pred == "unknown"
                is_removed = y_target == removed
                rejection.append(
                    {
                        "direction": direction,
                        "removed_type": removed,
                        "preset": preset,
                        "n_removed_type_in_target": int(is_removed.sum()),
                        "rejected_removed_type": float(rejected[is_removed].mean()),
                        "rejected_other_types": float(rejected[~is_removed].mean()),
                        "removed_type_called_as": {
                            str(k): int(v)
                            for k, v in zip(*np.unique(pred[is_removed], return_counts=True), strict=True)
                        },
                    }
                )
            print(f"done: rejection, {direction}, {removed} removed", flush=True)

    header = (
        f"{'direction':22s} {'level':6s} {'method':56s} {'accuracy':>8s} {'macro-F1':>8s} {'rejected':>8s} "
        f"{'time (s)':>8s}"
    )
    print("\n" + header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['direction']:22s} {r['level']:6s} {r['method']:56s} {r['accuracy']:8.3f} "
            f"{r['macro_f1']:8.3f} {r['fraction_rejected']:8.3f} {r['seconds']:8.2f}"
        )
    print(f"\nCaSTLe default, coarse, random_state 0-{args.seeds - 1} (mean +- sd; min-max)")
    for s in seeds:
        acc, f1 = np.array(s["accuracy"]), np.array(s["macro_f1"])
        print(
            f"{s['method'][:42]:42s} {s['direction']:22s} accuracy {acc.mean():.3f} +- {acc.std():.3f} "
            f"({acc.min():.3f}-{acc.max():.3f})   macro-F1 {f1.mean():.3f} +- {f1.std():.3f} "
            f"({f1.min():.3f}-{f1.max():.3f})"
        )
    print(f"\nCaSTLe default, coarse, wall time of fit + predict (n_jobs={N_JOBS}, {N_TIMINGS} runs)")
    for t in timings:
        print(f"{t['method'][:42]:42s} {t['direction']:22s} " + "  ".join(f"{v:.2f} s" for v in t["seconds"]))
    print("\nRejection (coarse): one type removed from the source, threshold 0.5")
    print(
        f"{'direction':22s} {'removed type':12s} {'preset':34s} {'n':>4s} {'rejected: removed type':>23s} "
        f"{'other types':>12s}"
    )
    for r in rejection:
        print(
            f"{r['direction']:22s} {r['removed_type']:12s} {r['preset']:34s} {r['n_removed_type_in_target']:4d} "
            f"{r['rejected_removed_type']:23.3f} {r['rejected_other_types']:12.3f}"
        )

    result = {
        "benchmark": "castle",
        "protocol": {
            "directions": ["pbmc3k -> Kang CTRL", "Kang CTRL -> pbmc3k"],
            "values": "layers['lognorm'] of both (Seurat LogNormalize, natural log)",
            "coarse": COARSE,
            "fine": FINE,
            "left_out": "Kang Eryth (both levels; none in CTRL); Kang 'T activated' at the fine level",
            "scoring": "sct.metrics.label_transfer_report with reference_labels = source labels; "
            "rejected cells count as wrong",
            "rejection": "both directions, coarse, one type removed from the source",
        },
        "environment": {
            "sctransfer": sct.__version__,
            "xgboost": xgboost.__version__,
            "scikit-learn": sklearn.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "n_jobs": N_JOBS,
            "load_average_at_start": [round(v, 2) for v in load_start],
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
            "total_seconds": round(time.perf_counter() - start, 1),
        },
        "results": rows,
        "seed_spread": seeds,
        "timing": timings,
        "rejection": rejection,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
