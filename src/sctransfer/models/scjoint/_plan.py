"""Lightning training plan for one scJoint stage."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from ._module import SCJointModule


class SCJointTrainingPlan(pl.LightningModule):
    """Optimises :class:`SCJointModule` for stage 1 or stage 3.

    SGD with momentum over the encoder and the classifier (and the class centers when they are trained);
    the learning rate is multiplied by 0.1 every ``lr_decay_epoch`` epochs. One SGD optimiser over all
    parameters takes exactly the steps of the reference's two optimisers with the same settings.
    """

    def __init__(
        self,
        module: SCJointModule,
        *,
        stage: int,
        lr: float,
        momentum: float,
        weight_decay: float,
        lr_decay_epoch: int,
        top_fraction: float,
        l1_weight: float,
        center_weight: float,
        reference_center_loss: bool,
        train_centers: bool,
        query_ce: bool = True,
    ) -> None:
        super().__init__()
        self.module = module
        self.stage = stage
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.lr_decay_epoch = lr_decay_epoch
        self.loss_kwargs = {
            "stage": stage,
            "top_fraction": top_fraction,
            "l1_weight": l1_weight,
            "center_weight": center_weight,
            "reference_center_loss": reference_center_loss,
            "query_ce": query_ce,
        }
        self.train_centers = train_centers
        self.n_obs_training = None

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.module.loss(batch, **self.loss_kwargs)
        size = batch["x_ref"].shape[0]
        self.log("train_loss", out.loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        for name, value in out.extra_metrics.items():
            self.log(f"{name}_train", value, on_step=False, on_epoch=True, batch_size=size)
        return out.loss

    def configure_optimizers(self):
        params = [*self.module.encoder.parameters(), *self.module.classifier.parameters()]
        self.module.centers.requires_grad_(self.train_centers)
        if self.train_centers:
            params.append(self.module.centers)
        optimizer = torch.optim.SGD(
            params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=self.lr_decay_epoch, gamma=0.1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
