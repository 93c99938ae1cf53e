"""scGen (pertpy) on one held-out type: trains on an h5ad and writes the predicted STIM cells.

Runs in its own environment (``make scgen-env`` builds ``.venv-scgen`` with pertpy beside the CPU torch);
``benchmarks/trvae_kang.py`` calls it once per held-out type and seed, and scores the predictions itself
with the same DEGs and scorer as trVAE. pertpy's defaults throughout: ``Scgen(adata)`` (800 hidden units,
2 layers, latent 100), ``train(early_stopping=True)`` (scvi-tools' epoch heuristic, 90/10 split, early
stopping on the validation ELBO), ``predict`` (latent delta between the conditions over the other types,
each type upsampled to the largest).

    .venv-scgen/bin/python benchmarks/scgen_kang_runner.py train.h5ad --cell-type NK --seed 0 --output pred.npz
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "input", help="h5ad: the training cells (log-normalised X), with the held-out STIM cells removed"
    )
    parser.add_argument("--cell-type", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--condition-key", default="stim")
    parser.add_argument("--type-key", default="seurat_annotations")
    parser.add_argument("--control", default="CTRL")
    parser.add_argument("--stimulated", default="STIM")
    parser.add_argument("--output", required=True, help=".npz with the predicted values and the timings")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import anndata as ad
    import pertpy as pt
    import scvi
    import torch

    torch.set_num_threads(1)
    scvi.settings.seed = args.seed
    adata = ad.read_h5ad(args.input)
    pt.tl.Scgen.setup_anndata(adata, batch_key=args.condition_key, labels_key=args.type_key)
    model = pt.tl.Scgen(adata)
    start = time.perf_counter()
    model.train(early_stopping=True, accelerator="cpu", enable_progress_bar=False)
    seconds = time.perf_counter() - start
    pred, _ = model.predict(
        ctrl_key=args.control, stim_key=args.stimulated, celltype_to_predict=args.cell_type
    )
    history = model.history.get("elbo_train")
    info = {
        "train_seconds": seconds,
        "epochs": None if history is None else len(history),
        "pertpy": pt.__version__,
        "scvi-tools": scvi.__version__,
        "torch": torch.__version__,
    }
    X = pred.X.toarray() if hasattr(pred.X, "toarray") else np.asarray(pred.X)
    np.savez(args.output, X=X.astype(np.float32), info=json.dumps(info))


if __name__ == "__main__":
    main()
