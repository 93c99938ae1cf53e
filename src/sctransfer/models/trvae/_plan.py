"""Lightning training plan and callbacks for trVAE."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from ._module import TRVAEModule


class TRVAETrainingPlan(pl.LightningModule):
    """Optimises :class:`TRVAEModule` with Adam on the summed objective (one optimiser, one step).

    Parameters
    ----------
    module
        The module.
    lr, eps, weight_decay
        Adam settings. A query model's condition rows get no weight decay.
    kl_warmup_epochs
        Linear warm-up of the KL weight from 0 to 1 over this many epochs (``None``: constant 1).
    lr_patience, lr_factor
        Multiply the learning rate by ``lr_factor`` after ``lr_patience`` epochs without a better
        validation loss (``None``: constant learning rate).
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
        super().__init__()
        self.module = module
        self.lr = lr
        self.eps = eps
        self.weight_decay = weight_decay
        self.kl_warmup_epochs = kl_warmup_epochs
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor
        self.has_validation = has_validation
        self.n_obs_training = None

    def kl_weight(self) -> float:
        if not self.kl_warmup_epochs:
            return 1.0
        return min(1.0, self.current_epoch / self.kl_warmup_epochs)

    def _step(self, batch: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        _, _, out = self.module(batch, loss_kwargs={"kl_weight": self.kl_weight()})
        size = batch["X"].shape[0]
        self.log(f"{prefix}_loss", out.loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        for name, value in out.extra_metrics.items():
            self.log(f"{name}_{prefix}", value, on_step=False, on_epoch=True, batch_size=size)
        return out.loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "validation")

    def configure_optimizers(self):
        frozen_rows = self.module.n_reference_conditions > 0
        conditional = {id(p) for p in self.module._condition_tensors()}
        if self.module.recon_loss == "nb":
            conditional.add(id(self.module.theta))
        params = [p for p in self.module.parameters() if p.requires_grad]
        if frozen_rows:
            groups = [
                {"params": [p for p in params if id(p) not in conditional]},
                {"params": [p for p in params if id(p) in conditional], "weight_decay": 0.0},
            ]
            groups = [g for g in groups if g["params"]]
        else:
            groups = [{"params": params}]
        optimizer = torch.optim.Adam(groups, lr=self.lr, eps=self.eps, weight_decay=self.weight_decay)
        if self.lr_patience is None or not self.has_validation:
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=self.lr_factor, patience=self.lr_patience
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "validation_loss", "interval": "epoch"},
        }


class RestoreBest(Callback):
    """Keep a copy (not references) of the weights with the best validation loss; load it at the end."""

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
