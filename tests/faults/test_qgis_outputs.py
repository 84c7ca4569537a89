"""Outputs QGIS 3.22 (GDAL 3.6) reads as they are: attribute table, GeoPackage 1.2, .qml
side-cars."""

from __future__ import annotations

import re
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from geoseg.classes import ClassTable
from geoseg.errors import GeosegWarning
from geoseg.io.writer import COGWriter
from geoseg.vectorize import vectorize_raster
from tests.conftest import write_raster

TABLE = ClassTable.from_names(["background", "building", "water & sea"])


def _mask(tmp_path: Path) -> Path:
    data = np.zeros((1, 20, 20), np.uint8)
    data[0, 5:10, 5:10] = 1
    data[0, 12:, 12:] = 2
    dst = tmp_path / "mask.tif"
    with COGWriter(
        dst,
        height=20,
        width=20,
        count=1,
        dtype="uint8",
        transform=Affine(0.5, 0, 500000, 0, -0.5, 5700000),
        crs=rasterio.crs.CRS.from_epsg(32631),
        classes=TABLE,
        nodata=255,
    ) as out:
        out.write(data, Window(0, 0, 20, 20))
    return dst


def test_class_cog_has_an_attribute_table(tmp_path: Path) -> None:
    dst = _mask(tmp_path)
    root = ET.parse(dst.with_name("mask.tif.aux.xml")).getroot()
    rat = root.find("PAMRasterBand/GDALRasterAttributeTable")
    assert rat is not None and rat.get("tableType") == "thematic"
    rows = [[f.text for f in row.findall("F")] for row in rat.findall("Row")]
    assert rows[2][:2] == ["2", "water & sea"] and len(rows) == 3
    assert [c.text for c in root.findall("PAMRasterBand/CategoryNames/Category")] == [
        "background",
        "building",
        "water & sea",
    ]
    with rasterio.open(dst) as ds:  # GDAL still opens it, with its colours inside
        assert ds.colormap(1)[1][:3] == TABLE.colormap()[1][:3]


def test_geopackage_is_version_1_2_with_iso_times(tmp_path: Path) -> None:
    mask = write_raster(tmp_path / "m.tif", np.eye(12, dtype=np.uint8)[None] + 1)
    vectorize_raster(mask, tmp_path / "p.gpkg", classes=TABLE)
    with sqlite3.connect(tmp_path / "p.gpkg") as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        times = [r[0] for r in db.execute("SELECT update_time FROM layer_styles")]
    assert version == 10200
    assert times and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", t) for t in times)


@pytest.mark.parametrize("suffix", [".fgb", ".geojson"])
def test_flatgeobuf_and_geojson_get_a_qml_sidecar(suffix: str, tmp_path: Path) -> None:
    mask = write_raster(tmp_path / "m.tif", np.eye(12, dtype=np.uint8)[None] + 1)
    vectorize_raster(mask, tmp_path / f"p{suffix}", classes=TABLE)
    qml = (tmp_path / "p.qml").read_text()
    assert 'attr="class_id"' in qml and "building" in qml
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.tif", "p.qml", f"p{suffix}"])


def test_vector_sidecar_never_replaces_the_rasters_style(tmp_path: Path) -> None:
    mask = _mask(tmp_path)
    before = mask.with_suffix(".qml").read_text()
    with pytest.warns(GeosegWarning, match=r"style of a raster of the same name"):
        vectorize_raster(mask, tmp_path / "mask.fgb")
    assert mask.with_suffix(".qml").read_text() == before
