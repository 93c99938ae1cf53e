"""Cluster-balanced minibatches: the same number of cells from every cluster of every batch per step.

Each step gathers ``batch_size`` cells of cluster 0, then of cluster 1, and so on, so the module can
split the minibatch back into clusters by position. Two samplers:

- ``"replacement"`` (default): every cluster draws its cells uniformly with replacement at every step,
  so a cluster smaller than the minibatch simply repeats cells;
- ``"oversample"`` (faithful): BERMUDA's scheme. Each cluster is first oversampled with replacement to the
  size of its batch's largest cluster (at least one minibatch), then read in shuffled chunks of
  ``batch_size`` without replacement (the incomplete last chunk dropped), reshuffled each time it is
  exhausted.

The cells of step ``s`` depend only on ``(seed, s)`` (and the fixed oversampling), so training is
reproducible and independent of the number of loader workers.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import scipy.sparse as sp
import torch
from scvi import REGISTRY_KEYS
from torch.utils.data import DataLoader, Dataset

from ..scjoint._data import _StepSampler
from ._module import BATCH_CODE_KEY, CLUSTER_CODE_KEY

SAMPLERS = ("replacement", "oversample")


class _ClusterSteps(Dataset):
    def __init__(self, dm: ClusterBalancedDataModule) -> None:
        self.dm = dm

    def __len__(self) -> int:
        return self.dm.steps_per_epoch

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        dm = self.dm
        idx = np.concatenate([dm.cluster_rows(c, step) for c in range(len(dm.members))])
        block = dm.X[idx]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        return {
            REGISTRY_KEYS.X_KEY: torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)),
            BATCH_CODE_KEY: torch.from_numpy(dm.batch_codes[idx]),
            CLUSTER_CODE_KEY: torch.from_numpy(dm.cluster_codes[idx]),
        }


class ClusterBalancedDataModule(pl.LightningDataModule):
    """Lightning data module of cluster-balanced minibatches.

    Parameters
    ----------
    X
        Log-normalised values (cells x genes; CSR or dense), in the model's gene order.
    batch_codes, cluster_codes
        Batch and cluster code of every cell (clusters numbered ``0..C-1``, each within one batch).
    batch_size
        Cells drawn from every cluster per step.
    steps_per_epoch
        Steps per epoch (at least 1).
    sampler
        ``"replacement"`` or ``"oversample"`` (see the module docstring).
    seed
        Determines every draw.
    """

    def __init__(
        self,
        X,
        batch_codes: np.ndarray,
        cluster_codes: np.ndarray,
        *,
        batch_size: int,
        steps_per_epoch: int,
        sampler: str,
        seed: int,
    ) -> None:
        super().__init__()
        self.X = X.tocsr() if sp.issparse(X) else np.asarray(X)
        self.batch_codes = np.asarray(batch_codes, dtype=np.int64)
        self.cluster_codes = np.asarray(cluster_codes, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.sampler = sampler
        self.seed = int(seed)
        n_clusters = int(self.cluster_codes.max()) + 1
        self.members = [np.flatnonzero(self.cluster_codes == c) for c in range(n_clusters)]
        if sampler == "oversample":
            self.pools = oversample_clusters(self.members, self.batch_codes, batch_size, seed)
        self.n_train = self.steps_per_epoch * batch_size * n_clusters
        self.n_val = 0

    def cluster_rows(self, cluster: int, step: int) -> np.ndarray:
        """Rows of ``cluster`` in minibatch number ``step`` (counted over all epochs)."""
        if self.sampler == "replacement":
            rng = np.random.default_rng([self.seed, cluster, step])
            members = self.members[cluster]
            return members[rng.integers(0, members.size, self.batch_size)]
        pool = self.pools[cluster]
        chunks = pool.size // self.batch_size
        cycle, position = divmod(step, chunks)
        order = np.random.default_rng([self.seed, cluster, cycle]).permutation(pool.size)
        return pool[order[position * self.batch_size : (position + 1) * self.batch_size]]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            _ClusterSteps(self), sampler=_StepSampler(self.steps_per_epoch), batch_size=None, num_workers=0
        )


def oversample_clusters(
    members: list[np.ndarray], batch_codes: np.ndarray, batch_size: int, seed: int
) -> list[np.ndarray]:
    """Each cluster's cells plus random repeats up to its batch's largest cluster (and one minibatch)."""
    rng = np.random.default_rng([seed, 7])
    largest: dict[int, int] = {}
    for rows in members:
        b = int(batch_codes[rows[0]])
        largest[b] = max(largest.get(b, 0), rows.size)
    pools = []
    for rows in members:
        target = max(largest[int(batch_codes[rows[0]])], batch_size)
        extra = rng.choice(rows, size=target - rows.size, replace=True)
        pools.append(np.concatenate([rows, extra]))
    return pools


def epoch_steps(members: list[np.ndarray], batch_codes: np.ndarray, batch_size: int) -> int:
    """BERMUDA's epoch length: minibatches in the largest (oversampled) cluster, at least one."""
    largest = max(rows.size for rows in members)
    return max(1, largest // batch_size)
