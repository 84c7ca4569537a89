"""Segmentation losses by name (or any callable), and weighted sums of them.

Every loss takes ``(logits (N, C, H, W), target (N, H, W))`` and skips ``ignore_index`` pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from geoseg.classes import IGNORE_INDEX
from geoseg.errors import ConfigError

__all__ = ["LOSSES", "CombinedLoss", "build_loss", "register_loss"]

LossFactory = Callable[..., nn.Module]


def _ce(class_weights: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX) -> nn.Module:
    return nn.CrossEntropyLoss(weight=class_weights, ignore_index=ignore_index)


def _smp(name: str) -> LossFactory:
    def make(
        class_weights: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX
    ) -> nn.Module:
        from segmentation_models_pytorch import losses

        cls = getattr(losses, name)
        return cls(mode="multiclass", ignore_index=ignore_index)

    make.__name__ = name
    return make


LOSSES: dict[str, LossFactory] = {
    "ce": _ce,
    "dice": _smp("DiceLoss"),
    "jaccard": _smp("JaccardLoss"),
    "focal": _smp("FocalLoss"),
    "lovasz": _smp("LovaszLoss"),
}


def register_loss(name: str, factory: LossFactory) -> None:
    """Add a loss: ``factory(class_weights=None, ignore_index=255) -> nn.Module``."""
    LOSSES[name] = factory


class CombinedLoss(nn.Module):
    """``sum(weight * loss(logits, target))``; logits are computed in float32 for stability."""

    def __init__(self, parts: Mapping[str, tuple[float, nn.Module]]) -> None:
        super().__init__()
        self.weights = {k: float(w) for k, (w, _) in parts.items()}
        self.parts = nn.ModuleDict({k: m for k, (_, m) in parts.items()})

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        total = logits.new_zeros(())
        for name, module in self.parts.items():
            w = self.weights[name]
            if w:
                total = total + w * module(logits, target)
        return total


def build_loss(
    spec: Mapping[str, float] | str | Callable[..., nn.Module],
    *,
    class_weights: Sequence[float] | None = None,
    num_classes: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> nn.Module:
    """A loss from ``{"ce": 1, "dice": 1}``, one name, or a factory callable."""
    weights = None
    if class_weights is not None:
        if num_classes is not None and len(class_weights) != num_classes:
            raise ConfigError(
                f"class_weights: {len(class_weights)} weight(s) given for {num_classes} classes"
            )
        weights = torch.tensor(list(class_weights), dtype=torch.float32)
    if callable(spec):
        return spec(class_weights=weights, ignore_index=ignore_index)
    if isinstance(spec, str):
        spec = {spec: 1.0}
    parts = {}
    for name, w in spec.items():
        if name not in LOSSES:
            raise ConfigError(
                f"loss.{name}: unknown loss; expected some of {', '.join(sorted(LOSSES))}"
            )
        parts[name] = (float(w), LOSSES[name](class_weights=weights, ignore_index=ignore_index))
    return CombinedLoss(parts)
