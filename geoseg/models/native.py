"""U-Nets over MobileNet-style encoders, built with torch alone, for loading checkpoints fast.

Building a network through segmentation-models-pytorch imports timm and torchvision, which
import most of ``torch._dynamo``: about 2 s before a first prediction can start, on a machine
where the prediction itself takes 10 s. The bundled models (a U-Net over timm's
``efficientnet_lite0`` and one over ``tf_mobilenetv3_small_minimal_100``) need none of that to
run: this module builds the same networks from plain torch layers, with the same module names,
parameters, buffers and arithmetic, so a checkpoint's weights load unchanged and its outputs are
bit for bit those of the smp network (``tests/models/test_native.py`` holds both to it).

Only inference builds networks here (:func:`~geoseg.models.checkpoint.load_checkpoint`), and
only for a config this module describes exactly (:func:`native_network` answers ``None``
otherwise); training always builds through smp, which also brings the pretrained encoders.
Encoders are listed in :data:`ENCODERS`, as the blocks timm builds for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from geoseg.models.config import ModelConfig

__all__ = ["ENCODERS", "EncoderSpec", "native_network"]

Block = tuple[str, int, int, int, int]  # kind (ds, ir, cn), kernel, stride, hidden, out channels


@dataclass(frozen=True)
class EncoderSpec:
    """A MobileNet-style encoder as timm builds it with ``features_only=True``.

    Attributes:
        stem: channels of the stem convolution (3x3, stride 2).
        stages: per stage, its blocks as ``(kind, kernel, stride, hidden, out)``: ``ds`` a
            depthwise-separable block (``hidden`` unused), ``ir`` an inverted residual, ``cn``
            a 1x1 convolution with batch norm and activation.
        features: the stages whose outputs are the encoder's features (0 is the stem).
        act: ``relu`` or ``relu6``.
        eps: batch-norm epsilon.
        same: TensorFlow ``SAME`` padding (timm's ``tf_`` models) for strided convolutions.
        stem_act: the stem's activation is a module of its own (``act1``) rather than part of
            its batch norm (``bn1.act``).
    """

    stem: int
    stages: tuple[tuple[Block, ...], ...]
    features: tuple[int, ...]
    act: str
    eps: float
    same: bool
    stem_act: bool


def _ir(kernel: int, stride: int, hidden: int, out: int, repeat: int = 1) -> tuple[Block, ...]:
    """An inverted-residual stage: the first block strides, the others keep the size."""
    return (("ir", kernel, stride, hidden, out),) + (("ir", kernel, 1, hidden, out),) * (repeat - 1)


ENCODERS: dict[str, EncoderSpec] = {
    # timm efficientnet_lite0: expansion 6, ReLU6, no squeeze-excitation, symmetric padding
    "tu-efficientnet_lite0": EncoderSpec(
        stem=32,
        stages=(
            (("ds", 3, 1, 0, 16),),
            (("ir", 3, 2, 96, 24), ("ir", 3, 1, 144, 24)),
            (("ir", 5, 2, 144, 40), ("ir", 5, 1, 240, 40)),
            (("ir", 3, 2, 240, 80), *_ir(3, 1, 480, 80, 2)),
            (("ir", 5, 1, 480, 112), *_ir(5, 1, 672, 112, 2)),
            (("ir", 5, 2, 672, 192), *_ir(5, 1, 1152, 192, 3)),
            (("ir", 3, 1, 1152, 320),),
        ),
        features=(1, 2, 3, 5, 7),
        act="relu6",
        eps=1e-5,
        same=False,
        stem_act=False,
    ),
    # timm tf_mobilenetv3_small_minimal_100: ReLU, no squeeze-excitation, TensorFlow padding
    "tu-tf_mobilenetv3_small_minimal_100": EncoderSpec(
        stem=16,
        stages=(
            (("ds", 3, 2, 0, 16),),
            (("ir", 3, 2, 72, 24), ("ir", 3, 1, 88, 24)),
            (("ir", 3, 2, 96, 40), *_ir(3, 1, 240, 40, 2)),
            (("ir", 3, 1, 120, 48), ("ir", 3, 1, 144, 48)),
            (("ir", 3, 2, 288, 96), *_ir(3, 1, 576, 96, 2)),
            (("cn", 1, 1, 0, 576),),
        ),
        features=(0, 1, 2, 4, 6),
        act="relu",
        eps=1e-3,
        same=True,
        stem_act=True,
    ),
}

_DECODER_DEFAULT = (256, 128, 64, 32, 16)


def native_network(config: ModelConfig) -> nn.Module | None:
    """The network ``config`` describes, built here, or ``None`` when this module does not
    describe it exactly (then build it with :func:`~geoseg.models.registry.build_model`)."""
    spec = ENCODERS.get(config.encoder)
    kwargs = dict(config.model_kwargs)
    if spec is None or config.architecture.lower() != "unet":
        return None
    if kwargs.pop("encoder_depth", 5) != 5 or kwargs.pop("encoder_output_stride", 32) != 32:
        return None
    decoder = tuple(kwargs.pop("decoder_channels", _DECODER_DEFAULT))
    if len(decoder) != 5 or kwargs:  # any other option (attention, norm, heads): smp builds it
        return None
    return _Unet(spec, config.in_channels, config.num_classes, decoder)


def _act(name: str) -> nn.Module:
    return nn.ReLU6(inplace=True) if name == "relu6" else nn.ReLU(inplace=True)


def _same_pad(size: Any, kernel: int, stride: int) -> Any:
    """Total TensorFlow ``SAME`` padding along one axis (a tensor while ONNX traces sizes)."""
    if isinstance(size, torch.Tensor):
        return torch.clamp(((size / stride).ceil() - 1) * stride + kernel - size, min=0)
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


class _SameConv(nn.Conv2d):
    """A convolution padded as TensorFlow's ``SAME`` pads (more at the bottom and right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.size()[-2:]
        ph = _same_pad(height, self.kernel_size[0], self.stride[0])
        pw = _same_pad(width, self.kernel_size[1], self.stride[1])
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=0)
        return F.conv2d(x, self.weight, self.bias, self.stride, (0, 0), self.dilation, self.groups)


def _conv(
    spec: EncoderSpec, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1
) -> nn.Conv2d:
    """A bias-free convolution padded as timm pads it for this encoder."""
    if spec.same and stride > 1:
        return _SameConv(cin, cout, kernel, stride, 0, groups=groups, bias=False)
    pad = ((stride - 1) + (kernel - 1)) // 2
    return nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False)


class _BatchNormAct(nn.BatchNorm2d):
    """Batch norm, then an activation (or none): timm's ``BatchNormAct2d`` in eval mode."""

    def __init__(self, channels: int, eps: float, act: str | None) -> None:
        super().__init__(channels, eps=eps)
        self.drop = nn.Identity()
        self.act = _act(act) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


class _Block(nn.Module):
    """One encoder block: depthwise-separable (``ds``), inverted residual (``ir``) or a 1x1
    convolution (``cn``), with a residual connection where the shape allows it."""

    def __init__(self, spec: EncoderSpec, block: Block, cin: int) -> None:
        super().__init__()
        kind, kernel, stride, hidden, out = block
        self.kind = kind
        self.has_skip = stride == 1 and cin == out
        eps, act = spec.eps, spec.act
        if kind == "cn":
            self.conv = _conv(spec, cin, out, kernel, stride)
            self.bn1 = _BatchNormAct(out, eps, act)
            self.aa = nn.Identity()
        elif kind == "ds":
            self.conv_dw = _conv(spec, cin, cin, kernel, stride, groups=cin)
            self.bn1 = _BatchNormAct(cin, eps, act)
            self.aa = nn.Identity()
            self.se = nn.Identity()
            self.conv_pw = _conv(spec, cin, out, 1)
            self.bn2 = _BatchNormAct(out, eps, None)
        else:
            self.conv_pw = _conv(spec, cin, hidden, 1)
            self.bn1 = _BatchNormAct(hidden, eps, act)
            self.conv_dw = _conv(spec, hidden, hidden, kernel, stride, groups=hidden)
            self.bn2 = _BatchNormAct(hidden, eps, act)
            self.aa = nn.Identity()
            self.se = nn.Identity()
            self.conv_pwl = _conv(spec, hidden, out, 1)
            self.bn3 = _BatchNormAct(out, eps, None)
        self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.kind == "cn":
            x = self.aa(self.bn1(self.conv(x)))
        elif self.kind == "ds":
            x = self.se(self.aa(self.bn1(self.conv_dw(x))))
            x = self.bn2(self.conv_pw(x))
        else:
            x = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
            x = self.bn3(self.conv_pwl(self.se(self.aa(x))))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x


class _Features(nn.Module):
    """The encoder's body: a stem and stages, returning the feature stages' outputs."""

    def __init__(self, spec: EncoderSpec, in_channels: int) -> None:
        super().__init__()
        self.conv_stem = _conv(spec, in_channels, spec.stem, 3, 2)
        if spec.stem_act:
            self.bn1: nn.Module = nn.BatchNorm2d(spec.stem, eps=spec.eps)
            self.act1: nn.Module | None = _act(spec.act)
        else:
            self.bn1 = _BatchNormAct(spec.stem, spec.eps, spec.act)
            self.act1 = None
        stages, cin = [], spec.stem
        for stage in spec.stages:
            blocks = []
            for block in stage:
                blocks.append(_Block(spec, block, cin))
                cin = block[4]
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.features = spec.features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.bn1(self.conv_stem(x))
        if self.act1 is not None:
            x = self.act1(x)
        features = [x] if 0 in self.features else []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i + 1 in self.features:
                features.append(x)
        return features


class _Encoder(nn.Module):
    """The input, then the body's features (fine to coarse), as smp's timm encoder returns."""

    def __init__(self, spec: EncoderSpec, in_channels: int) -> None:
        super().__init__()
        self.model = _Features(spec, in_channels)
        ends = [stage[-1][4] for stage in spec.stages]
        self.out_channels = [in_channels] + [
            spec.stem if k == 0 else ends[k - 1] for k in spec.features
        ]
        self.output_stride = 32

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, *self.model(x)]


class _Identity(nn.Module):
    """An identity under a named child, as smp lays out ``Attention(None)`` (``attention``) and
    ``Activation(None)`` (``activation``)."""

    def __init__(self, child: str) -> None:
        super().__init__()
        self.child = child
        self.add_module(child, nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self._modules[self.child](x)  # type: ignore[misc]
        return out


def _conv_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class _DecoderBlock(nn.Module):
    """Upsample (nearest) to the skip's size, concatenate the skip, two 3x3 convolutions."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv_relu(cin + skip, cout)
        self.attention1 = _Identity("attention")
        self.conv2 = _conv_relu(cout, cout)
        self.attention2 = _Identity("attention")

    def forward(
        self, x: torch.Tensor, height: int, width: int, skip: torch.Tensor | None
    ) -> torch.Tensor:
        x = F.interpolate(x, size=(height, width), mode="nearest")
        if skip is not None:
            x = self.attention1(torch.cat([x, skip], dim=1))
        return self.attention2(self.conv2(self.conv1(x)))


class _Decoder(nn.Module):
    def __init__(self, encoder_channels: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        coarse_first = list(encoder_channels[1:])[::-1]
        ins = [coarse_first[0], *channels[:-1]]
        skips = [*coarse_first[1:], 0]
        self.center = nn.Identity()
        self.blocks = nn.ModuleList(
            _DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, channels, strict=True)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        sizes = [f.shape[2:] for f in features][::-1]
        coarse_first = features[1:][::-1]
        skips = coarse_first[1:]
        x = self.center(coarse_first[0])
        for i, block in enumerate(self.blocks):
            height, width = sizes[i + 1]
            x = block(x, height, width, skips[i] if i < len(skips) else None)
        return x


class _Unet(nn.Module):
    """encoder -> decoder -> 3x3 head, laid out as smp's ``Unet``."""

    def __init__(
        self, spec: EncoderSpec, in_channels: int, classes: int, decoder: Sequence[int]
    ) -> None:
        super().__init__()
        self.encoder = _Encoder(spec, in_channels)
        self.decoder = _Decoder(self.encoder.out_channels, decoder)
        self.segmentation_head = nn.Sequential(
            nn.Conv2d(decoder[-1], classes, 3, padding=1), nn.Identity(), _Identity("activation")
        )
        self.classification_head = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(self.decoder(self.encoder(x)))

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in ``eval()`` mode without autograd, as smp's ``predict``."""
        if self.training:
            self.eval()
        return self.forward(x)
