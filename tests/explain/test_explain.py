from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from rasterio.windows import Window
from torch import nn

from geoseg.cli import cli
from geoseg.errors import ExplainError, OutputCollisionError
from geoseg.explain import CamComputer, explain_raster, list_layers, resolve_layer
from geoseg.models.checkpoint import LoadedModel, model_from_config, save_checkpoint
from tests.inference.conftest import config_for

pytest.importorskip("pytorch_grad_cam")


def region_model() -> nn.Module:
    """Class k's logit is ReLU(band k - 0.5): with dark imagery it depends only on where band k is
    bright."""
    feat = nn.Conv2d(3, 3, 1)
    head = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        feat.weight.copy_(torch.eye(3)[:, :, None, None])
        feat.bias.fill_(-0.5)
        head.weight.copy_(torch.eye(3)[:, :, None, None])
        head.bias.zero_()
    return nn.Sequential(feat, nn.ReLU(), head).eval()


def local_model(seed: int = 0) -> nn.Module:
    """A 3x3 convolution, ReLU, and a 1x1 head: Grad-CAM at the ReLU is local (3x3 receptive
    field)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1)).eval()


@pytest.fixture
def regions(make_raster) -> tuple[Path, dict[int, np.ndarray]]:
    data = np.full((3, 96, 112), 20, np.uint8)
    where = {1: (slice(10, 40), slice(60, 100)), 2: (slice(55, 90), slice(5, 30))}
    masks = {}
    for k, sl in where.items():
        data[(k, *sl)] = 250
        m = np.zeros((96, 112), bool)
        m[sl] = True
        masks[k] = m
    return make_raster(data), masks


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_heat_concentrates_where_the_class_depends_on_the_input(
    tmp_path: Path, regions, method: str
) -> None:
    src, masks = regions
    loaded = LoadedModel(region_model(), config_for(classes=3, tile=32, overlap=8))
    for k, mask in masks.items():
        out = tmp_path / f"cam{k}-{method}.tif"
        explain_raster(
            src, out, loaded, target=k, method=method, layer="1", device="cpu", workers=1
        )
        with rasterio.open(out) as ds:
            heat = np.nan_to_num(ds.read(1))
        assert heat.sum() > 0
        assert heat[mask].sum() / heat.sum() >= 0.99


@pytest.mark.slow
def test_blended_tiles_equal_the_whole_image_away_from_the_border(
    tmp_path: Path, make_raster, textured_rgb
) -> None:
    data = textured_rgb(100, 120)
    src = make_raster(data)
    loaded = LoadedModel(local_model(), config_for(classes=3, tile=32, overlap=8))
    out = tmp_path / "cam.tif"
    explain_raster(src, out, loaded, target=2, layer="1", blend="crop", device="cpu", workers=1)
    with rasterio.open(out) as ds, rasterio.open(src) as s:
        heat = ds.read(1)
        assert (ds.width, ds.height, ds.transform, ds.crs) == (
            s.width,
            s.height,
            s.transform,
            s.crs,
        )
    cam = CamComputer(loaded.model, loaded.model[1], 2)
    x = torch.from_numpy(data.astype(np.float32) / 255)[None]
    whole = cam(x, torch.ones(1, 100, 120))[0, 0].numpy()
    cam.close()
    inner = (slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(heat[inner], whole[inner], atol=1e-3 * float(whole.max()))


def test_window_output_sits_on_the_input_grid_and_activations_have_bands(
    tmp_path: Path, make_raster, textured_rgb
) -> None:
    src = make_raster(textured_rgb(70, 90))
    loaded = LoadedModel(local_model(), config_for(classes=3, tile=32, overlap=8))
    res = explain_raster(
        src,
        tmp_path / "a.tif",
        loaded,
        method="activations",
        layer="1",
        window=Window(10, 20, 40, 30),
        channels=5,
        overlay=tmp_path / "a.png",
        device="cpu",
    )
    with rasterio.open(tmp_path / "a.tif") as ds, rasterio.open(src) as s:
        assert ds.count == 5 and (ds.width, ds.height) == (40, 30)
        assert ds.transform == s.window_transform(Window(10, 20, 40, 30))
        assert np.isfinite(ds.read()).all()
    assert res.overlay is not None and res.overlay.stat().st_size > 0


def test_nodata_is_nan(tmp_path: Path, make_raster, textured_rgb) -> None:
    data = textured_rgb(40, 50)
    data[:, :, :10] = 0
    src = make_raster(data, nodata=0)
    loaded = LoadedModel(local_model(), config_for(classes=3, tile=32, overlap=8))
    explain_raster(
        src,
        tmp_path / "c.tif",
        loaded,
        target=0,
        layer="1",
        device="cpu",
        overlay=tmp_path / "c.png",
    )
    with rasterio.open(tmp_path / "c.tif") as ds:
        heat = ds.read(1)
    assert np.isnan(heat[:, :10]).all() and np.isfinite(heat[:, 10:]).all()


def test_aoi_limits_the_target(tmp_path: Path, regions) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    src, _ = regions
    with rasterio.open(src) as ds:
        left, top = ds.transform * (60, 10)
        right, bottom = ds.transform * (100, 40)
        crs = ds.crs
    gpd.GeoDataFrame(geometry=[box(left, bottom, right, top)], crs=crs).to_file(
        tmp_path / "aoi.gpkg"
    )
    loaded = LoadedModel(region_model(), config_for(classes=3, tile=32, overlap=8))
    res = explain_raster(
        src,
        tmp_path / "c.tif",
        loaded,
        target=1,
        layer="1",
        aoi=tmp_path / "aoi.gpkg",
        device="cpu",
    )
    assert (int(res.window.width), int(res.window.height)) == (40, 30)


def test_errors(tmp_path: Path, make_raster, textured_rgb) -> None:
    src = make_raster(textured_rgb(40, 40))
    loaded = LoadedModel(local_model(), config_for(classes=3, tile=32, overlap=8))
    with pytest.raises(ExplainError, match="unknown layer 'nope'"):
        explain_raster(src, tmp_path / "a.tif", loaded, target=0, layer="nope")
    with pytest.raises(ExplainError, match="unknown class 'house'; expected one of"):
        explain_raster(src, tmp_path / "a.tif", loaded, target="house", layer="1")
    with pytest.raises(ExplainError, match="unknown method"):
        explain_raster(src, tmp_path / "a.tif", loaded, target=0, method="saliency")
    with pytest.raises(ExplainError, match="does not overlap"):
        explain_raster(
            src, tmp_path / "a.tif", loaded, target=0, layer="1", window=Window(100, 100, 5, 5)
        )
    # an input is never replaced, not even with overwrite: as the output or as the picture
    before = Path(src).read_bytes()
    with pytest.raises(OutputCollisionError, match="SCENE"):
        explain_raster(src, src, loaded, target=0, layer="1", overwrite=True)
    with pytest.raises(OutputCollisionError, match="--overlay"):
        explain_raster(
            src, tmp_path / "b.tif", loaded, target=0, layer="1", overlay=src, overwrite=True
        )
    assert Path(src).read_bytes() == before and not (tmp_path / "b.tif").exists()


@pytest.fixture(scope="module")
def tiny_unet(tmp_path_factory) -> Path:
    cfg = config_for(classes=3, tile=64, overlap=16).replace(
        architecture="unet",
        encoder="resnet18",
        output_stride=8,
        model_kwargs={"encoder_depth": 3, "decoder_channels": [16, 8, 4]},
    )
    path = tmp_path_factory.mktemp("unet") / "m.safetensors"
    save_checkpoint(model_from_config(cfg), cfg, path)
    return path


def test_presets_of_a_unet(tiny_unet: Path) -> None:
    from geoseg.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(tiny_unet)
    names = [layer.name for layer in list_layers(loaded.model, 3)]
    assert names == [
        "encoder.stage1",
        "encoder.stage2",
        "encoder.stage3",
        "decoder.block1",
        "decoder.block2",
        "decoder.block3",
        "head",
    ]
    assert resolve_layer(loaded.model, None, 3)[0] == "decoder.block2"
    with pytest.raises(ExplainError, match=r"expected a preset \(encoder.stage1, "):
        resolve_layer(loaded.model, "decoder.block9", 3)


@pytest.mark.slow
def test_cli(tmp_path: Path, tiny_unet: Path, make_raster, textured_rgb) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["models", str(tiny_unet), "--layers"])
    assert res.exit_code == 0 and "decoder.block2" in res.output and "encoder.layer1" in res.output
    src = make_raster(textured_rgb(80, 100))
    res = runner.invoke(
        cli,
        [
            "explain",
            str(src),
            str(tmp_path / "h.tif"),
            "--class",
            "1",
            "--model",
            str(tiny_unet),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "h.png").is_file()
    res = runner.invoke(
        cli, ["explain", str(src), str(tmp_path / "h2.tif"), "--model", str(tiny_unet)]
    )
    assert res.exit_code == 2 and "--class is required" in res.output
    res = runner.invoke(
        cli,
        ["explain", str(src), str(tmp_path / "h.tif"), "--class", "1", "--model", str(tiny_unet)],
    )
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = runner.invoke(
        cli, ["explain", str(src), str(tmp_path / "h3.tif"), "--class", "1", "--window", "1,2"]
    )
    assert res.exit_code == 2 and "COL,ROW,WIDTH,HEIGHT" in res.output
