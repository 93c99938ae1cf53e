"""RNA -> ATAC label transfer on MOp SNARE-seq2 (unpaired protocol), sctransfer against baselines.

Protocol: reference = RNA of libraries 09A-09F, query = ATAC gene activity of 09G-09L, "Mis" dropped,
14 coarse types. Every method sees the same shared genes; the query labels are only used for scoring.

    python benchmarks/label_transfer_mop.py            # writes benchmarks/results/label_transfer_mop.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import scanpy as sc
import sklearn
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

import sctransfer as sct

RESULTS = Path(__file__).parent / "results" / "label_transfer_mop.json"


def lognorm_dense(adata):
    a = adata.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    return a.X.toarray()


def baseline_joint_pca_knn(ref, query, labels, k=30, n_comps=50, seed=0):
    """Per-dataset z-scored log-normalised genes, joint PCA (scikit-learn), kNN vote (scikit-learn)."""
    zr = StandardScaler().fit_transform(lognorm_dense(ref))
    zq = StandardScaler().fit_transform(lognorm_dense(query))
    pca = PCA(n_components=n_comps, random_state=seed).fit(np.vstack([zr, zq]))
    clf = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(pca.transform(zr), labels)
    return clf.predict(pca.transform(zq))


def baseline_logreg_binary(ref, query, labels, seed=0):
    """Logistic regression trained on binarised reference genes, applied to binarised query genes."""
    xr = (ref.X > 0).astype(np.float32)
    xq = (query.X > 0).astype(np.float32)
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(xr, labels)
    return clf.predict(xq)


def baseline_majority(ref, query, labels):
    values, counts = np.unique(labels, return_counts=True)
    return np.full(query.n_obs, values[counts.argmax()])


def run_sctransfer(ref, query, labels_key, method, **kwargs):
    q = query.copy()
    sct.tl.label_transfer(ref.copy(), q, labels_key=labels_key, method=method, random_state=0, **kwargs)
    return q.obs["sct_label"].astype(str).to_numpy()


def unknown_auroc(ref, query, truth, labels_key, held_out, method, **kwargs):
    """Drop one type from the reference; AUROC of low scores for telling its query cells apart.

    Scores: the confidence (always) and, for scJoint, the mean similarity to the voting neighbours.
    """
    keep = ref.obs[labels_key].astype(str).to_numpy() != held_out
    q = query.copy()
    sct.tl.label_transfer(
        ref[keep].copy(),
        q,
        labels_key=labels_key,
        method=method,
        random_state=0,
        unknown_threshold=None,
        **kwargs,
    )
    is_novel = truth == held_out
    out = {"n_query_cells": int(is_novel.sum())}
    for score in ("confidence", "similarity"):
        column = f"sct_label_{score}"
        if column in q.obs:
            out[f"auroc_{score}"] = float(roc_auc_score(is_novel, -q.obs[column].to_numpy()))
    # what the default threshold does: rejected fraction of the novel type vs of the known types
    threshold = 0.4
    rejected = q.obs["sct_label_confidence"].to_numpy() < threshold
    out["rejected_novel_at_0.4"] = float(rejected[is_novel].mean())
    out["rejected_known_at_0.4"] = float(rejected[~is_novel].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels-key", default="cell_type_coarse")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--held-out", nargs="+", default=["Astro", "Oligo"], help="types removed for the unknown test"
    )
    args = parser.parse_args()

    ref, query = sct.datasets.mop_snareseq2(split="unpaired")
    labels_key = args.labels_key
    truth = query.obs[labels_key].astype(str).to_numpy()
    fine = query.obs["cell_type_fine"].copy()
    query.obs = query.obs.drop(columns=[c for c in query.obs.columns if c.startswith("cell_type")])
    ref_labels = ref.obs[labels_key].astype(str).to_numpy()
    shared = ref.var_names.intersection(query.var_names)
    ref_s, query_s = ref[:, shared].copy(), query[:, shared].copy()

    runs = {
        "sctransfer scjoint (default)": lambda: run_sctransfer(
            ref, query, labels_key, "scjoint", unknown_threshold=None
        ),
        "sctransfer scjoint (faithful=True)": lambda: run_sctransfer(
            ref, query, labels_key, "scjoint", preset="faithful"
        ),
        "sctransfer knn (joint PCA + exact kNN, k=30)": lambda: run_sctransfer(ref, query, labels_key, "knn"),
        "baseline: joint PCA + kNN (scikit-learn, k=30)": lambda: baseline_joint_pca_knn(
            ref_s, query_s, ref_labels
        ),
        "baseline: logistic regression, binarised genes": lambda: baseline_logreg_binary(
            ref_s, query_s, ref_labels
        ),
        "baseline: majority class": lambda: baseline_majority(ref_s, query_s, ref_labels),
    }
    rows = []
    for name, fn in runs.items():
        t0 = time.perf_counter()
        pred = fn()
        seconds = time.perf_counter() - t0
        report = sct.metrics.label_transfer_report(truth, pred, reference_labels=ref_labels)
        rows.append({"method": name, "seconds": round(seconds, 2), **report.to_dict()})
        print(f"done: {name} ({seconds:.1f} s)", flush=True)

    print(
        f"\nMOp SNARE-seq2 unpaired: {ref.n_obs} reference RNA cells -> {query.n_obs} query ATAC cells, "
        f"{len(shared)} shared genes, {len(np.unique(ref_labels))} types ({labels_key})"
    )
    header = f"{'method':52s} {'accuracy':>8s} {'macro-F1':>8s} {'bal.acc':>8s} {'time (s)':>9s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['method']:52s} {r['accuracy']:8.3f} {r['macro_f1']:8.3f} {r['balanced_accuracy']:8.3f} "
            f"{r['seconds']:9.2f}"
        )

    # fine labels (23 types upstream; those present in the reference)
    fine_truth = fine.astype(str).to_numpy()
    fine_ref = ref.obs["cell_type_fine"].astype(str).to_numpy()
    fine_rows = []
    for name, method, kwargs in [
        ("sctransfer scjoint (default)", "scjoint", {"unknown_threshold": None}),
        ("sctransfer knn", "knn", {}),
    ]:
        t0 = time.perf_counter()
        pred = run_sctransfer(ref, query, "cell_type_fine", method, **kwargs)
        seconds = time.perf_counter() - t0
        report = sct.metrics.label_transfer_report(fine_truth, pred, reference_labels=fine_ref)
        fine_rows.append({"method": name, "seconds": round(seconds, 2), **report.to_dict()})
    print(f"\nfine labels ({len(np.unique(fine_ref))} types in the reference)")
    for r in fine_rows:
        print(
            f"{r['method']:52s} {r['accuracy']:8.3f} {r['macro_f1']:8.3f} {r['balanced_accuracy']:8.3f} "
            f"{r['seconds']:9.2f}"
        )

    # unknown types: drop one type from the reference, score how well the confidence flags its cells
    unknown_rows = []
    for held_out in args.held_out:
        for name, method in [("sctransfer scjoint (default)", "scjoint"), ("sctransfer knn", "knn")]:
            unknown_rows.append(
                {
                    "method": name,
                    "held_out": held_out,
                    **unknown_auroc(ref, query, truth, labels_key, held_out, method),
                }
            )
    print(
        "\nunknown-type detection (type removed from the reference): AUROC of low scores for its query cells,"
    )
    print("and the fraction rejected at confidence < 0.4 (novel type / known types)")
    for r in unknown_rows:
        sim = f"{r['auroc_similarity']:.3f}" if "auroc_similarity" in r else "  -  "
        print(
            f"{r['method']:30s} {r['held_out']:6s} ({r['n_query_cells']:4d} cells)  AUROC confidence "
            f"{r['auroc_confidence']:.3f}  similarity {sim}  rejected {r['rejected_novel_at_0.4']:.3f} / "
            f"{r['rejected_known_at_0.4']:.3f}"
        )

    result = {
        "benchmark": "label_transfer_mop",
        "protocol": "reference RNA 09A-09F, query ATAC gene activity 09G-09L, Mis dropped",
        "labels_key": labels_key,
        "n_reference": int(ref.n_obs),
        "n_query": int(query.n_obs),
        "n_shared_features": len(shared),
        "environment": {
            "sctransfer": sct.__version__,
            "scikit-learn": sklearn.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "results": rows,
        "fine_labels": fine_rows,
        "unknown_type_auroc": unknown_rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
