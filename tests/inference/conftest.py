from __future__ import annotations

import pytest
import torch
from torch import nn

from geoseg.classes import ClassTable
from geoseg.models.checkpoint import LoadedModel
from geoseg.models.config import ModelConfig
from geoseg.normalize import Normalization


def pointwise_model(in_channels: int = 3, classes: int = 4, seed: int = 0) -> nn.Module:
    """A 1x1 convolution: translation-equivariant with no receptive field, so any tiling is
    exact."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(in_channels, classes, 1)
    nn.init.normal_(conv.weight, std=2.0)
    return conv.eval()


def conv3_model(in_channels: int = 3, classes: int = 4, seed: int = 0) -> nn.Module:
    """Two 3x3 convolutions: a 5x5 receptive field (2 px each side)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 3, padding=1)
    )
    for m in net:
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=1.0)  # decisive logits, as a trained net gives
    return net.eval()


def config_for(
    in_channels: int = 3,
    classes: int = 4,
    *,
    tile: int = 32,
    overlap: int = 8,
    scale: float = 255.0,
) -> ModelConfig:
    return ModelConfig(
        architecture="test",
        encoder="none",
        in_channels=in_channels,
        classes=ClassTable.default(classes),
        normalization=Normalization("scale", scale=scale),
        tile_size=tile,
        overlap=overlap,
        output_stride=1,
    )


@pytest.fixture
def pointwise() -> LoadedModel:
    return LoadedModel(pointwise_model(), config_for())


@pytest.fixture
def conv3() -> LoadedModel:
    return LoadedModel(conv3_model(), config_for(tile=64, overlap=16))
