"""The input is compared with the checkpoint: dtype, value range, bands, pixel size; Inf and complex
values."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.errors import BandMismatchError, InputCompatibilityError, InputCompatibilityWarning
from geoseg.inference import predict_raster
from tests.conftest import write_raster
from tests.faults.conftest import rgb, tiny_checkpoint


def _reflectance(tmp_path: Path, name: str = "s2.tif") -> Path:
    data = (rgb(64, 64).astype(np.int16) * 35).astype(
        np.int16
    )  # 0..9000, like Sentinel-2 L2A reflectance
    return write_raster(tmp_path / name, data)


def test_int16_reflectance_into_an_8bit_model_warns_in_one_line(tmp_path: Path, ckpt: Path) -> None:
    with pytest.warns(
        InputCompatibilityWarning, match=r"dtype int16 \(model: uint8\).*--scale"
    ) as caught:
        predict_raster(
            _reflectance(tmp_path), tmp_path / "m.tif", ckpt, device="cpu", precision="fp32"
        )
    ours = [w for w in caught if issubclass(w.category, InputCompatibilityWarning)]
    assert len(ours) == 1 and "\n" not in str(ours[0].message)


def test_strict_refuses_and_scale_fixes(tmp_path: Path, ckpt: Path) -> None:
    src = _reflectance(tmp_path)
    with pytest.raises(InputCompatibilityError, match=r"refused because of --strict"):
        predict_raster(src, tmp_path / "m.tif", ckpt, device="cpu", strict=True)
    assert not (tmp_path / "m.tif").exists()
    for scale in ("0,9000", "auto"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", InputCompatibilityWarning)
            predict_raster(
                src,
                tmp_path / f"m{scale[0]}.tif",
                ckpt,
                device="cpu",
                precision="fp32",
                scale=scale,
                strict=True,
            )


def test_scaled_input_predicts_like_the_8bit_original(tmp_path: Path, ckpt: Path) -> None:
    eight = write_raster(tmp_path / "rgb.tif", rgb(64, 64))
    predict_raster(eight, tmp_path / "a.tif", ckpt, device="cpu", precision="fp32")
    predict_raster(
        _reflectance(tmp_path),
        tmp_path / "b.tif",
        ckpt,
        device="cpu",
        precision="fp32",
        scale="0,8925",
    )
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert (a.read(1) == b.read(1)).mean() > 0.99


def test_cli_scale_strict_and_resample_flags(tmp_path: Path, ckpt: Path) -> None:
    src = _reflectance(tmp_path)
    r = CliRunner().invoke(
        cli, ["predict", str(src), str(tmp_path / "m.tif"), "--model", str(ckpt), "--strict"]
    )
    assert r.exit_code == 1 and "--scale" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(
        cli, ["predict", str(src), str(tmp_path / "m.tif"), "--model", str(ckpt), "--scale", "5,1"]
    )
    assert r.exit_code == 2 and "LOW < HIGH" in r.output


def test_pixel_size_far_from_the_training_gsd_warns(tmp_path: Path, ckpt: Path) -> None:
    landsat = write_raster(
        tmp_path / "l8.tif", rgb(64, 64), transform=Affine(30, 0, 500000, 0, -30, 5700000)
    )
    with pytest.warns(
        InputCompatibilityWarning, match=r"pixel size 30 m \(model: 0.5 m\).*--resample-to-model"
    ):
        predict_raster(landsat, tmp_path / "m.tif", ckpt, device="cpu", precision="fp32")


def test_resample_to_model_returns_the_input_grid(tmp_path: Path, ckpt: Path) -> None:
    coarse = write_raster(
        tmp_path / "c.tif", rgb(40, 40), transform=Affine(2, 0, 500000, 0, -2, 5700000)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputCompatibilityWarning)
        result = predict_raster(
            coarse,
            tmp_path / "m.tif",
            ckpt,
            device="cpu",
            precision="fp32",
            resample_to_model=True,
            confidence=tmp_path / "c_conf.tif",
        )
    with rasterio.open(tmp_path / "m.tif") as m, rasterio.open(coarse) as c:
        assert (m.transform, m.shape, m.crs) == (c.transform, c.shape, c.crs)
        assert m.tags()["CLASS_NAMES"].count("building") == 1
    assert result.extra["resampled_to"] == pytest.approx(0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "c.tif",
        "c_conf.tif",
        "m.qml",
        "m.tif",
        "m.tif.aux.xml",
    ]


@pytest.mark.parametrize("bad", [np.inf, -np.inf, 3e38])
def test_inf_and_absurd_values_are_nodata(bad: float, tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "f.safetensors", band_dtype="float32")
    data = rgb(64, 64).astype(np.float32)
    nan = data.copy()
    nan[:, 20, 30] = np.nan
    data[:, 20, 30] = bad
    predict_raster(
        write_raster(tmp_path / "nan.tif", nan),
        tmp_path / "a.tif",
        ckpt,
        device="cpu",
        precision="fp32",
    )
    predict_raster(
        write_raster(tmp_path / "bad.tif", data),
        tmp_path / "b.tif",
        ckpt,
        device="cpu",
        precision="fp32",
    )
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert (a.read(1) == b.read(1)).all()  # exactly what a NaN gives: one nodata pixel
        assert b.read(1)[20, 30] == 255


@pytest.mark.parametrize("dtype", ["complex64", "complex_int16"])
def test_complex_input_uses_the_magnitude(dtype: str, tmp_path: Path, ckpt: Path) -> None:
    mag = rgb(64, 64).astype(np.float32)
    z = (mag / np.sqrt(2)).astype(np.float32)
    cdata = (z + 1j * z).astype(np.complex64)
    src = (
        write_raster(tmp_path / "z.tif", cdata)
        if dtype == "complex64"
        else _cint16(tmp_path / "z.tif", np.rint(z))
    )
    with pytest.warns(InputCompatibilityWarning, match=r"complex values .*used as their magnitude"):
        predict_raster(src, tmp_path / "z_mask.tif", ckpt, device="cpu", precision="fp32")
    with pytest.raises(InputCompatibilityError, match=r"complex values"):
        predict_raster(src, tmp_path / "z2.tif", ckpt, device="cpu", strict=True)


def _cint16(path: Path, part: np.ndarray) -> Path:
    data = (part + 1j * part).astype(np.complex64)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=64,
        width=64,
        count=3,
        dtype="complex_int16",
        crs="EPSG:32631",
        transform=Affine(0.5, 0, 500000, 0, -0.5, 5700000),
    ) as ds:
        ds.write(data)
    return path


@pytest.mark.parametrize(("bands", "hint"), [(1, "--bands 1,1,1"), (2, "--bands 1,2,2")])
def test_one_and_two_band_rasters_get_a_bands_hint(
    bands: int, hint: str, tmp_path: Path, ckpt: Path
) -> None:
    src = write_raster(tmp_path / "g.tif", rgb(64, 64)[:bands])
    with pytest.raises(BandMismatchError, match=hint):
        predict_raster(src, tmp_path / "m.tif", ckpt, device="cpu")


@pytest.mark.slow
def test_probability_and_confidence_cogs_mask_the_invalid_area(tmp_path: Path, ckpt: Path) -> None:
    data = rgb(600, 600)
    data[:, :, :300] = 0
    src = write_raster(tmp_path / "half.tif", data, nodata=0)
    predict_raster(
        src,
        tmp_path / "m.tif",
        ckpt,
        device="cpu",
        precision="fp32",
        probabilities=tmp_path / "p.tif",
        confidence=tmp_path / "c.tif",
        tile_size=320,
        batch_size=4,
    )
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert ds.nodata == 0 and ds.read(1)[:, 310:].min() >= 1
    for name in ("p.tif", "c.tif"):
        with rasterio.open(tmp_path / name) as ds:
            masks = ds.read_masks(1)
            assert (masks[:, :300] == 0).all() and (masks[:, 310:] == 255).all()
            assert ds.overviews(1)
            over = ds.read(1, out_shape=(150, 150), masked=True)
            assert over.mask[:, :74].all() and not over.mask[:, 78:].any()
            assert over[:, 78:].min() > 0  # the empty half is not averaged into the valid one
