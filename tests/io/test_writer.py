from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from geoseg.classes import ClassTable
from geoseg.errors import OutputExistsError, WriteError
from geoseg.io.info import describe_raster
from geoseg.io.writer import COGWriter

CLASSES = ClassTable.from_names(["background", "building", "road"])


def _write(
    dst: Path,
    arr: np.ndarray,
    step: int = 100,
    class_counts: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    **kw,
) -> None:
    with COGWriter(
        dst,
        height=arr.shape[1],
        width=arr.shape[2],
        count=arr.shape[0],
        dtype=arr.dtype.name,
        transform=Affine(0.5, 0, 1000, 0, -0.5, 2000),
        crs="EPSG:32631",
        **kw,
    ) as out:
        for r in range(0, arr.shape[1], step):
            window = Window(0, r, arr.shape[2], min(step, arr.shape[1] - r))
            out.write(arr[:, r : r + step], window, None if valid is None else valid[r : r + step])
        out.class_counts = class_counts


def test_class_mask_is_a_valid_cog_with_colours_and_names(tmp_path: Path) -> None:
    arr = (np.indices((700, 600)).sum(0) // 50 % 3).astype(np.uint8)[None]
    dst = tmp_path / "mask.tif"
    _write(dst, arr, nodata=255, classes=CLASSES, resampling="mode")
    info = describe_raster(dst)
    assert info["cog"], info["cog_problems"]
    assert info["overviews"] and info["bands"][0]["color_table"]
    assert info["crs"]["epsg"] == 32631 and info["nodata"] == 255
    with rasterio.open(dst) as ds:
        np.testing.assert_array_equal(ds.read(), arr)
        assert ds.colormap(1)[1] == (230, 25, 75, 255)
        assert ClassTable.from_json(ds.tags()["CLASS_NAMES"]).names == [
            "background",
            "building",
            "road",
        ]
    qml = (tmp_path / "mask.qml").read_text()
    assert 'label="building"' in qml and 'color="#e6194b"' in qml
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mask.qml",
        "mask.tif",
        "mask.tif.aux.xml",
    ]  # no leftovers


def test_failure_inside_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    dst = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="boom"):
        with COGWriter(
            dst, height=10, width=10, count=1, dtype="uint8", transform=Affine.identity(), crs=None
        ) as out:
            out.write(np.zeros((1, 10, 10), np.uint8), Window(0, 0, 10, 10))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    dst = tmp_path / "out.tif"
    arr = np.ones((1, 20, 20), np.uint8)
    _write(dst, arr)
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite"):
        _write(dst, arr)
    _write(dst, arr * 2, overwrite=True)
    with rasterio.open(dst) as ds:
        assert ds.read(1)[0, 0] == 2


def test_leftover_partial_file_of_a_killed_run_is_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (tmp_path / f".out.tif.geoseg-{dead.stdout.strip()}-abcd.partial.tif").write_bytes(
        b"killed half way"
    )
    _write(tmp_path / "out.tif", np.ones((1, 20, 20), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_missing_folder_and_directory_destination(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="does not exist; create it first"):
        _write(tmp_path / "no" / "out.tif", np.ones((1, 4, 4), np.uint8))
    with pytest.raises(WriteError, match="is a directory"):
        _write(tmp_path, np.ones((1, 4, 4), np.uint8))


def test_a_masked_writer_given_no_validity_marks_every_pixel_valid(tmp_path: Path) -> None:
    with COGWriter(
        tmp_path / "p.tif",
        count=2,
        dtype="uint8",
        nodata=None,
        mask=True,
        height=64,
        width=64,
        transform=Affine(0.5, 0, 600000, 0, -0.5, 5800000),
        crs="EPSG:32631",
    ) as w:
        w.write(np.ones((2, 32, 64), np.uint8), Window(0, 0, 64, 32))  # no validity given
        w.write(np.ones((2, 32, 64), np.uint8), Window(0, 32, 64, 32), np.eye(32, 64, dtype=bool))
    with rasterio.open(tmp_path / "p.tif") as ds:
        masks = ds.read_masks(1)
    assert (masks[:32] == 255).all() and (masks[32:] == np.eye(32, 64) * 255).all()


def test_class_counts_become_the_attribute_table_count_column(tmp_path: Path) -> None:
    arr = np.zeros((1, 40, 30), np.uint8)
    arr[0, :10] = 2
    counts = np.bincount(arr.ravel(), minlength=256)
    _write(tmp_path / "mask.tif", arr, nodata=255, classes=CLASSES, class_counts=counts)
    rat = ET.parse(tmp_path / "mask.tif.aux.xml").find("PAMRasterBand/GDALRasterAttributeTable")
    assert rat is not None
    assert [f.findtext("Name") for f in rat.findall("FieldDefn")][:3] == ["value", "count", "class"]
    rows = [[f.text for f in row.findall("F")][:3] for row in rat.findall("Row")]
    assert rows == [["0", "900", "background"], ["1", "0", "building"], ["2", "300", "road"]]


def test_masked_output_marks_invalid_pixels_with_nodata_not_an_internal_mask(
    tmp_path: Path,
) -> None:
    """Probabilities use every value 0..255: invalid pixels become nodata 0 (QGIS reads it; it
    shows a GDAL internal mask as one more band), a valid 0 is stored as 1."""
    probs = np.zeros((2, 600, 600), np.uint8)
    probs[0], probs[1, :, 300:] = 255, 128
    valid = np.ones((600, 600), bool)
    valid[:, :100] = False
    dst = tmp_path / "p.tif"
    _write(dst, probs, 300, valid=valid, resampling="average", mask=True)
    with rasterio.open(dst) as ds:
        assert ds.count == 2 and ds.nodata == 0
        assert ds.mask_flag_enums == ([rasterio.enums.MaskFlags.nodata],) * 2
        got = ds.read()
        masked = ds.read(1, out_shape=(150, 150), masked=True)
    assert (got[:, :, :100] == 0).all()
    assert (got[0, :, 100:] == 255).all() and (got[1, :, 100:300] == 1).all()
    assert (got[1, :, 300:] == 128).all()
    assert masked.mask[:, :25].all() and not masked.mask[:, 25:].any()
