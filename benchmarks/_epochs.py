"""A Lightning callback that times every training epoch, for the benchmarks that report epoch times."""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback


class EpochTimer(Callback):
    """Appends the wall seconds of each training epoch to ``seconds``."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._start)
