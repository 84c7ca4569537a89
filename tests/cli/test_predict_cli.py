from __future__ import annotations

from pathlib import Path

import pytest
import rasterio
from click.testing import CliRunner

from geoseg.classes import ClassTable
from geoseg.cli import cli
from geoseg.models import ModelConfig, build_model, save_checkpoint
from tests.conftest import REPO

SAMPLE = str(REPO / "sample_data" / "rotterdam_ps_rgb.tif")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    cfg = ModelConfig(
        "unet",
        "resnet18",
        3,
        ClassTable.from_names(["background", "building", "road"]),
        band_names=("red", "green", "blue"),
        tile_size=256,
        overlap=64,
        model_kwargs={"encoder_depth": 3, "decoder_channels": [32, 16, 8]},
        output_stride=8,
    )
    save_checkpoint(
        build_model(
            "unet",
            "resnet18",
            in_channels=3,
            classes=3,
            encoder_depth=3,
            decoder_channels=[32, 16, 8],
        ),
        cfg,
        path,
    )
    return path


def test_predict_writes_a_styled_cog_on_the_input_grid(checkpoint: Path, tmp_path: Path) -> None:
    dst = tmp_path / "mask.tif"
    result = CliRunner().invoke(
        cli, ["predict", SAMPLE, str(dst), "--model", str(checkpoint), "--precision", "fp32"]
    )
    assert result.exit_code == 0, result.output
    assert "Mpx/s" in result.output and "tiles run" in result.output
    with rasterio.open(dst) as out, rasterio.open(SAMPLE) as src:
        assert (out.transform, out.crs, out.shape) == (src.transform, src.crs, src.shape)
        assert out.tags()["CLASS_NAMES"].count("building") == 1
    assert (tmp_path / "mask.qml").exists()
    again = CliRunner().invoke(cli, ["predict", SAMPLE, str(dst), "--model", str(checkpoint)])
    assert again.exit_code == 1 and "already exists; pass --overwrite" in again.output


def test_band_mismatch_error(checkpoint: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["predict", SAMPLE, str(tmp_path / "m.tif"), "--model", str(checkpoint), "--bands", "1,2"],
    )
    assert result.exit_code == 1
    assert (
        "expects 3 band(s) (red, green, blue) but 2 were selected" in result.output
        and "--bands 1,2,3" in result.output
    )


def test_bad_options_are_clean_errors(checkpoint: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(
        cli,
        [
            "predict",
            SAMPLE,
            str(tmp_path / "m.tif"),
            "--model",
            str(checkpoint),
            "--tile-size",
            "250",
        ],
    )
    assert (
        r.exit_code == 1
        and "not a multiple of the model's output stride 8; use 248 or 256" in r.output
    )
    r = runner.invoke(
        cli,
        ["predict", SAMPLE, str(tmp_path / "m.tif"), "--model", str(tmp_path / "none.safetensors")],
    )
    assert r.exit_code == 1 and "no such checkpoint" in r.output
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    absent = f"cuda:{count}"  # one past the last GPU: missing on every host
    refused = (
        f"device '{absent}' was asked for but only {count} CUDA GPU(s) are visible"
        if count
        else f"device '{absent}' was asked for but no CUDA GPU is visible"
    )
    r = runner.invoke(
        cli,
        [
            "predict",
            SAMPLE,
            str(tmp_path / "m.tif"),
            "--model",
            str(checkpoint),
            "--device",
            absent,
        ],
    )
    assert r.exit_code == 1 and refused in r.output, r.output
    r = runner.invoke(
        cli,
        ["predict", SAMPLE, str(tmp_path / "m.tif"), "--model", str(checkpoint), "--bands", "1,b"],
    )
    assert r.exit_code == 2 and "band numbers such as 3,2,1" in r.output
    assert "Traceback" not in r.output


def test_models_lists_and_describes(checkpoint: Path) -> None:
    r = CliRunner().invoke(cli, ["models"])
    assert r.exit_code == 0 and "unet" in r.output and "resnet34" in r.output
    r = CliRunner().invoke(cli, ["models", str(checkpoint)])
    assert r.exit_code == 0 and "building" in r.output and "tile 256" in r.output
    # the bundled models by the names the listing prints (--model quality / fast)
    r = CliRunner().invoke(cli, ["models", "fast"])
    assert r.exit_code == 0 and "dubai-landcover-fast.safetensors" in r.output, r.output
    assert "vegetation" in r.output
