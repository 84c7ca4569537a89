"""Named layers of a segmentation network: presets for the U-Nets geoseg builds, and raw module
names.

Presets are found by running the network once on a small input and watching which modules
produce the encoder's feature maps, so they hold for any smp encoder (ResNet, VGG, timm
MobileNet/EfficientNet) without a table per encoder:

* ``encoder.stage1`` ... ``encoder.stageN``: the encoder's feature maps, fine to coarse;
* ``decoder.block1`` ... ``decoder.blockN``: the decoder blocks, coarse to fine;
* ``head``: the segmentation head (class logits).

Any module name that ``model.named_modules()`` lists is accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from geoseg.errors import ExplainError

__all__ = ["LayerInfo", "list_layers", "resolve_layer"]


@dataclass(frozen=True)
class LayerInfo:
    """A preset layer: its name, module path and output shape on the probe input.

    Attributes:
        name: preset name (``encoder.stage3``).
        module: module path inside the network (``encoder.layer2``).
        channels: feature maps it outputs.
        stride: input pixels per output pixel along each axis.
    """

    name: str
    module: str
    channels: int
    stride: int


def _probe(
    model: nn.Module, in_channels: int, size: int
) -> tuple[dict[int, str], dict[str, tuple[int, ...]], list[torch.Tensor]]:
    """Run ``model`` once; map output tensor ids to the outermost module that returned them."""
    producers: dict[int, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(mod: nn.Module, args: object, out: object, name: str = name) -> None:
            if isinstance(out, torch.Tensor):
                producers[id(out)] = name  # hooks fire inner first: the outermost module wins
                shapes[name] = tuple(out.shape)

        handles.append(module.register_forward_hook(hook))
    features: list[torch.Tensor] = []
    try:
        encoder = getattr(model, "encoder", None)
        with torch.no_grad():
            x = torch.zeros(1, in_channels, size, size)
            if encoder is not None:
                out = encoder(x)
                features = list(out) if isinstance(out, (list, tuple)) else []
            model(x)
    finally:
        for h in handles:
            h.remove()
    return producers, shapes, features


def list_layers(model: nn.Module, in_channels: int, *, size: int = 64) -> list[LayerInfo]:
    """The preset layers of ``model`` (empty for networks without an encoder/decoder layout).

    Args:
        model: the network (in ``eval()`` mode).
        in_channels: input bands.
        size: probe input edge in pixels (a multiple of the output stride).
    """
    was_training = model.training
    model.eval()
    try:
        producers, shapes, features = _probe(model, in_channels, size)
    finally:
        model.train(was_training)
    layers: list[LayerInfo] = []
    stage = 0
    for f in features:
        name = producers.get(id(f))
        if name is None or not name.startswith("encoder"):
            continue  # the input passed through (smp's stage 0)
        stage += 1
        layers.append(
            LayerInfo(f"encoder.stage{stage}", name, int(f.shape[1]), size // int(f.shape[-1]))
        )
    blocks = getattr(getattr(model, "decoder", None), "blocks", None)
    if isinstance(blocks, nn.ModuleList | nn.Sequential):
        for i, _ in enumerate(blocks, start=1):
            path = f"decoder.blocks.{i - 1}"
            if path in shapes:
                shape = shapes[path]
                layers.append(
                    LayerInfo(f"decoder.block{i}", path, int(shape[1]), size // int(shape[-1]))
                )
    if "segmentation_head" in shapes:
        shape = shapes["segmentation_head"]
        layers.append(LayerInfo("head", "segmentation_head", int(shape[1]), size // int(shape[-1])))
    return layers


def default_layer(layers: list[LayerInfo]) -> str | None:
    """The layer Grad-CAM uses unless told: the middle decoder block (semantic and still fine)."""
    decoder = [layer for layer in layers if layer.name.startswith("decoder.")]
    if decoder:
        return decoder[(len(decoder) - 1) // 2].name
    encoder = [layer for layer in layers if layer.name.startswith("encoder.")]
    return encoder[-1].name if encoder else None


def resolve_layer(
    model: nn.Module, name: str | None, in_channels: int, *, size: int = 64
) -> tuple[str, nn.Module]:
    """The module a preset or module name points to.

    Raises:
        ExplainError: the name is neither a preset nor a module, listing the presets.
    """
    layers = list_layers(model, in_channels, size=size)
    if name is None:
        name = default_layer(layers)
        if name is None:
            raise ExplainError(
                "this network has no preset layers; pass --layer with a module name "
                "(geoseg models CKPT --layers --all lists them)"
            )
    modules = dict(model.named_modules())
    for layer in layers:
        if layer.name == name:
            return name, modules[layer.module]
    if name in modules and name:
        return name, modules[name]
    presets = ", ".join(layer.name for layer in layers) or "none"
    raise ExplainError(
        f"unknown layer {name!r}; expected a preset ({presets}) or one of the {len(modules) - 1} "
        "module names that geoseg models CKPT --layers --all lists"
    )
