"""Label transfer on every shared task: every method of sct.tl.label_transfer against baselines, one run.

Tasks (query labels are used only for scoring; metrics on the query cells whose type is in the reference,
"unknown" counts as wrong):
- MOp SNARE-seq2 unpaired, RNA (09A-09F) -> ATAC gene activity (09G-09L), coarse (14 types) and fine labels;
  the ensemble also runs with ``query_rep="X_lsi"``, the LSI of the query's 25,734 regions (``sct.pp.lsi``);
- CITE-seq (c1, c2) -> ASAP-seq (c3, c4), 216 antibody tags, ``coarse_cluster`` and ``cluster``;
- pbmc3k -> Kang CTRL and Kang CTRL -> pbmc3k, on the coarse vocabulary of ``benchmarks/castle.py``.

Baselines, computed here on the same shared features: joint PCA + kNN (scikit-learn), Seurat-v3-style
diagonal CCA + kNN, and logistic regression on per-dataset z-scored shared genes.

Also: unknown-type detection (one type removed from the reference: AUROC of the default's confidence for its
query cells, and the fractions that ``unknown_threshold="auto"`` rejects) and the expected calibration
error of the default's confidence on known types.

    python benchmarks/label_transfer.py                 # writes benchmarks/results/label_transfer.json
    python benchmarks/label_transfer.py --methods ensemble knn --tasks mop_coarse   # a subset
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.extmath import randomized_svd

import sctransfer as sct
from castle import COARSE

RESULTS = Path(__file__).parent / "results" / "label_transfer.json"
#: the table that docs/choosing.md includes, written from the same run
TABLE = Path(__file__).parent.parent / "docs" / "_static" / "label_transfer_table.md"
METHODS = ["ensemble", "knn", "scjoint", "castle"]
UNKNOWN = {"mop_coarse": ["Astro", "Oligo"], "pbmc3k_to_kang": ["B", "NK"]}


def load_tasks() -> dict[str, tuple]:
    """name -> (reference, query, reference labels, query labels); labels are removed from .obs."""
    tasks = {}
    ref, query, regions = sct.datasets.mop_snareseq2(split="unpaired", regions=True)
    # the query's own peaks, for the ensemble's query_rep rows
    query.obsm["X_lsi"] = sct.pp.lsi(regions, copy=True).obsm["X_lsi"]
    for level in ("coarse", "fine"):
        key = f"cell_type_{level}"
        tasks[f"mop_{level}"] = (
            ref,
            query,
            ref.obs[key].astype(str).to_numpy(),
            query.obs[key].astype(str).to_numpy(),
        )
    cite = sct.datasets.cite_asap_adt()
    r = cite[cite.obs["batch"].isin(["c1", "c2"]).to_numpy()].copy()
    q = cite[cite.obs["batch"].isin(["c3", "c4"]).to_numpy()].copy()
    for key in ("coarse_cluster", "cluster"):
        tasks[f"cite_asap_{key}"] = (
            r,
            q,
            r.obs[key].astype(str).to_numpy(),
            q.obs[key].astype(str).to_numpy(),
        )
    pbmc = sct.datasets.pbmc3k()
    kang = sct.datasets.kang_ifnb()
    kang = kang[(kang.obs["stim"] == "CTRL").to_numpy()].copy()
    y_pbmc = np.array([COARSE.get(v) for v in pbmc.obs["classified"].astype(str)], dtype=object)
    y_kang = np.array([COARSE.get(v) for v in kang.obs["seurat_annotations"].astype(str)], dtype=object)
    keep_p = np.array([v is not None for v in y_pbmc])
    keep_k = np.array([v is not None for v in y_kang])
    pbmc, kang = pbmc[keep_p].copy(), kang[keep_k].copy()
    y_pbmc, y_kang = y_pbmc[keep_p].astype(str), y_kang[keep_k].astype(str)
    tasks["pbmc3k_to_kang"] = (pbmc, kang, y_pbmc, y_kang)
    tasks["kang_to_pbmc3k"] = (kang, pbmc, y_kang, y_pbmc)
    for a, b, _, _ in tasks.values():  # the methods see values only
        for adata in (a, b):
            adata.obs = adata.obs[[]].copy()
    return tasks


# ------------------------------------------------------------------------------------------ baselines
def _dense_lognorm(adata):
    X = adata.X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float64)
    if np.all(X == np.round(X)):
        X = np.log1p(X / np.maximum(X.sum(axis=1, keepdims=True), 1e-12) * 1e4)
    return X


def _zscored(ref, query):
    shared = ref.var_names.intersection(query.var_names)
    return (
        StandardScaler().fit_transform(_dense_lognorm(ref[:, shared])),
        StandardScaler().fit_transform(_dense_lognorm(query[:, shared])),
    )


def baseline_joint_pca_knn(ref, query, labels, seed=0):
    zr, zq = _zscored(ref, query)
    pca = PCA(n_components=50, random_state=seed).fit(np.vstack([zr, zq]))
    clf = KNeighborsClassifier(n_neighbors=30, metric="cosine").fit(pca.transform(zr), labels)
    return clf.predict(pca.transform(zq))


def baseline_cca_knn(ref, query, labels, seed=0):
    """Seurat v3's diagonal CCA (30 components) of the z-scored genes, L2-normalised, kNN30."""
    zr, zq = _zscored(ref, query)
    U, _, Vt = randomized_svd(zr @ zq.T, 30, random_state=seed)
    u = U / np.linalg.norm(U, axis=1, keepdims=True)
    v = Vt.T / np.linalg.norm(Vt.T, axis=1, keepdims=True)
    return KNeighborsClassifier(n_neighbors=30).fit(u, labels).predict(v)


def baseline_logreg(ref, query, labels, seed=0):
    zr, zq = _zscored(ref, query)
    return LogisticRegression(max_iter=1000, random_state=seed).fit(zr, labels).predict(zq)


BASELINES = {
    "baseline: joint PCA + kNN30": baseline_joint_pca_knn,
    "baseline: CCA + kNN30": baseline_cca_knn,
    "baseline: logistic regression": baseline_logreg,
}


# ------------------------------------------------------------------------------------------ sctransfer
def run_method(ref, query, labels, method, **kwargs):
    ref = ref.copy()
    ref.obs["label"] = labels
    q = query.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sct.tl.label_transfer(ref, q, labels_key="label", method=method, random_state=0, **kwargs)
    return q


def expected_calibration_error(correct, confidence, n_bins=10):
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - confidence[m].mean())
    return float(ece)


def score(truth, pred, ref_labels):
    r = sct.metrics.label_transfer_report(truth, pred, reference_labels=ref_labels)
    return {"accuracy": r.accuracy, "macro_f1": r.macro_f1, "balanced_accuracy": r.balanced_accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--no-baselines", action="store_true")
    args = parser.parse_args()
    tasks = load_tasks()
    names = args.tasks or list(tasks)
    # one untimed call of each fast method first, so that no timed call pays the one-time loading (compiled
    # kernels read from the cache, scikit-learn's imports) that the first call of a process pays
    rna, atac = sct.datasets.simulate_multiome(n_cells=200, n_genes=100, n_types=3)
    for method in {"ensemble", "knn"} & set(args.methods):
        run_method(rna, atac, rna.obs["cell_type"].astype(str).to_numpy(), method)
    rows, calibration, unknown = [], [], []
    for name in names:
        ref, query, y_ref, y_query = tasks[name]
        runs = {f"sctransfer {m}" + (" (default)" if m == "ensemble" else ""): (m, {}) for m in args.methods}
        if "ensemble" in args.methods and "X_lsi" in query.obsm:
            runs["sctransfer ensemble, query_rep=X_lsi"] = ("ensemble", {"query_rep": "X_lsi"})
        for label, (method, options) in runs.items():
            kwargs = {"unknown_threshold": None, **options} if method != "castle" else {}
            t0 = time.perf_counter()
            q = run_method(ref, query, y_ref, method, **kwargs)
            seconds = time.perf_counter() - t0
            pred = q.obs["sct_label"].astype(str).to_numpy()
            rows.append(
                {"task": name, "method": label, "seconds": round(seconds, 2), **score(y_query, pred, y_ref)}
            )
            if method == "ensemble" and not options:
                known = np.isin(y_query, np.unique(y_ref))
                conf = q.obs["sct_label_confidence"].to_numpy()[known]
                correct = (pred == y_query)[known]
                ece = expected_calibration_error(correct, conf)
                calibration.append(
                    {
                        "task": name,
                        "ece": ece,
                        "mean_confidence": float(conf.mean()),
                        "accuracy": float(correct.mean()),
                    }
                )
            print(f"{name:26s} {label:28s} {rows[-1]['accuracy']:.3f} {rows[-1]['macro_f1']:.3f} "
                  f"{rows[-1]['balanced_accuracy']:.3f} {seconds:7.1f}s", flush=True)  # fmt: skip
        if not args.no_baselines:
            for label, fn in BASELINES.items():
                t0 = time.perf_counter()
                pred = fn(ref, query, y_ref)
                seconds = time.perf_counter() - t0
                rows.append(
                    {
                        "task": name,
                        "method": label,
                        "seconds": round(seconds, 2),
                        **score(y_query, pred, y_ref),
                    }
                )
                print(f"{name:26s} {label:28s} {rows[-1]['accuracy']:.3f} {rows[-1]['macro_f1']:.3f} "
                      f"{rows[-1]['balanced_accuracy']:.3f} {seconds:7.1f}s", flush=True)  # fmt: skip
        for held_out in UNKNOWN.get(name, []) if "ensemble" in args.methods else []:
            keep = y_ref != held_out
            q = run_method(ref[keep].copy(), query, y_ref[keep], "ensemble")
            novel = y_query == held_out
            conf = q.obs["sct_label_confidence"].to_numpy()
            rejected = (q.obs["sct_label"].astype(str) == "unknown").to_numpy()
            unknown.append({
                "task": name, "held_out": held_out, "n_cells": int(novel.sum()),
                "auroc": float(roc_auc_score(novel, -conf)),
                "rejected_novel": float(rejected[novel].mean()), "rejected_known": float(rejected[~novel].mean()),
            })  # fmt: skip
            u = unknown[-1]
            print(f"{name:26s} without {held_out:6s} AUROC {u['auroc']:.3f}  rejected novel {u['rejected_novel']:.3f}"
                  f" / known {u['rejected_known']:.3f}", flush=True)  # fmt: skip

    print(f"\n{'task':26s} {'method':34s} {'acc':>6s} {'mF1':>6s} {'bal':>6s} {'time':>8s}")
    for r in rows:
        print(f"{r['task']:26s} {r['method']:34s} {r['accuracy']:6.3f} {r['macro_f1']:6.3f} "
              f"{r['balanced_accuracy']:6.3f} {r['seconds']:7.1f}s")  # fmt: skip
    print("\ncalibration of the default's confidence on known types (expected calibration error, 10 bins)")
    for c in calibration:
        print(
            f"{c['task']:26s} ECE {c['ece']:.3f}  mean confidence {c['mean_confidence']:.3f}  "
            f"accuracy {c['accuracy']:.3f}"
        )
    result = {
        "benchmark": "label_transfer",
        "environment": {
            "sctransfer": sct.__version__,
            "scikit-learn": sklearn.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "results": rows,
        "calibration": calibration,
        "unknown_types": unknown,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    if args.output == RESULTS:
        TABLE.write_text(markdown_table(result))
        print(f"wrote {TABLE}")


def markdown_table(result: dict) -> str:
    """The docs' tables: every task x method, the unknown-type figures and the calibration."""
    lines = [
        "| task | method | accuracy | macro-F1 | balanced acc. | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        lines.append(
            f"| {r['task']} | {r['method']} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | "
            f"{r['balanced_accuracy']:.3f} | {r['seconds']:.1f} |"
        )
    lines += ["", "| task | type removed from the reference | AUROC | rejected: that type / known types |",
              "|---|---|---|---|"]  # fmt: skip
    for u in result["unknown_types"]:
        lines.append(
            f"| {u['task']} | {u['held_out']} | {u['auroc']:.3f} | {u['rejected_novel']:.2f} / "
            f"{u['rejected_known']:.3f} |"
        )
    lines += ["", "| task | expected calibration error | mean confidence | accuracy |", "|---|---|---|---|"]
    for c in result["calibration"]:
        lines.append(f"| {c['task']} | {c['ece']:.3f} | {c['mean_confidence']:.3f} | {c['accuracy']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
