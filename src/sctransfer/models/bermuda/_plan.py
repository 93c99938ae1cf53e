"""Lightning training plan for BERMUDA: the ramped transfer weight, the reference's optimiser schedule."""

from __future__ import annotations

import math
from collections import defaultdict

import lightning.pytorch as pl
import torch
from scvi import REGISTRY_KEYS

from ._module import BERMUDAModule


def transfer_weight(epoch: int, n_epochs: int, gamma: float) -> float:
    """``gamma * (2 / (1 + exp(-10 p)) - 1)`` with ``p = epoch / n_epochs`` (``epoch`` counted from 1)."""
    return gamma * (2.0 / (1.0 + math.exp(-10.0 * epoch / n_epochs)) - 1.0)


class BERMUDATrainingPlan(pl.LightningModule):
    """Optimises :class:`BERMUDAModule` on cluster-balanced minibatches.

    Parameters
    ----------
    module
        The autoencoder.
    n_clusters
        Clusters in every minibatch.
    pairs
        ``P x 2`` cluster codes of the matched pairs.
    lr, weight_decay
        Adam settings (coupled L2 weight decay, as ``torch.optim.Adam`` applies it).
    gamma
        Maximal transfer weight.
    ramp_epochs
        Epochs over which the transfer weight ramps up (BERMUDA: all of them).
    reset_optimizer_each_epoch
        Forget Adam's moment estimates at the start of every epoch, as the reference re-creates its
        optimiser every epoch.
    lr_halving_epochs
        Halve the learning rate every this many epochs (``None``: constant).
    proximity
        Weight of the residual network's penalty (:class:`~._module.BERMUDAResidualModule`); ``None``
        for the autoencoder.
    """

    def __init__(
        self,
        module: BERMUDAModule,
        *,
        n_clusters: int,
        pairs: torch.Tensor,
        lr: float,
        weight_decay: float,
        gamma: float,
        ramp_epochs: int,
        reset_optimizer_each_epoch: bool,
        lr_halving_epochs: int | None,
        proximity: float | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.n_clusters = n_clusters
        self.register_buffer("pairs", pairs.long(), persistent=False)
        self.lr = lr
        self.weight_decay = weight_decay
        self.gamma = gamma
        self.ramp_epochs = max(1, int(ramp_epochs))
        self.reset_optimizer_each_epoch = reset_optimizer_each_epoch
        self.lr_halving_epochs = lr_halving_epochs
        # the residual network's penalty weight (the autoencoder's loss has none)
        self.extra_loss_kwargs = {} if proximity is None else {"proximity": float(proximity)}
        self.n_obs_training = None
        self.nonfinite_epoch: int | None = None
        # the running epoch's metrics: sums of value x minibatch size, and the cells they cover
        self._sums: dict[str, torch.Tensor] = {}
        self._cells = 0

    @property
    def current_transfer_weight(self) -> float:
        """The transfer weight of the running epoch."""
        epoch = min(self.current_epoch + 1, self.ramp_epochs)
        return transfer_weight(epoch, self.ramp_epochs, self.gamma)

    def on_train_epoch_start(self) -> None:
        if self.reset_optimizer_each_epoch and self.current_epoch > 0:
            for optimizer in self.trainer.optimizers:
                optimizer.state = defaultdict(dict)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        _, _, out = self.module(
            batch,
            loss_kwargs={
                "n_clusters": self.n_clusters,
                "pairs": self.pairs,
                "transfer_weight": self.current_transfer_weight,
                **self.extra_loss_kwargs,
            },
        )
        if not torch.isfinite(out.loss):
            # the reference also stops on a NaN loss (and then fails on its return values); keep the last
            # finite weights and say so
            self.nonfinite_epoch = self.current_epoch + 1
            self.trainer.should_stop = True
            self._log_epoch()
            return None
        size = batch[REGISTRY_KEYS.X_KEY].shape[0]
        metrics = {"train_loss": out.loss, "reconstruction_loss_train": out.reconstruction_loss_sum}
        metrics.update({f"{name}_train": value for name, value in out.extra_metrics.items()})
        for name, value in metrics.items():
            # Lightning's sum for an epoch mean, in the same order and dtype
            self._sums[name] = self._sums.get(name, 0.0) + value.detach() * size
        self._cells += size
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self._log_epoch()
        return out.loss

    def _log_epoch(self) -> None:
        """Log the epoch's means once, at its last step.

        Logging three metrics at every step took Lightning about a tenth of BERMUDA's training time; the
        means are those that logging every step gave, to the bit.
        """
        for name, total in self._sums.items():
            self.log(name, total / self._cells, on_step=False, on_epoch=True, prog_bar=name == "train_loss",
                     batch_size=1)  # fmt: skip
        self._sums, self._cells = {}, 0

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.lr_halving_epochs is None:
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: 0.5 ** ((epoch + 1) // self.lr_halving_epochs)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class PlateauStopping(pl.Callback):
    """Stop when the training loss has stopped improving.

    Stops once the epoch's loss has not improved by ``min_delta`` (relative) for ``patience`` epochs,
    counting only epochs from ``start_epoch`` on (when the transfer weight has reached its plateau, so the
    loss is comparable from epoch to epoch).
    """

    def __init__(self, *, start_epoch: int, patience: int, min_delta: float = 1e-3) -> None:
        self.start_epoch = start_epoch
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 < self.start_epoch:
            return
        loss = trainer.callback_metrics.get("train_loss")
        if loss is None:
            return
        value = float(loss)
        if value < self.best * (1.0 - self.min_delta):
            self.best = value
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = trainer.current_epoch + 1
            trainer.should_stop = True
