from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import rasterio
from click.testing import CliRunner

from geoseg.cli import cli
from tests.cli.test_predict_cli import SAMPLE, checkpoint  # noqa: F401 (fixture)
from tests.conftest import write_raster
from tests.vectorize.conftest import CLASSES, landcover


def _mask(tmp_path: Path) -> Path:
    path = write_raster(tmp_path / "mask.tif", landcover((150, 130), 3), nodata=255)
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(CLASS_NAMES=CLASSES.to_json())
    return path


def test_vectorize_command(tmp_path: Path) -> None:
    mask = _mask(tmp_path)
    dst = tmp_path / "polygons.gpkg"
    result = CliRunner().invoke(
        cli,
        [
            "vectorize",
            str(mask),
            str(dst),
            "--simplify",
            "1px",
            "--min-area",
            "1",
            "--block-size",
            "64",
            "--vector-workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "polygons in 1 layer(s)" in result.output and "EPSG:32631" in result.output
    df = pyogrio.read_dataframe(dst, layer="polygons")
    assert set(df.class_name) == {"building", "road", "water"} and (df.area_m2 >= 1).all()
    again = CliRunner().invoke(cli, ["vectorize", str(mask), str(dst)])
    assert again.exit_code == 1 and "--overwrite" in again.output
    bad = CliRunner().invoke(cli, ["vectorize", str(mask), str(tmp_path / "x.kml")])
    assert (
        bad.exit_code == 1
        and "expected a vector file" in bad.output
        and "Traceback" not in bad.output
    )
    keep = CliRunner().invoke(
        cli,
        ["vectorize", str(mask), str(tmp_path / "all.fgb"), "--keep-all", "--connectivity", "8"],
    )
    assert keep.exit_code == 0, keep.output
    assert "background" in set(pyogrio.read_dataframe(tmp_path / "all.fgb").class_name)


def test_float_mask_is_refused_with_the_fix(tmp_path: Path) -> None:
    src = write_raster(
        tmp_path / "prob.tif", np.random.default_rng(0).random((1, 16, 16)).astype("float32")
    )
    result = CliRunner().invoke(cli, ["vectorize", str(src), str(tmp_path / "x.gpkg")])
    assert (
        result.exit_code == 1
        and "integer class ids" in result.output
        and "gdal_calc" in result.output
    )


def test_predict_with_vector_output(checkpoint: Path, tmp_path: Path) -> None:  # noqa: F811
    mask, vec = tmp_path / "mask.tif", tmp_path / "mask.gpkg"
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            SAMPLE,
            str(mask),
            "--model",
            str(checkpoint),
            "--precision",
            "fp32",
            "--vector",
            str(vec),
            "--keep-all",
            "--vector-workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    df = pyogrio.read_dataframe(vec, layer="mask")
    with rasterio.open(mask) as ds:
        m = ds.read(1)
        px = abs(ds.transform.a * ds.transform.e)
    assert df.area_m2.sum() == __import__("pytest").approx((m != 255).sum() * px, rel=1e-9)
    assert set(df.class_name) <= {"background", "building", "road"}
