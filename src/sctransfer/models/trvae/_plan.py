"""trVAE's training plan (scvi-tools' :class:`~scvi.train.TrainingPlan` with trVAE's optimiser) and callback."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from scvi.train import TrainingPlan

from ._module import TRVAEModule


class TRVAETrainingPlan(TrainingPlan):
    """scvi-tools' training plan (steps, logging, KL warm-up) with trVAE's optimiser and LR schedule.

    Only :meth:`configure_optimizers` differs from scvi-tools': a query model's condition rows get no
    weight decay (a second parameter group), and the learning rate drops with torch's default plateau
    rule (an improvement is a relative decrease of more than 1e-4; scvi-tools' plan fixes an absolute
    threshold), which the presets were tuned with.

    Parameters
    ----------
    module
        The module.
    lr, eps, weight_decay
        Adam settings.
    kl_warmup_epochs
        Linear warm-up of the KL weight from 0 to 1 over this many epochs (``None``: constant 1).
    lr_patience, lr_factor
        Multiply the learning rate by ``lr_factor`` after ``lr_patience`` epochs without a better
        validation loss (``None``: constant learning rate).
    has_validation
        Whether there is a validation split (the plateau rule watches its loss).
    """

    def __init__(
        self,
        module: TRVAEModule,
        *,
        lr: float,
        eps: float,
        weight_decay: float,
        kl_warmup_epochs: int | None,
        lr_patience: int | None,
        lr_factor: float,
        has_validation: bool,
    ) -> None:
        super().__init__(
            module, lr=lr, eps=eps, weight_decay=weight_decay, n_epochs_kl_warmup=kl_warmup_epochs,
            reduce_lr_on_plateau=lr_patience is not None and has_validation, lr_factor=lr_factor,
            lr_patience=lr_patience, lr_scheduler_metric="validation_loss",
        )  # fmt: skip

    def configure_optimizers(self):
        conditional = {id(p) for p in self.module._condition_tensors()}
        if self.module.recon_loss == "nb":
            conditional.add(id(self.module.theta))
        params = [p for p in self.module.parameters() if p.requires_grad]
        if self.module.n_reference_conditions > 0:
            groups = [
                {"params": [p for p in params if id(p) not in conditional]},
                {"params": [p for p in params if id(p) in conditional], "weight_decay": 0.0},
            ]
            groups = [g for g in groups if g["params"]]
        else:
            groups = [{"params": params}]
        optimizer = torch.optim.Adam(groups, lr=self.lr, eps=self.eps, weight_decay=self.weight_decay)
        if not self.reduce_lr_on_plateau:
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=self.lr_factor, patience=self.lr_patience
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "validation_loss", "interval": "epoch"},
        }


class RestoreBest(Callback):
    """Keep a copy (not references) of the weights with the best validation loss; load it at the end.

    scvi-tools' ``SaveCheckpoint(load_best_on_end=True)`` restores the same weights, but it writes the
    model and a Lightning checkpoint (with the optimiser state) to disk at every new best epoch: 26 %
    slower on the Kang benchmark (see ``docs/differences/trvae.md``). This copy stays in memory.
    """

    def __init__(self, monitor: str = "validation_loss") -> None:
        self.monitor = monitor
        self.best = float("inf")
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, plan: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or trainer.sanity_checking:
            return
        value = float(value)
        if value < self.best:
            self.best = value
            self.best_epoch = trainer.current_epoch
            self.state = {k: v.detach().clone() for k, v in plan.module.state_dict().items()}

    def on_train_end(self, trainer: pl.Trainer, plan: pl.LightningModule) -> None:
        if self.state is not None:
            plan.module.load_state_dict(self.state)
