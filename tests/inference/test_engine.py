from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.windows import Window

from geoseg.errors import (
    BandMismatchError,
    NoValidDataWarning,
    OutputExistsError,
    RasterFormatError,
    TilingError,
)
from geoseg.inference import predict_block, predict_raster
from geoseg.inference.blending import BLEND_KERNELS
from geoseg.models.checkpoint import LoadedModel
from tests.conftest import REPO
from tests.inference.conftest import config_for, pointwise_model

SIZES = [(1, 1), (5, 7), (100, 37), (97, 131)]


def whole_image(model: torch.nn.Module, data: np.ndarray, scale: float = 255.0) -> np.ndarray:
    x = torch.from_numpy(data.astype(np.float32) / scale)[None]
    with torch.inference_mode():
        return torch.softmax(model(x), 1)[0].numpy()


@pytest.mark.parametrize("blend", sorted(BLEND_KERNELS))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_tiled_equals_whole_image_for_a_pointwise_model(
    make_raster, textured_rgb, pointwise: LoadedModel, blend: str, size
) -> None:
    data = textured_rgb(*size)
    path = make_raster(data)
    got = predict_block(
        path,
        pointwise,
        Window(0, 0, size[1], size[0]),
        blend=blend,
        device="cpu",
        precision="fp32",
        workers=1,
    )
    expected = whole_image(pointwise.model, data)
    assert got.data.shape == expected.shape
    np.testing.assert_allclose(got.data, expected, atol=1e-4)
    assert (got.data.argmax(0) == expected.argmax(0)).mean() >= 0.999


def test_conv_net_crop_blend_is_exact_away_from_the_border(
    make_raster, textured_rgb, conv3: LoadedModel
) -> None:
    data = textured_rgb(150, 170)
    got = predict_block(
        make_raster(data),
        conv3,
        Window(0, 0, 170, 150),
        blend="crop",
        device="cpu",
        precision="fp32",
    )
    expected = whole_image(conv3.model, data)
    np.testing.assert_allclose(got.data[:, 3:-3, 3:-3], expected[:, 3:-3, 3:-3], atol=1e-4)


@pytest.mark.parametrize(
    ("blend", "target"),
    [("gaussian", 0.999), ("cosine", 0.999), ("linear", 0.999), ("mean", 0.995)],
)
def test_conv_net_blends_agree_on_classes(
    make_raster, textured_rgb, conv3: LoadedModel, blend: str, target: float
) -> None:
    # A real receptive field makes tile edges differ from the whole image; tapered kernels hide
    # that, a uniform mean shows it (which is why gaussian is the default).
    data = textured_rgb(150, 170)
    got = predict_block(
        make_raster(data),
        conv3,
        Window(0, 0, 170, 150),
        blend=blend,
        device="cpu",
        precision="fp32",
    )
    expected = whole_image(conv3.model, data)
    assert (got.data.argmax(0) == expected.argmax(0))[3:-3, 3:-3].mean() >= target


def test_any_block_alone_equals_the_same_block_of_the_full_run(
    make_raster, textured_rgb, conv3: LoadedModel
) -> None:
    data = textured_rgb(120, 90)
    path = make_raster(data)
    full = predict_block(path, conv3, Window(0, 0, 90, 120), device="cpu", precision="fp32")
    block = Window(13, 41, 50, 37)
    part = predict_block(path, conv3, block, device="cpu", precision="fp32")
    np.testing.assert_array_equal(part.data, full.data[:, 41:78, 13:63])
    assert part.transform == full.transform * Affine.translation(13, 41)


def test_mask_output_grid_nodata_and_classes(
    make_raster, textured_rgb, pointwise: LoadedModel, tmp_path: Path
) -> None:
    data = textured_rgb(70, 90)
    data[:, :10, :] = 0  # nodata stripe
    src = make_raster(data, nodata=0, transform=Affine(0.5, 0.1, 600000, 0.1, -0.5, 5700000))
    dst, probs, conf = tmp_path / "mask.tif", tmp_path / "p.tif", tmp_path / "c.tif"
    result = predict_raster(
        src, dst, pointwise, device="cpu", precision="fp32", probabilities=probs, confidence=conf
    )
    expected = whole_image(pointwise.model, data).argmax(0)
    with rasterio.open(dst) as out, rasterio.open(src) as inp:
        assert (out.transform, out.crs, out.shape) == (inp.transform, inp.crs, inp.shape)
        mask = out.read(1)
        assert out.nodata == 255 and out.colormap(1)[1][:3] == (230, 25, 75)
    assert (mask[:10] == 255).all()
    np.testing.assert_array_equal(mask[10:], expected[10:])
    with rasterio.open(probs) as p, rasterio.open(conf) as c:
        assert p.count == 4 and p.descriptions[0] == "class_0"
        total = p.read().astype(int).sum(0)[10:]
        assert np.abs(total - 255).max() <= 4  # uint8 rounding of probabilities summing to 1
        assert (c.read(1)[10:] >= 255 // 4).all()
    assert result.tiles_run >= 1 and result.precision == "fp32"


def test_all_nodata_raster_warns_and_writes_nodata(
    make_raster, pointwise: LoadedModel, tmp_path: Path
) -> None:
    src = make_raster(np.zeros((3, 40, 40), np.uint8), nodata=0)
    with pytest.warns(NoValidDataWarning, match="no tile held a valid pixel"):
        result = predict_raster(src, tmp_path / "m.tif", pointwise, device="cpu")
    assert result.tiles_run == 0 and result.tiles_skipped == result.tiles
    with rasterio.open(tmp_path / "m.tif") as out:
        assert (out.read(1) == 255).all()


def test_band_mismatch_names_both_counts_and_the_fix(
    make_raster, textured_rgb, tmp_path: Path
) -> None:
    model = LoadedModel(pointwise_model(in_channels=4), config_for(in_channels=4))
    with pytest.raises(
        BandMismatchError, match=r"expects 4 band\(s\) but 3 were selected from a raster of 3"
    ):
        predict_raster(make_raster(textured_rgb(20, 20)), tmp_path / "m.tif", model, device="cpu")
    rgbn = make_raster(np.concatenate([textured_rgb(20, 20)] * 2), name="six.tif")
    with pytest.raises(BandMismatchError, match="--bands 1,2,3,4"):
        predict_raster(rgbn, tmp_path / "m.tif", model, device="cpu")
    predict_raster(rgbn, tmp_path / "m.tif", model, device="cpu", bands=(3, 2, 1, 4))
    assert not list(tmp_path.glob(".*partial*"))


def test_tile_size_must_fit_the_output_stride(make_raster, textured_rgb, tmp_path: Path) -> None:
    model = LoadedModel(pointwise_model(), config_for().replace(output_stride=32))
    with pytest.raises(
        TilingError,
        match="tile size 500 px is not a multiple of the model's output stride 32; use 480 or 512",
    ):
        predict_raster(
            make_raster(textured_rgb(20, 20)),
            tmp_path / "m.tif",
            model,
            tile_size=500,
            device="cpu",
        )
    src = make_raster(textured_rgb(20, 20))
    # below the stride: one size to suggest, not the same one twice
    with pytest.raises(TilingError, match=r"stride 32; use 32$"):
        predict_raster(src, tmp_path / "m.tif", model, tile_size=7, device="cpu")
    # a tile no forward pass can hold, or an overlap leaving a 1-px stride: refused up front
    with pytest.raises(TilingError, match="larger than the 8192 px"):
        predict_raster(src, tmp_path / "m.tif", model, tile_size=100_000, device="cpu")
    with pytest.raises(
        TilingError, match=r"overlap of 511 px leaves a stride of 1 px.*256 px or 0.5"
    ):
        predict_raster(src, tmp_path / "m.tif", model, tile_size=512, overlap=511, device="cpu")
    assert not (tmp_path / "m.tif").exists()


def test_outputs_must_be_geotiff_names(make_raster, textured_rgb, tmp_path: Path) -> None:
    model = LoadedModel(pointwise_model(), config_for())
    src = make_raster(textured_rgb(20, 20))
    for name, kwargs in (("m.jpg", {}), ("m", {}), ("m.tif", {"confidence": tmp_path / "c.png"})):
        with pytest.raises(RasterFormatError, match=r"expected a \.tif or \.tiff name"):
            predict_raster(src, tmp_path / name, model, device="cpu", **kwargs)
    assert not list(tmp_path.glob("m*")) and not (tmp_path / "c.png").exists()
    predict_raster(src, tmp_path / "M.TIFF", model, device="cpu")  # any case


def test_existing_output_is_refused_before_any_work(
    make_raster, textured_rgb, pointwise, tmp_path: Path
) -> None:
    dst = tmp_path / "m.tif"
    dst.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="already exists"):
        predict_raster(make_raster(textured_rgb(20, 20)), dst, pointwise, device="cpu")
    assert dst.read_bytes() == b"precious"


def test_predict_from_an_http_cog(http_root, pointwise, tmp_path: Path) -> None:
    root, url = http_root
    (root / "scene.tif").write_bytes((REPO / "sample_data" / "rotterdam_ps_rgb.tif").read_bytes())
    result = predict_raster(
        f"{url}/scene.tif", tmp_path / "m.tif", pointwise, tile_size=256, device="cpu"
    )
    with rasterio.open(tmp_path / "m.tif") as out:
        assert out.shape == (900, 900) and out.crs.to_epsg() == 32631
        assert (out.read(1) == 255).mean() == pytest.approx(0.372, abs=0.01)  # the scene's nodata
    assert result.tiles_skipped >= 1


@pytest.mark.slow
def test_sigkill_leaves_nothing_and_a_rerun_succeeds(tmp_path: Path, textured_rgb) -> None:
    from geoseg.classes import ClassTable
    from geoseg.models import build_model, save_checkpoint
    from geoseg.models.config import ModelConfig
    from tests.conftest import write_raster

    src = write_raster(
        tmp_path / "big.tif", textured_rgb(512, 512), tiled=True, blockxsize=256, blockysize=256
    )
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(
        build_model("unet", "tu-mobilenetv3_small_050", in_channels=3, classes=2),
        ModelConfig(
            "unet", "tu-mobilenetv3_small_050", 3, ClassTable.default(2), tile_size=256, overlap=64
        ),
        ckpt,
    )
    dst = tmp_path / "out" / "mask.tif"
    dst.parent.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "geoseg",
        "-q",
        "predict",
        str(src),
        str(dst),
        "--model",
        str(ckpt),
        "--precision",
        "fp32",
    ]
    env = {**os.environ, "GEOSEG_CACHE_DIR": "off"}  # no one-off trace timing: just the writes
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def partial() -> bool:
        return any(p.name.startswith(".mask.tif.geoseg-") for p in dst.parent.iterdir())

    deadline = time.time() + 60
    while not partial() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert partial(), "prediction did not start writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not dst.exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in dst.parent.iterdir()) == [
        "mask.qml",
        "mask.tif",
        "mask.tif.aux.xml",
    ]


def test_column_stripes_give_the_same_mask(
    make_raster, textured_rgb, conv3: LoadedModel, tmp_path: Path, monkeypatch
) -> None:
    import geoseg.inference.session as session
    from geoseg.inference import open_session

    src = make_raster(textured_rgb(90, 300))
    predict_raster(
        src, tmp_path / "one.tif", conv3, device="cpu", probabilities=tmp_path / "p1.tif"
    )
    # a budget that fits one 64-px tile column forces several stripes
    monkeypatch.setattr(session, "STRIPE_BUDGET", 64 * 64 * (4 * 4 + 5))
    with open_session(src, conv3, device="cpu") as s:
        assert len(s.stripes()) > 1
    predict_raster(
        src, tmp_path / "many.tif", conv3, device="cpu", probabilities=tmp_path / "p2.tif"
    )
    with rasterio.open(tmp_path / "one.tif") as a, rasterio.open(tmp_path / "many.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    with rasterio.open(tmp_path / "p1.tif") as a, rasterio.open(tmp_path / "p2.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_frozen_runner_matches_eager_and_falls_back() -> None:
    import torch
    from torch import nn

    from geoseg.inference.runtime import Runner
    from geoseg.models import build_model

    torch.manual_seed(0)
    model = build_model(
        "unet", "resnet18", in_channels=3, classes=4, encoder_depth=3, decoder_channels=(16, 8, 8)
    )
    x = torch.randn(2, 3, 64, 64)
    eager = Runner(model, torch.device("cpu"), "fp32", freeze=False)(x)
    runner = Runner(model, torch.device("cpu"), "fp32", freeze=True)
    frozen = runner(x)
    assert runner._frozen is not None
    assert torch.allclose(eager, frozen, atol=1e-4)
    assert torch.allclose(runner(x[:1]), eager[:1], atol=1e-4)  # other batch shapes run eagerly

    class Untraceable(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            if torch.jit.is_tracing():
                raise RuntimeError("this model cannot be traced")
            return t[:, :2]

    r = Runner(Untraceable(), torch.device("cpu"), "fp32", freeze=True)
    out = r(x)
    assert r._frozen is None and out.shape == (2, 2, 64, 64)  # ran eagerly
