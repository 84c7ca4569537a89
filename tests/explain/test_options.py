"""explain honours or refuses every prediction option it accepts, and sees the very tiles predict
sees (one tile engine)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

import geoseg.inference.session as session_module
from geoseg.cli import cli
from geoseg.errors import ExplainError, InputCompatibilityError, InputCompatibilityWarning
from geoseg.explain import explain_raster
from geoseg.inference import predict_raster
from geoseg.models.checkpoint import LoadedModel, save_checkpoint
from tests.explain.test_explain import local_model
from tests.inference.conftest import config_for

pytest.importorskip("pytorch_grad_cam")


@pytest.fixture
def loaded() -> LoadedModel:
    return LoadedModel(local_model(), config_for(classes=3, tile=32, overlap=8))


@pytest.fixture
def sixteen_bit(make_raster) -> Path:
    """uint16 imagery in 0..4000: unlike the model's 8-bit training data."""
    rng = np.random.default_rng(3)
    return make_raster(rng.integers(0, 4000, (3, 70, 90)).astype(np.uint16))


def tiles_seen(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[int, int], np.ndarray]:
    """Record every normalized tile the engine hands to the network (or per-tile function)."""
    seen: dict[tuple[int, int], np.ndarray] = {}
    read = session_module.read_tile

    def recording(
        reader: Any, window: Any, norm: Any, adapt: Any = None, fill: Any = "mean"
    ) -> Any:
        got = read(reader, window, norm, adapt, fill)
        if got is not None:
            seen[(int(window.row_off), int(window.col_off))] = got[0].copy()
        return got

    monkeypatch.setattr(session_module, "read_tile", recording)
    return seen


@pytest.mark.parametrize("scale", [None, "0,4000", "auto"])
def test_explain_sees_the_tiles_predict_sees(
    tmp_path: Path, sixteen_bit: Path, loaded: LoadedModel, monkeypatch, scale
) -> None:
    opts = {"device": "cpu", "workers": 0, "scale": scale}
    seen = tiles_seen(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_raster(sixteen_bit, tmp_path / "m.tif", loaded, **opts)
        predicted = dict(seen)
        seen.clear()
        explain_raster(sixteen_bit, tmp_path / "cam.tif", loaded, target=1, layer="1", **opts)
    unlike = [w for w in caught if issubclass(w.category, InputCompatibilityWarning)]
    assert len(unlike) == (2 if scale is None else 0)  # both doors compare the input alike
    assert predicted.keys() == seen.keys() and len(seen) > 1
    for key, x in predicted.items():
        torch.testing.assert_close(torch.from_numpy(seen[key]), torch.from_numpy(x))
    if scale is not None:  # the scale changed what the network sees
        assert max(float(x.max()) for x in seen.values()) <= 1.0 + 1e-6


def test_scale_changes_the_heat_map(tmp_path: Path, sixteen_bit: Path, loaded) -> None:
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    with pytest.warns(UserWarning, match="--scale"):
        explain_raster(sixteen_bit, a, loaded, target=1, layer="1", device="cpu")
    explain_raster(sixteen_bit, b, loaded, target=1, layer="1", device="cpu", scale="0,4000")
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert not np.allclose(np.nan_to_num(x.read()), np.nan_to_num(y.read()))


def test_strict_refuses_input_unlike_the_training_data(
    tmp_path: Path, sixteen_bit: Path, loaded
) -> None:
    with pytest.raises(InputCompatibilityError, match="refused because of --strict"):
        explain_raster(sixteen_bit, tmp_path / "c.tif", loaded, target=1, layer="1", strict=True)
    assert not (tmp_path / "c.tif").exists()


def test_bands_choose_the_explained_bands(tmp_path: Path, make_raster, textured_rgb, loaded):
    rgb = textured_rgb(60, 70)
    four = make_raster(np.concatenate([rgb[2:], rgb[::-1]]), "four.tif")  # bands 4,3,2: R, G, B
    plain = make_raster(rgb, "plain.tif")
    explain_raster(plain, tmp_path / "a.tif", loaded, target=1, layer="1", device="cpu")
    explain_raster(
        four, tmp_path / "b.tif", loaded, target=1, layer="1", device="cpu", bands=(4, 3, 2)
    )
    with rasterio.open(tmp_path / "a.tif") as x, rasterio.open(tmp_path / "b.tif") as y:
        np.testing.assert_allclose(x.read(), y.read(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "option, match",
    [
        ({"tta": "flip"}, "without test-time augmentation, got --tta flip"),
        ({"precision": "bf16"}, "gradients in fp32, got --precision bf16"),
        ({"resample_to_model": True}, "cannot --resample-to-model"),
    ],
)
def test_options_explain_cannot_honour_are_refused(
    tmp_path: Path, make_raster, textured_rgb, loaded, option, match
) -> None:
    src = make_raster(textured_rgb(40, 40))
    with pytest.raises(ExplainError, match=match):
        explain_raster(src, tmp_path / "x.tif", loaded, target=1, layer="1", **option)
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--tta", "d4"], "without test-time augmentation"),
        (["--precision", "bf16"], "gradients in fp32"),
        (["--resample-to-model"], "cannot --resample-to-model"),
    ],
)
def test_cli_refuses_them_in_one_line(
    tmp_path: Path, make_raster, textured_rgb, loaded, flags, match
) -> None:
    ckpt = save_checkpoint(loaded.model, loaded.config, tmp_path / "m.safetensors")
    src = make_raster(textured_rgb(40, 40))
    out = tmp_path / "x.tif"
    args = ["explain", str(src), str(out), "--model", str(ckpt), "--class", "1", "--layer", "1"]
    result = CliRunner().invoke(cli, [*args, *flags])
    assert result.exit_code != 0
    assert match in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "option",
    [{"tile_size": 64}, {"overlap": 0}, {"blend": "crop"}, {"batch_size": 3}, {"workers": 0}],
)
def test_tiling_options_are_honoured(
    tmp_path: Path, make_raster, textured_rgb, loaded, monkeypatch, option
) -> None:
    """The tile plan of explain follows the option, as predict's does."""
    src = make_raster(textured_rgb(70, 90))
    seen = tiles_seen(monkeypatch)
    explain_raster(src, tmp_path / "e.tif", loaded, target=1, layer="1", device="cpu", **option)
    explained = dict(seen)
    seen.clear()
    predict_raster(src, tmp_path / "p.tif", loaded, device="cpu", **option)
    assert explained.keys() == seen.keys()
    if "tile_size" in option:
        assert {x.shape[-1] for x in explained.values()} == {64}
