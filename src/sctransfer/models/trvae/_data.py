"""Minibatches of (values, condition) for trVAE, gathered from sparse, dense, backed or dask matrices.

Rows are taken from the matrix and densified one minibatch at a time, so a sparse input is never
densified whole. The cells of step ``s`` of epoch ``e`` depend only on ``(seed, e)``: training is
reproducible and independent of the number of loader workers. The samplers expose ``set_epoch``, which
Lightning calls every epoch.

A backed or dask matrix is never read whole. Its rows are read in blocks of :data:`BLOCK_ROWS`
contiguous rows, and an epoch shuffles the cells of :data:`BUFFER_BLOCKS` randomly chosen blocks at a
time (the blocks' order is new every epoch). Minibatches of cells scattered over the file would read
each row on its own: on a 1,000,000-cell h5ad, 128 scattered rows took 96 ms to read and 1,024
contiguous rows 28 ms, so an epoch's reading takes about 28 s by blocks instead of 750 s.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import lightning.pytorch as pl
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..._utils._validation import is_in_memory, read_chunk

#: contiguous rows read at a time from a backed or dask matrix while training
BLOCK_ROWS = 1024
#: blocks whose cells are shuffled together into minibatches (a buffer of 65,536 rows); with a file
#: sorted by batch, 64 blocks of 1,024 rows mixed the batches into minibatches better than 16 of 4,096
#: (``benchmarks/trvae_backed.py``)
BUFFER_BLOCKS = 64


def dense_rows(X, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (sorted) of ``X`` (CSR, dense, backed or dask) as a dense float32 array.

    Consecutive rows of a backed or dask matrix are read as one slice.
    """
    if not is_in_memory(X) and idx.size and idx[-1] - idx[0] == idx.size - 1:
        block = read_chunk(X, int(idx[0]), int(idx[-1]) + 1)
    else:
        block = X[idx]
        if hasattr(block, "compute"):  # dask
            block = block.compute()
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    return np.ascontiguousarray(block, dtype=np.float32)


class _Rows(Dataset):
    """``dataset[indices]`` returns the minibatch of those cells.

    With ``block_rows``, rows come from blocks of that many contiguous rows, each read once and kept
    while the sampler draws from it (the ``cache_blocks`` most recently used blocks are kept).
    """

    def __init__(
        self, X, conditions: np.ndarray, *, block_rows: int | None = None, cache_blocks: int = 1
    ) -> None:
        self.X = X
        self.conditions = conditions
        self.block_rows = block_rows
        self.cache_blocks = cache_blocks
        self._cache: OrderedDict[int, object] = OrderedDict()

    def __len__(self) -> int:
        return self.X.shape[0]

    def _block(self, b: int):
        if b in self._cache:
            self._cache.move_to_end(b)
            return self._cache[b]
        start = b * self.block_rows
        block = read_chunk(self.X, start, min(start + self.block_rows, self.X.shape[0]))
        self._cache[b] = block
        while len(self._cache) > self.cache_blocks:
            self._cache.popitem(last=False)
        return block

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Dense float32 values of the sorted rows ``idx``."""
        if self.block_rows is None:
            return dense_rows(self.X, idx)
        blocks = idx // self.block_rows
        out = np.empty((idx.size, self.X.shape[1]), dtype=np.float32)
        for b in np.unique(blocks):
            sel = blocks == b
            out[sel] = dense_rows(self._block(int(b)), idx[sel] - b * self.block_rows)
        return out

    def __getitem__(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        idx = np.sort(np.asarray(idx))
        return {
            "X": torch.from_numpy(self.rows(idx)),
            "condition": torch.from_numpy(self.conditions[idx]),
        }


class _MinibatchSampler(Sampler[np.ndarray]):
    """Yields arrays of cell indices, one per minibatch.

    ``balanced=False``: a fresh permutation of the cells every epoch. ``balanced=True``: as many cells
    drawn with replacement, each with probability inversely proportional to its condition's size.
    A last minibatch of fewer than ``min_last`` cells is dropped (batch normalisation needs several).

    With ``block_rows``, the permutation (or the draws) runs within buffers of ``buffer_blocks`` blocks
    of that many contiguous rows, the blocks taken in a new random order every epoch, and each buffer is
    cut into its own minibatches (the last one takes the remainder, up to ``2 * batch_size - 1``
    cells), so that an epoch reads each block once. When one buffer holds every block, the draw is the
    in-memory one.
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
        block_rows: int | None = None,
        buffer_blocks: int = BUFFER_BLOCKS,
    ) -> None:
        self.cells = cells
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.balanced = balanced
        self.min_last = min_last
        self.block_rows = block_rows
        self.buffer_blocks = buffer_blocks
        self.n_blocks = 0 if block_rows is None else np.unique(cells // block_rows).size
        self.epoch = 0
        if balanced:
            codes = conditions[cells]
            counts = np.bincount(codes)
            self.weights = 1.0 / counts[codes]
            self.p = self.weights / self.weights.sum()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        # one buffer holding every block draws as in memory
        if self.shuffle and self.block_rows is not None and self.n_blocks > self.buffer_blocks:
            rng = np.random.default_rng([self.seed, self.epoch])
            return [
                batch for part in self._buffer_orders(rng) for batch in self._split(part, merge_last=True)
            ]
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            n = self.cells.size
            order = (
                rng.choice(self.cells, n, replace=True, p=self.p)
                if self.balanced
                else rng.permutation(self.cells)
            )
        else:
            order = self.cells
        return self._split(order)

    def _split(self, order: np.ndarray, *, merge_last: bool = False) -> list[np.ndarray]:
        """Minibatches of ``order``; the remainder joins the last full one with ``merge_last``."""
        n = order.size
        if merge_last and n >= self.batch_size:
            return np.split(order, list(range(self.batch_size, n - self.batch_size + 1, self.batch_size)))
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if batches and batches[-1].size < self.min_last and (len(batches) > 1 or merge_last):
            batches.pop()
        return batches

    def _buffer_orders(self, rng: np.random.Generator) -> list[np.ndarray]:
        """The epoch's cells, shuffled (or drawn) within buffers of randomly ordered blocks.

        Minibatches never straddle two buffers (each buffer's remainder joins its last minibatch), so a
        cache of one buffer's blocks reads every block once an epoch.
        """
        blocks = self.cells // self.block_rows
        chosen = rng.permutation(np.unique(blocks))
        parts = []
        for start in range(0, chosen.size, self.buffer_blocks):
            mask = np.isin(blocks, chosen[start : start + self.buffer_blocks])
            cells = self.cells[mask]
            if self.balanced:
                w = self.weights[mask]
                parts.append(rng.choice(cells, cells.size, replace=True, p=w / w.sum()))
            else:
                parts.append(rng.permutation(cells))
        return parts

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._batches())


class TRVAEDataModule(pl.LightningDataModule):
    """Training and validation minibatches of one AnnData's cells.

    Parameters
    ----------
    X
        Cells x genes (CSR or dense, or a backed or dask matrix: read by blocks, never whole).
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
    block_rows
        Read rows in blocks of this many contiguous rows and shuffle within buffers of blocks;
        ``None``: :data:`BLOCK_ROWS` for a backed or dask matrix, single rows for one in memory.
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
        block_rows: int | None = None,
    ) -> None:
        super().__init__()
        codes = np.asarray(conditions, dtype=np.int64)
        if block_rows is None and not is_in_memory(X):
            block_rows = BLOCK_ROWS
        self.block_rows = block_rows
        if block_rows is None:
            self.data = _Rows(X.tocsr() if sp.issparse(X) else X, codes)
        else:
            # one buffer: minibatches never straddle two, and a buffer left is not read again that epoch
            self.data = _Rows(X, codes, block_rows=block_rows, cache_blocks=BUFFER_BLOCKS)
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
            shuffle=True, balanced=self.balanced, block_rows=self.block_rows, buffer_blocks=BUFFER_BLOCKS,
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
