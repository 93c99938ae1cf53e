"""Render the example label-transfer plots in docs/_static from the MOp SNARE-seq2 data.

Run with the shared data directory, for example::

    SCTRANSFER_DATA_DIR=/work/shared/data python docs/_static/make_plots.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

import sctransfer as sct

OUT = Path(__file__).resolve().parent


def main() -> None:
    """Run the kNN label transfer on MOp and save one PNG per plot."""
    plt.rcParams["savefig.dpi"] = 100
    ref, query = sct.datasets.mop_snareseq2(split="unpaired")
    truth = query.obs["cell_type_coarse"].copy()
    sct.tl.label_transfer(ref, query, labels_key="cell_type_coarse", method="knn")
    query.obs["true_type"] = truth

    sct.pl.confusion(query, "true_type", "sct_label", save=OUT / "pl_confusion.png", show=False)
    sct.pl.sankey(query, "true_type", "sct_label", save=OUT / "pl_sankey.png", show=False)
    sct.pl.joint_embedding(ref, query, save=OUT / "pl_joint_embedding.png", show=False)
    sct.pl.confidence(query, threshold=0.4, save=OUT / "pl_confidence.png", show=False)
    plt.close("all")


if __name__ == "__main__":
    main()
