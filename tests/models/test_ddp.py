"""Distributed data parallel training on the CPU: two processes (gloo) against one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sctransfer as sct

SCRIPT = Path(__file__).with_name("_ddp_scjoint.py")


def _train(out: Path, devices: int) -> None:
    out.mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), str(devices)], env=env, cwd=out, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP through Lightning's launcher")
def test_two_processes_share_each_epoch_and_agree_with_one(tmp_path):
    _train(tmp_path / "one", 1)
    _train(tmp_path / "two", 2)
    single = json.loads((tmp_path / "one" / "batches_rank0.json").read_text())
    ranks = [json.loads((tmp_path / "two" / f"batches_rank{r}.json").read_text()) for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 4  # epochs
    for epoch, steps in enumerate(single):
        first, second = ranks[0][epoch], ranks[1][epoch]
        # equal numbers of steps (DDP needs them), each about half of the single process's
        assert len(first) == len(second) == -(-len(steps) // 2)
        # different minibatches in the two processes, and together those of the single process
        assert len(set(first) & set(second)) <= len(steps) % 2  # a padding step repeats the first
        assert set(first) | set(second) == set(steps)
    assert set(ranks[0][0]) != set(ranks[0][1])  # the epoch reaches the samplers: each epoch draws anew
    _, atac = sct.datasets.simulate_multiome(n_cells=400, n_genes=120, n_types=3, random_state=0)
    truth = atac.obs["cell_type"].astype(str).to_numpy()
    one = np.load(tmp_path / "one" / "labels.npy")
    two = np.load(tmp_path / "two" / "labels.npy")
    assert (one == truth).mean() > 0.7 and (two == truth).mean() > 0.7
    assert (one == two).mean() > 0.85
