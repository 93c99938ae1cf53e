"""Two-domain minibatches for unpaired training (reference cells and query cells, drawn side by side).

Each training step draws ``batch_size`` reference cells and ``batch_size`` query cells uniformly with
replacement, as scJoint does, whatever the size of each dataset. Rows are gathered from the sparse matrix
and densified one minibatch at a time. The draw of step ``s`` of epoch ``e`` depends only on
``(seed, stage, e, s)``, so training is reproducible and independent of the number of loader workers.
The sampler exposes ``set_epoch``, which Lightning calls every epoch (and wraps for DDP).
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning.pytorch as pl
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def _rows(X, idx: np.ndarray) -> torch.Tensor:
    block = X[idx]
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    return torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))


class _StepSampler(Sampler[int]):
    """Yields global step numbers ``epoch * steps_per_epoch + step``; Lightning sets the epoch."""

    def __init__(self, steps_per_epoch: int) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[int]:
        start = self.epoch * self.steps_per_epoch
        return iter(range(start, start + self.steps_per_epoch))


class _TwoDomainSteps(Dataset):
    def __init__(self, module: TwoDomainDataModule) -> None:
        self.dm = module

    def __len__(self) -> int:
        return self.dm.steps_per_epoch

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        dm = self.dm
        rng = np.random.default_rng([dm.seed, dm.stage, step])
        ref = rng.integers(0, dm.X_ref.shape[0], dm.batch_size)
        query = rng.integers(0, dm.X_query.shape[0], dm.batch_size)
        return {
            "x_ref": _rows(dm.X_ref, ref),
            "y_ref": torch.from_numpy(dm.y_ref[ref]),
            "x_query": _rows(dm.X_query, query),
            "y_query": torch.from_numpy(dm.y_query[query]),
            "domain_ref": torch.tensor(dm.domain_ref),
            "domain_query": torch.tensor(dm.domain_query),
        }


class TwoDomainDataModule(pl.LightningDataModule):
    """Lightning data module of paired-up minibatches from two unpaired domains.

    Parameters
    ----------
    X_ref, X_query
        Reference and query values (cells x features; CSR or dense), in the model's feature order.
    y_ref
        Reference class codes (-1 = unlabelled).
    y_query
        Query pseudo-label codes (-1 = none); ``None`` when there are none yet (stage 1).
    domain_ref, domain_query
        Domain indices (which input statistics the module uses).
    batch_size
        Cells drawn from each domain per step.
    steps_per_epoch
        Optimisation steps per epoch (at least 1, even with fewer cells than a minibatch).
    seed, stage
        Determine every draw.
    """

    def __init__(
        self,
        X_ref,
        X_query,
        y_ref: np.ndarray,
        y_query: np.ndarray | None,
        *,
        domain_ref: int,
        domain_query: int,
        batch_size: int,
        steps_per_epoch: int,
        seed: int,
        stage: int,
    ) -> None:
        super().__init__()
        self.X_ref = X_ref.tocsr() if sp.issparse(X_ref) else X_ref
        self.X_query = X_query.tocsr() if sp.issparse(X_query) else X_query
        self.y_ref = np.asarray(y_ref, dtype=np.int64)
        self.y_query = (
            np.full(X_query.shape[0], -1, dtype=np.int64)
            if y_query is None
            else np.asarray(y_query, np.int64)
        )
        self.domain_ref = domain_ref
        self.domain_query = domain_query
        self.batch_size = batch_size
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.seed = seed
        self.stage = stage
        self.n_train = self.steps_per_epoch * batch_size
        self.n_val = 0

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            _TwoDomainSteps(self), sampler=_StepSampler(self.steps_per_epoch), batch_size=None, num_workers=0
        )
