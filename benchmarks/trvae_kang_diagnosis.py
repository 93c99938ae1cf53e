"""Why trVAE under-predicts a held-out Kang type: the seen-type bound, latent neighbours, fold-change slope.

For each held-out type, on the data and protocol of ``benchmarks/trvae_kang.py`` (default preset):

- held out: the model trained without the type's STIM cells (the benchmark's model). Reported: R² of the
  means on the top-100 DEGs, and the fold change it predicts on those DEGs (``mean(pred) - mean(CTRL)``)
  regressed on the real one (``mean(STIM) - mean(CTRL)``): Pearson r and slope (1 = right magnitude).
- latent neighbours: for each CTRL cell of the type, its 15 nearest STIM cells in z (posterior means);
  the share of each type among them: which STIM training cells the decoder has seen nearest to where
  the type's CTRL cells are encoded.
- MMD blind to the type: the held-out model again, with the MMD computed without the type's CTRL cells
  (they still train the encoder and decoder). This needs the labels, so it is a diagnostic, not a
  method: it tests whether the MMD pulling those cells onto other types' STIM cells is what limits the
  prediction. It wraps three private members of the package for the duration of one training.
- seen: the same model trained on every cell, STIM cells of the type included; its prediction of those
  STIM cells bounds what the network can express, and its CTRL reconstruction checks the fit.
- deltas: CTRL plus the mean STIM - CTRL shift of every other type alone, next to the global delta.

    python benchmarks/trvae_kang_diagnosis.py     # writes benchmarks/results/trvae_kang_diagnosis.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from anndata import AnnData
from sklearn.neighbors import NearestNeighbors

import sctransfer as sct
from sctransfer.models import TRVAE
from sctransfer.models.trvae import _data, _module
from trvae_kang import CONDITION_KEY, TYPE_KEY, condition_shift, dense, held_out_split, load_data

RESULTS = Path(__file__).parent / "results" / "trvae_kang_diagnosis.json"
N_NEIGHBOURS = 15


def r2_mean(pred: np.ndarray, real: np.ndarray, degs: np.ndarray) -> float:
    return round(sct.metrics.prediction_r2(pred, real, genes=degs).mean, 4)


def fold_change_fit(pred: np.ndarray, ctrl: np.ndarray, real: np.ndarray, degs: np.ndarray) -> dict:
    predicted = (pred.mean(0) - ctrl.mean(0))[degs]
    observed = (real.mean(0) - ctrl.mean(0))[degs]
    return {
        "fold_change_r": round(float(np.corrcoef(predicted, observed)[0, 1]), 4),
        "fold_change_slope": round(float(np.polyfit(observed, predicted, 1)[0]), 4),
    }


@contextmanager
def mmd_without(cells: np.ndarray) -> Iterator[None]:
    """Leave the rows ``cells`` (a mask over the training AnnData) out of every minibatch's MMD."""
    get_rows, loss, mmd = _data._Rows.__getitem__, _module.TRVAEModule.loss, _module.TRVAEModule.mmd
    current: dict = {}

    def get_rows_flagged(self, idx):
        out = get_rows(self, idx)
        out["in_mmd"] = torch.as_tensor(~cells[np.asarray(idx)])
        return out

    def loss_flagged(self, tensors, *args, **kwargs):
        current["in_mmd"] = tensors["in_mmd"]
        return loss(self, tensors, *args, **kwargs)

    def mmd_flagged(self, representation, condition):
        keep = current["in_mmd"]
        return mmd(self, representation[keep], condition[keep])

    _data._Rows.__getitem__, _module.TRVAEModule.loss, _module.TRVAEModule.mmd = (
        get_rows_flagged, loss_flagged, mmd_flagged,
    )  # fmt: skip
    try:
        yield
    finally:
        _data._Rows.__getitem__, _module.TRVAEModule.loss, _module.TRVAEModule.mmd = get_rows, loss, mmd


def stim_neighbours(model: TRVAE, train_data: AnnData, query: AnnData) -> dict[str, float]:
    """Share of each type among the 15 nearest STIM training cells (in z) of every query cell."""
    z_train = model.get_latent_representation(train_data)
    z_query = model.get_latent_representation(query)
    is_stim = train_data.obs[CONDITION_KEY].astype(str).to_numpy() == "STIM"
    stim_types = train_data.obs[TYPE_KEY].astype(str).to_numpy()[is_stim]
    _, idx = NearestNeighbors(n_neighbors=N_NEIGHBOURS).fit(z_train[is_stim]).kneighbors(z_query)
    counts = Counter(stim_types[idx.ravel()])
    return {t: round(c / idx.size, 4) for t, c in counts.most_common()}


def train(adata: AnnData, seed: int) -> tuple[TRVAE, float]:
    TRVAE.setup_anndata(adata, condition_key=CONDITION_KEY)
    model = TRVAE(adata, preset="default")
    start = time.perf_counter()
    model.train(random_state=seed, enable_progress_bar=False)
    return model, round(time.perf_counter() - start, 1)


def diagnose(adata: AnnData, cell_type: str, seed: int) -> dict:
    split = held_out_split(adata, cell_type)
    types, stim, in_type = split["types"], split["stim"], split["in_type"]
    held_out, ctrl_mask, degs = split["held_out"], split["ctrl"], split["degs"]
    ctrl, real = dense(adata.X[ctrl_mask]), dense(adata.X[held_out])
    out: dict = {"type": cell_type, "seed": seed}

    train_held = adata[~held_out].copy()
    model, seconds = train(train_held, seed)
    pred = model.predict(
        adata[ctrl_mask], source_condition="CTRL", target_condition="STIM", method="decode"
    ).X
    out["held_out"] = {
        "train_seconds": seconds,
        "r2_mean_degs": r2_mean(pred, real, degs),
        **fold_change_fit(pred, ctrl, real, degs),
    }
    out["held_out"]["stim_neighbours_of_ctrl"] = stim_neighbours(model, train_held, adata[ctrl_mask])

    with mmd_without(ctrl_mask[~held_out]):
        model, seconds = train(train_held, seed)
    pred = model.predict(
        adata[ctrl_mask], source_condition="CTRL", target_condition="STIM", method="decode"
    ).X
    out["mmd_blind_to_type"] = {
        "train_seconds": seconds,
        "r2_mean_degs": r2_mean(pred, real, degs),
        **fold_change_fit(pred, ctrl, real, degs),
        "stim_neighbours_of_ctrl": stim_neighbours(model, train_held, adata[ctrl_mask]),
    }

    train_all = adata.copy()
    model, seconds = train(train_all, seed)
    pred = model.predict(
        adata[ctrl_mask], source_condition="CTRL", target_condition="STIM", method="decode"
    ).X
    recon = model.predict(
        adata[ctrl_mask], source_condition="CTRL", target_condition="CTRL", method="decode"
    ).X
    out["seen"] = {
        "train_seconds": seconds,
        "r2_mean_degs": r2_mean(pred, real, degs),
        "ctrl_reconstruction_r2_mean_degs": r2_mean(recon, ctrl, degs),
        **fold_change_fit(pred, ctrl, real, degs),
    }

    others = ~in_type
    deltas = {"global delta": r2_mean(ctrl + condition_shift(adata, stim, others), real, degs)}
    for donor in sorted(set(types[others])):
        d = types == donor
        if (d & (stim == "STIM")).sum() < 5 or (d & (stim == "CTRL")).sum() < 5:
            continue
        deltas[f"{donor} delta"] = r2_mean(ctrl + condition_shift(adata, stim, d), real, degs)
    out["deltas"] = dict(sorted(deltas.items(), key=lambda kv: -kv[1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--types", nargs="+", default=["CD14 Mono", "NK"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    adata = load_data()
    rows = []
    for cell_type in args.types:
        r = diagnose(adata, cell_type, args.seed)
        rows.append(r)
        h, b, s = r["held_out"], r["mmd_blind_to_type"], r["seen"]
        print(f"\n{cell_type} (seed {args.seed})")
        print(
            f"  held out: R2 mean DEG {h['r2_mean_degs']:.3f}  fold change r {h['fold_change_r']:.3f} "
            f"slope {h['fold_change_slope']:.2f}  ({h['train_seconds']} s)"
        )
        near = ", ".join(f"{t} {v:.2f}" for t, v in list(h["stim_neighbours_of_ctrl"].items())[:5])
        print(f"  STIM neighbours (z) of its CTRL cells: {near}")
        print(
            f"  MMD blind to the type: R2 mean DEG {b['r2_mean_degs']:.3f}  fold change r "
            f"{b['fold_change_r']:.3f} slope {b['fold_change_slope']:.2f}  ({b['train_seconds']} s)"
        )
        near = ", ".join(f"{t} {v:.2f}" for t, v in list(b["stim_neighbours_of_ctrl"].items())[:5])
        print(f"    its STIM neighbours (z) of the CTRL cells: {near}")
        print(
            f"  seen:     R2 mean DEG {s['r2_mean_degs']:.3f}  fold change r {s['fold_change_r']:.3f} "
            f"slope {s['fold_change_slope']:.2f}  CTRL reconstruction {s['ctrl_reconstruction_r2_mean_degs']:.3f}"
        )
        print("  deltas:   " + ", ".join(f"{k} {v:.3f}" for k, v in list(r["deltas"].items())[:4]))
    result = {
        "benchmark": "trvae_kang_diagnosis",
        "command": "python benchmarks/trvae_kang_diagnosis.py "
        + f"--types {' '.join(repr(t) for t in args.types)} --seed {args.seed}",
        "preset": "default",
        "n_neighbours": N_NEIGHBOURS,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
