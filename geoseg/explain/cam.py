"""Grad-CAM, Grad-CAM++ and activations of one batch of tiles, unnormalized so tiles can be blended.

The hooks and the Grad-CAM/Grad-CAM++ channel weights come from the ``grad-cam`` package
(``pytorch_grad_cam``). Its ``__call__`` is not used: it min-max normalizes every image on its
own and resizes with OpenCV, so neighbouring tiles would get different scales and could not be
blended into one seamless, comparable map. Here the map stays in the units of the class score
(``ReLU(sum_k w_k A_k)``) and is upsampled to the tile with bilinear interpolation.

The segmentation target is the chosen class's logit summed over the pixels of a mask: the tile's
valid pixels, or those inside an area of interest.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geoseg.errors import ExplainError

__all__ = ["METHODS", "CamComputer", "Method", "activation_maps"]

Method = Literal["gradcam", "gradcam++"]
METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "activations")


class _MaskedClassScore:
    """A ``pytorch_grad_cam`` target: one class's logits summed over a ``(H, W)`` mask."""

    def __init__(self, class_index: int, mask: torch.Tensor) -> None:
        self.class_index, self.mask = class_index, mask

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output[self.class_index] * self.mask).sum()


class CamComputer:
    """Class-activation maps of batches ``(N, bands, H, W)`` for one class at one layer.

    Args:
        model: the segmentation network (logits ``(N, classes, H, W)``).
        layer: the module whose activations are weighted.
        class_index: the class whose score is explained.
        method: ``gradcam`` or ``gradcam++``.
        device: where to run.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module,
        class_index: int,
        method: str = "gradcam",
        device: torch.device | str = "cpu",
    ) -> None:
        try:
            from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
        except ImportError:
            from geoseg.errors import MissingDependencyError

            raise MissingDependencyError(
                "Grad-CAM needs the grad-cam package, which is not installed; "
                "install it with pip install 'geoseg[explain]'"
            ) from None
        if method not in ("gradcam", "gradcam++"):
            raise ExplainError(
                f"unknown method {method!r}; expected gradcam, gradcam++ or activations"
            )
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.layer = layer
        self.class_index = class_index
        # Gradients are needed from the target back to the layer only: no parameter gradients and
        # no backward pass through the layers before it (the layer's output starts the graph).
        # This hook runs before grad-cam's own hooks, which then see a tensor that requires grad.
        self._flags = [(p, p.requires_grad) for p in self.model.parameters()]
        for p, _ in self._flags:
            p.requires_grad_(False)
        self._start = layer.register_forward_hook(
            lambda m, a, out: out.detach().requires_grad_(True)
        )
        cls = GradCAM if method == "gradcam" else GradCAMPlusPlus
        self._cam = cls(model=self.model, target_layers=[layer])

    def __call__(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` float32 maps (>= 0) for inputs ``x`` and target masks ``mask``
        ``(N, H, W)``."""
        x = x.to(self.device).float()
        mask = mask.to(self.device).float()
        grads_of = self._cam.activations_and_grads
        with torch.inference_mode(False), torch.enable_grad():
            logits = grads_of(x.clone())
            targets = [_MaskedClassScore(self.class_index, m) for m in mask]
            score = sum(t(o) for t, o in zip(targets, logits, strict=True))
            assert isinstance(score, torch.Tensor)
            score.backward()
        acts = grads_of.activations[-1].cpu().numpy()
        grads = grads_of.gradients[-1].cpu().numpy() if grads_of.gradients else np.zeros_like(acts)
        weights = self._cam.get_cam_weights(x, [self.layer], targets, acts, grads)
        cam = np.maximum((weights[:, :, None, None] * acts).sum(axis=1, keepdims=True), 0).astype(
            np.float32
        )
        out = torch.from_numpy(cam)
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        grads_of.clear()
        return out

    def close(self) -> None:
        """Remove the hooks from the network and restore its parameters' ``requires_grad``."""
        self._cam.activations_and_grads.release()
        self._start.remove()
        for p, flag in self._flags:
            p.requires_grad_(flag)


def activation_maps(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, channels: slice, *, upsample: bool = True
) -> torch.Tensor:
    """The feature maps ``(N, K, H, W)`` that ``layer`` outputs for ``x`` (channels ``channels``),
    upsampled bilinearly to the input size when ``upsample``."""
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        handle.remove()
    if not seen or not isinstance(seen[-1], torch.Tensor):
        raise ExplainError("the layer produced no tensor output; choose another --layer")
    feats = seen[-1][:, channels].float()
    if upsample and feats.shape[-2:] != x.shape[-2:]:
        feats = F.interpolate(feats, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    return feats
