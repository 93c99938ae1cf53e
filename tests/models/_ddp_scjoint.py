"""Train scJoint on a small simulated pair, in one process or under DDP on the CPU (gloo).

Run by ``test_ddp.py``: ``python _ddp_scjoint.py OUT_DIR DEVICES``. With ``DEVICES`` > 1 Lightning's
``"ddp"`` strategy starts the other processes by running this script again. Every process writes a
fingerprint of every minibatch it trained on (``batches_rank{r}.json``); the first process also writes
the predicted query labels (``labels.npy``).
"""

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np

import sctransfer as sct


class Fingerprints(pl.Callback):
    """Record, per epoch, the sum of every minibatch's reference values (a fingerprint of its cells)."""

    def __init__(self) -> None:
        self.seen: list[list[float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.seen.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen[-1].append(round(float(batch["x_ref"].sum()), 3))


def main() -> None:
    out, devices = Path(sys.argv[1]), int(sys.argv[2])
    rna, atac = sct.datasets.simulate_multiome(n_cells=400, n_genes=120, n_types=3, random_state=0)
    joint = sct.models.SCJoint.prepare_anndata(rna, atac, labels_key="cell_type")
    model = sct.models.SCJoint(joint)
    recorder = Fingerprints()
    options = {"strategy": "ddp", "devices": devices} if devices > 1 else {"devices": 1}
    model.train(
        max_epochs=4, max_epochs_stage3=0, batch_size=32, accelerator="cpu", random_state=0,
        enable_progress_bar=False, callbacks=[recorder], **options,
    )  # fmt: skip
    rank = model.trainer.global_rank
    (out / f"batches_rank{rank}.json").write_text(json.dumps(recorder.seen))
    if rank == 0:
        np.save(out / "labels.npy", model.predict()[0]["label"].to_numpy(dtype=str))


if __name__ == "__main__":
    main()
