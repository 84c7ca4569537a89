from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoseg.errors import RasterOpenError
from geoseg.io.info import describe_raster
from geoseg.io.reader import RasterReader
from geoseg.io.tiff import cog_layout_problems, read_ifd_layout
from tests.conftest import REPO, SHARED_DATA

SAMPLE = REPO / "sample_data" / "rotterdam_ps_rgb.tif"
_FOLDERS = ("geotiff-rasterio-testdata", "georust-gdal-fixtures", "spacenet6-rotterdam-samples")
SHARED_RASTERS = (
    sorted(
        p
        for folder in _FOLDERS
        for p in (SHARED_DATA / folder).rglob("*")
        if p.suffix.lower() in (".tif", ".tiff")
    )
    if SHARED_DATA.is_dir()
    else []
)


def test_sample_scene_facts() -> None:
    info = describe_raster(SAMPLE)
    assert info["crs"]["epsg"] == 32631
    assert info["resolution"] == pytest.approx([0.5, 0.5], abs=1e-4)
    assert info["nodata"] == 0
    assert info["cog"] is True and info["cog_problems"] == []
    assert info["bounds_lonlat"][0] == pytest.approx(4.350, abs=0.01)


@pytest.mark.skipif(not SHARED_RASTERS, reason=f"shared sample rasters not found at {SHARED_DATA}")
@pytest.mark.parametrize("path", SHARED_RASTERS, ids=lambda p: p.name)
def test_every_shared_geotiff_is_described_and_read(path: Path) -> None:
    info = describe_raster(path)
    assert info["width"] > 0 and info["count"] == len(info["bands"])
    assert info["cog"] is (info["cog_problems"] == [])  # valid exactly when nothing is wrong
    with RasterReader(path) as r:
        window = next(
            iter(
                __import__("geoseg.io.windows", fromlist=["plan_tiles"]).plan_tiles(
                    r.height, r.width, 64
                )
            )
        )
        got = r.read(window.window)
    assert got.data.shape == (info["count"], 64, 64)
    assert got.valid.dtype == np.bool_


def test_layout_check_on_a_striped_file(make_raster) -> None:
    path = make_raster(np.zeros((1, 600, 600), np.uint8))
    with open(path, "rb") as f:
        layout = read_ifd_layout(f)
    assert len(layout) == 1
    assert cog_layout_problems(layout) == []  # header first, then data
    assert "not internally tiled (striped)" in describe_raster(path)["cog_problems"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "no such file"),
        ("dir", "is a directory"),
        (b"hello, not a raster", "does not recognise as a raster"),
    ],
)
def test_bad_paths(tmp_path: Path, content, match: str) -> None:
    path = tmp_path / "x.tif"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(RasterOpenError, match=match):
        describe_raster(path)


def test_truncated_file(make_raster, tmp_path: Path) -> None:
    path = make_raster(
        np.random.default_rng(0).integers(0, 255, (3, 256, 256), dtype=np.uint8), compress="deflate"
    )
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(RasterOpenError, match="truncated"):
        describe_raster(cut)


def test_no_crs_and_rotation_are_warnings(make_raster) -> None:
    from affine import Affine

    info = describe_raster(
        make_raster(np.ones((1, 5, 5), np.uint8), crs=None, transform=Affine(1, 0.5, 0, 0.5, -1, 0))
    )
    assert info["crs"] is None and info["rotated"]
    assert any("no CRS" in w for w in info["warnings"]) and any(
        "rotated" in w for w in info["warnings"]
    )


def test_info_over_http(http_root) -> None:
    root, url = http_root
    (root / "s.tif").write_bytes(SAMPLE.read_bytes())
    info = describe_raster(f"{url}/s.tif")
    assert info["crs"]["epsg"] == 32631 and info["cog"]
