"""Render the example plots in docs/_static from the real data.

The label-transfer plots come from MOp SNARE-seq2, the alignment scores and the mean-expression scatter
from Kang IFN-beta PBMC. Run with the shared data directory, for example::

    SCTRANSFER_DATA_DIR=/work/shared/data python docs/_static/make_plots.py            # all plots
    SCTRANSFER_DATA_DIR=/work/shared/data python docs/_static/make_plots.py alignment  # one group
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

import sctransfer as sct

OUT = Path(__file__).resolve().parent


def label_transfer_plots() -> None:
    """Run the kNN label transfer on MOp and save one PNG per plot."""
    ref, query = sct.datasets.mop_snareseq2(split="unpaired")
    truth = query.obs["cell_type_coarse"].copy()
    sct.tl.label_transfer(ref, query, labels_key="cell_type_coarse", method="knn")
    query.obs["true_type"] = truth

    sct.pl.confusion(query, "true_type", "sct_label", save=OUT / "pl_confusion.png", show=False)
    sct.pl.sankey(query, "true_type", "sct_label", save=OUT / "pl_sankey.png", show=False)
    sct.pl.joint_embedding(ref, query, save=OUT / "pl_joint_embedding.png", show=False)
    sct.pl.confidence(query, threshold=0.4, save=OUT / "pl_confidence.png", show=False)
    plt.close("all")


def _kang_lognorm_hvg():
    import scanpy as sc
    from anndata import AnnData

    kang = sct.datasets.kang_ifnb()
    kang = kang[kang.obs["seurat_annotations"].notna().to_numpy()].copy()
    adata = AnnData(X=kang.layers["lognorm"].copy(), obs=kang.obs[["stim", "seurat_annotations"]].copy())
    adata.var_names = kang.var_names
    sc.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat")
    return kang, adata[:, adata.var["highly_variable"].to_numpy()].copy()


def alignment_plot() -> None:
    """Align Kang's CTRL and STIM cells (uncorrected PCA, Harmony when installed, BERMUDA) and plot the scores."""
    import numpy as np
    import scanpy as sc

    kang, hvg = _kang_lognorm_hvg()
    batches = kang.obs["stim"].astype(str).to_numpy()
    types = kang.obs["seurat_annotations"].astype(str).to_numpy()
    work = hvg.copy()
    sc.pp.scale(work, max_value=10)
    sc.pp.pca(work, n_comps=20, random_state=0)
    embeddings = {"uncorrected PCA": np.asarray(work.obsm["X_pca"])}
    try:
        import harmonypy
    except ImportError:
        print("harmonypy is not installed: the example shows no Harmony bars")
    else:
        z = np.asarray(harmonypy.run_harmony(embeddings["uncorrected PCA"], kang.obs[["stim"]], ["stim"],
                                             random_state=0, verbose=False).Z_corr)  # fmt: skip
        embeddings["Harmony"] = z.T if z.shape[0] != kang.n_obs else z
    sct.tl.bermuda(kang, batch_key="stim", random_state=0, enable_progress_bar=False)
    embeddings["BERMUDA"] = kang.obsm["X_bermuda"]
    results = {}
    for name, emb in embeddings.items():
        umap_2d = sct.metrics.alignment_umap(emb, random_state=0)
        results[name] = {
            "silhouette": sct.metrics.silhouette_score(emb, types),
            "batch_entropy": sct.metrics.batch_mixing_entropy(emb, batches),
            "knn_purity": sct.metrics.knn_purity(emb, types),
            "divergence": sct.metrics.divergence_score(umap_2d, batches, types),
            "entropy": sct.metrics.entropy_score(umap_2d, batches, types),
        }
    print(results)
    sct.pl.alignment_scores(results, save=OUT / "pl_alignment_scores.png", show=False)
    plt.close("all")


def prediction_plot() -> None:
    """Predict Kang's stimulated CD14 monocytes with trVAE (held out from training) and plot the means."""
    _, adata = _kang_lognorm_hvg()
    is_type = (adata.obs["seurat_annotations"] == "CD14 Mono").to_numpy()
    is_stim = (adata.obs["stim"] == "STIM").to_numpy()
    train = adata[~(is_type & is_stim)].copy()
    model = sct.tl.trvae(train, condition_key="stim", random_state=0, enable_progress_bar=False)
    ctrl, real = adata[is_type & ~is_stim].copy(), adata[is_type & is_stim].copy()
    pred = model.predict(ctrl, source_condition="CTRL", target_condition="STIM")
    ax = sct.pl.mean_expression(pred, real, control=ctrl, top_genes=10, show=False)
    ax.set_title("trVAE, CD14 Mono (Kang): predicted vs real STIM")
    ax.figure.savefig(OUT / "pl_mean_expression.png", bbox_inches="tight")
    plt.close("all")


PLOTS = {"label_transfer": label_transfer_plots, "alignment": alignment_plot, "prediction": prediction_plot}


def main(names: list[str]) -> None:
    """Render the named groups of plots (all by default)."""
    plt.rcParams["savefig.dpi"] = 100
    for name in names or list(PLOTS):
        PLOTS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
