"""The Lightning module: a segmentation network, its loss, and confusion-matrix validation."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from geoseg.classes import IGNORE_INDEX
from geoseg.errors import ConfigError
from geoseg.evaluation.metrics import scores
from geoseg.training.config import OptimConfig

__all__ = ["SegmentationTask"]


class SegmentationTask(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        num_classes: int,
        optim: OptimConfig,
        *,
        class_names: list[str] | None = None,
        max_epochs: int = 1,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.num_classes = num_classes
        self.optim = optim
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.max_epochs = max_epochs
        self._cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self._val_loss: list[float] = []
        self.last_scores: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        for obj in (getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
            if obj is not None and hasattr(obj, "set_epoch"):
                obj.set_epoch(self.current_epoch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["image"])
        if not (batch["mask"] != IGNORE_INDEX).any():
            return (
                logits.sum() * 0.0
            )  # an all-ignored batch teaches nothing (and some losses would give NaN)
        loss = self.loss(logits, batch["mask"])
        self.log(
            "train_loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=batch["image"].shape[0],
        )
        return loss

    def on_validation_epoch_start(self) -> None:
        self._cm = torch.zeros(
            self.num_classes, self.num_classes, dtype=torch.int64, device=self.device
        )
        self._val_loss = []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self.model(batch["image"])
        target = batch["mask"]
        if (target != IGNORE_INDEX).any():
            self._val_loss.append(float(self.loss(logits, target)))
        pred = logits.argmax(1)
        keep = (target != IGNORE_INDEX) & (target < self.num_classes)
        idx = target[keep] * self.num_classes + pred[keep]
        self._cm += torch.bincount(idx, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def on_validation_epoch_end(self) -> None:
        s = scores(self._cm.cpu().numpy())
        self.last_scores = s.to_dict(self.class_names)
        self.log("val_miou", float(np.nan_to_num(s.miou)), prog_bar=True)
        self.log("val_accuracy", float(np.nan_to_num(s.accuracy)))
        if self._val_loss:
            self.log("val_loss", float(np.mean(self._val_loss)), prog_bar=True)
        for name, iou in zip(self.class_names, s.iou, strict=True):
            self.log(f"val_iou/{name}", float(np.nan_to_num(iou)))

    def on_train_start(self) -> None:
        # a resume with more epochs restores the schedule's old length: stretch it to the new one
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR):
                sched.total_steps = max(total, sched.last_epoch + 1)
            elif isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR):
                sched.T_max = total

    def configure_optimizers(self) -> Any:
        o = self.optim
        params = parameter_groups(self.model, o.lr, o.encoder_lr_scale)
        if o.name == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=o.lr, momentum=0.9, weight_decay=o.weight_decay, nesterov=True
            )
        elif o.name == "adam":
            opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        if o.schedule == "none":
            return opt
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        if o.schedule == "onecycle":
            sched: Any = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=[g["lr"] for g in params], total_steps=total, pct_start=0.1
            )
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def parameter_groups(model: nn.Module, lr: float, encoder_lr_scale: float) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: the encoder at ``lr * encoder_lr_scale``, the rest at
    ``lr``. One group when the scale is 1; a model without an ``encoder`` cannot take another
    scale (:class:`~geoseg.errors.ConfigError`)."""
    if encoder_lr_scale == 1:
        return [{"params": list(model.parameters()), "lr": lr}]
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(
            f"optim.encoder_lr_scale={encoder_lr_scale}: this network "
            f"({type(model).__name__}) has no encoder to scale; drop the option or use an "
            f"encoder-decoder architecture"
        )
    own = {id(p) for p in encoder.parameters()}
    return [
        {"params": list(encoder.parameters()), "lr": lr * encoder_lr_scale},
        {"params": [p for p in model.parameters() if id(p) not in own], "lr": lr},
    ]
