"""Per-tile cells: geometry clipped to the image, a GeoPackage that QGIS 3.22 reads cleanly."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from geoseg.evaluation.pertile import CellGrid, write_cells

DEBIAN_PYTHON = "/usr/bin/python3"  # GDAL 3.6 (Debian 12), the GDAL QGIS 3.22 reads with


def _cells(tmp_path: Path) -> Path:
    grid = CellGrid(70, 90, 32, 3)  # 3 x 3 cells, the last row and column cut by the image edge
    labels = np.indices((70, 90)).sum(0) % 3
    grid.add(0, 0, labels, labels, np.ones((70, 90), bool), np.zeros((70, 90)))
    t = Affine(0.5, 0, 600000, 0, -0.5, 5700000)
    gpkg = tmp_path / "cells.gpkg"
    write_cells(
        grid.records(["a", "b", "c"], "scene.tif"),
        {"scene.tif": (t, CRS.from_epsg(32631))},
        32,
        gpkg,
        tmp_path / "cells.csv",
    )
    return gpkg


def test_edge_cells_end_at_the_image_edge(tmp_path: Path) -> None:
    cells = pyogrio.read_dataframe(_cells(tmp_path), layer="cells")
    geoms = np.asarray(cells.geometry.values)
    image = shapely.box(600000, 5700000 - 35, 600045, 5700000)
    assert len(geoms) == 9
    assert shapely.union_all(geoms).equals(image)  # no cell reaches past the raster
    assert shapely.area(geoms).sum() == pytest.approx(image.area)
    # a cell's area is its pixel count
    np.testing.assert_allclose(shapely.area(geoms), cells["pixels"] * 0.25)
    last = cells[(cells.cell_row == 2) & (cells.cell_col == 2)].iloc[0]
    assert (last.height, last.width, last.pixels) == (6, 26, 156)


def test_cells_are_a_geopackage_1_2_with_a_spatial_index(tmp_path: Path) -> None:
    gpkg = _cells(tmp_path)
    with sqlite3.connect(gpkg) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200
        assert db.execute(
            "SELECT count(*) FROM gpkg_extensions WHERE extension_name = 'gpkg_rtree_index'"
        ).fetchone() == (1,)
    if (
        shutil.which(DEBIAN_PYTHON) is None
        or subprocess.run(
            [DEBIAN_PYTHON, "-c", "import osgeo_utils.samples.validate_gpkg"], capture_output=True
        ).returncode
    ):
        pytest.skip("Debian's GDAL Python (python3-gdal) is not installed: no GDAL 3.6 validator")
    check = subprocess.run(
        [DEBIAN_PYTHON, "-m", "osgeo_utils.samples.validate_gpkg", str(gpkg)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and check.stdout + check.stderr == "", check.stdout + check.stderr
