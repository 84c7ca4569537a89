"""Test-time augmentation runs and averages what it says: flips and quarter turns, undone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from geoseg.inference import predict_block, predict_raster
from geoseg.inference.runtime import Runner
from geoseg.models.checkpoint import LoadedModel
from tests.inference.conftest import config_for, conv3_model, pointwise_model

CPU = {"device": "cpu", "precision": "fp32", "workers": 1}


def _run(model: torch.nn.Module, x: torch.Tensor, tta: str) -> torch.Tensor:
    with torch.inference_mode():  # as the engine calls it
        return Runner(model, torch.device("cpu"), "fp32", tta=tta, freeze=False)(x).clone()


def test_tta_averages_the_undone_predictions_of_each_view() -> None:
    model, x = conv3_model(), torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        plain = torch.softmax(model(x), 1)
        mirrored = torch.flip(torch.softmax(model(torch.flip(x, (-1,))), 1), (-1,))
    torch.testing.assert_close(_run(model, x, "none"), plain, atol=1e-6, rtol=0)
    torch.testing.assert_close(_run(model, x, "flip"), (plain + mirrored) / 2, atol=1e-6, rtol=0)
    assert (_run(model, x, "flip") - plain).abs().max() > 1e-3  # the mirrored view counts


@pytest.mark.parametrize(
    ("tta", "moves"),
    [
        ("flip", [lambda t: torch.flip(t, (-1,))]),
        (
            "d4",
            [
                lambda t: torch.flip(t, (-1,)),
                lambda t: torch.flip(t, (-2,)),
                lambda t: torch.rot90(t, 1, (-2, -1)),
                lambda t: torch.rot90(t, 3, (-2, -1)).transpose(-2, -1),
            ],
        ),
    ],
)
def test_tta_output_follows_the_moves_of_its_group(tta: str, moves: list) -> None:
    # a network that is no mirror image of itself; averaged over the group, its output moves
    # with its input
    model, x = conv3_model(), torch.randn(1, 3, 20, 20)
    out = _run(model, x, tta)
    for move in moves:
        torch.testing.assert_close(_run(model, move(x), tta), move(out), atol=1e-5, rtol=0)
    assert (_run(model, torch.flip(x, (-1,)), "none") - torch.flip(out, (-1,))).abs().max() > 1e-3


def test_tta_through_the_engine_keeps_grid_nodata_and_equivariant_models(
    tmp_path: Path, make_raster, textured_rgb
) -> None:
    data = textured_rgb(70, 90)
    data[:, :5, :7] = 0
    src = make_raster(data, nodata=0)
    pointwise = LoadedModel(pointwise_model(), config_for())  # a 1x1 convolution: every view agrees
    plain = predict_block(src, pointwise, Window(0, 0, 90, 70), **CPU)
    d4 = predict_block(src, pointwise, Window(0, 0, 90, 70), tta="d4", **CPU)
    np.testing.assert_allclose(d4.data, plain.data, atol=1e-5)
    conv = LoadedModel(conv3_model(), config_for(tile=64, overlap=16))
    predict_raster(src, tmp_path / "plain.tif", conv, **CPU)
    predict_raster(src, tmp_path / "flip.tif", conv, tta="flip", **CPU)
    with rasterio.open(tmp_path / "plain.tif") as a, rasterio.open(tmp_path / "flip.tif") as b:
        assert (a.transform, a.crs, a.shape, a.nodata) == (b.transform, b.crs, b.shape, b.nodata)
        first, second = a.read(1), b.read(1)
    assert (first[:5, :7] == 255).all() and (second[:5, :7] == 255).all()
    assert 0 < (first != second).mean() < 0.5  # the mirrored view changes some pixels
