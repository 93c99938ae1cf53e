"""Minibatches of (values, condition) for trVAE, gathered from sparse or dense matrices.

Rows are taken from the matrix and densified one minibatch at a time, so a sparse input is never
densified whole. The cells of step ``s`` of epoch ``e`` depend only on ``(seed, e)``: training is
reproducible and independent of the number of loader workers. The samplers expose ``set_epoch``, which
Lightning calls every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning.pytorch as pl
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def dense_rows(X, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of ``X`` (CSR or dense) as a dense float32 array."""
    block = X[idx]
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    return np.ascontiguousarray(block, dtype=np.float32)


class _Rows(Dataset):
    """``dataset[indices]`` returns the minibatch of those cells."""

    def __init__(self, X, conditions: np.ndarray) -> None:
        self.X = X
        self.conditions = conditions

    def __len__(self) -> int:
        return self.X.shape[0]

    def __getitem__(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        idx = np.sort(np.asarray(idx))
        return {
            "X": torch.from_numpy(dense_rows(self.X, idx)),
            "condition": torch.from_numpy(self.conditions[idx]),
        }


class _MinibatchSampler(Sampler[np.ndarray]):
    """Yields arrays of cell indices, one per minibatch.

    ``balanced=False``: a fresh permutation of the cells every epoch. ``balanced=True``: as many cells
    drawn with replacement, each with probability inversely proportional to its condition's size.
    A last minibatch of fewer than ``min_last`` cells is dropped (batch normalisation needs several).
    """

    def __init__(
        self,
        cells: np.ndarray,
        conditions: np.ndarray,
        *,
        batch_size: int,
        seed: int,
        shuffle: bool,
        balanced: bool = False,
        min_last: int = 2,
    ) -> None:
        self.cells = cells
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.balanced = balanced
        self.min_last = min_last
        self.epoch = 0
        if balanced:
            codes = conditions[cells]
            counts = np.bincount(codes)
            weights = 1.0 / counts[codes]
            self.p = weights / weights.sum()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        n = self.cells.size
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = (
                rng.choice(self.cells, n, replace=True, p=self.p)
                if self.balanced
                else rng.permutation(self.cells)
            )
        else:
            order = self.cells
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if len(batches) > 1 and batches[-1].size < self.min_last:
            batches.pop()
        return batches

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._batches())


class TRVAEDataModule(pl.LightningDataModule):
    """Training and validation minibatches of one AnnData's cells.

    Parameters
    ----------
    X
        Cells x genes (CSR or dense).
    conditions
        Condition code of every cell.
    train_idx, val_idx
        Cells of each split.
    batch_size
        Cells per minibatch.
    seed
        Determines every draw.
    balanced
        Condition-balanced sampling with replacement (scArches) instead of a shuffle.
    """

    def __init__(
        self,
        X,
        conditions: np.ndarray,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        *,
        batch_size: int,
        seed: int,
        balanced: bool = False,
    ) -> None:
        super().__init__()
        self.data = _Rows(X.tocsr() if sp.issparse(X) else X, np.asarray(conditions, dtype=np.int64))
        self.train_idx = np.asarray(train_idx, dtype=np.int64)
        self.val_idx = np.asarray(val_idx, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.balanced = balanced
        self.n_train = self.train_idx.size
        self.n_val = self.val_idx.size

    def train_dataloader(self) -> DataLoader:
        sampler = _MinibatchSampler(
            self.train_idx, self.data.conditions, batch_size=self.batch_size, seed=self.seed,
            shuffle=True, balanced=self.balanced,
        )  # fmt: skip
        return DataLoader(self.data, sampler=sampler, batch_size=None, num_workers=0)

    def val_dataloader(self) -> DataLoader | list:
        if self.n_val == 0:
            return []
        sampler = _MinibatchSampler(
            self.val_idx, self.data.conditions, batch_size=self.batch_size, seed=self.seed, shuffle=False,
            min_last=1,
        )  # fmt: skip
        return DataLoader(self.data, sampler=sampler, batch_size=None, num_workers=0)
