"""Vectorize: regularized footprints stay a coverage; negative class ids are reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from scipy import ndimage

from geoseg.classes import ClassTable
from geoseg.errors import NegativeClassWarning
from geoseg.vectorize import vectorize_raster
from tests.conftest import write_raster


def _blobs(size: int = 160, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), 3)
    road = ndimage.gaussian_filter(rng.normal(size=(size, size)), 6)
    mask = np.zeros((size, size), np.uint8)
    mask[field > 0.05] = 1
    mask[road > 0.08] = 2
    return mask


def _overlap(path: Path) -> float:
    geoms = np.asarray(pyogrio.read_dataframe(path, layer=path.stem).geometry.values)
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    pairs = a < b
    return float(
        sum(
            shapely.area(shapely.intersection(geoms[i], geoms[j]))
            for i, j in zip(a[pairs], b[pairs], strict=True)
        )
    )


@pytest.mark.parametrize("block", [64, 2048])
def test_regularize_keeps_a_coverage(block: int, tmp_path: Path) -> None:
    mask = write_raster(tmp_path / "mask.tif", _blobs()[None], nodata=255)
    table = ClassTable.from_names(["background", "building", "road"])
    vectorize_raster(
        mask, tmp_path / "p.gpkg", classes=table, regularize=True, exclude=[], block_size=block
    )
    plain = vectorize_raster(mask, tmp_path / "q.gpkg", classes=table, exclude=[], block_size=block)
    assert plain.features > 10
    assert _overlap(tmp_path / "p.gpkg") < 1e-6 * 160 * 160


def test_negative_class_ids_are_reported(tmp_path: Path) -> None:
    data = np.zeros((1, 20, 20), np.int16)
    data[0, :10] = -3
    data[0, 15:, 15:] = 2
    mask = write_raster(tmp_path / "neg.tif", data)
    with pytest.warns(
        NegativeClassWarning, match=r"200 pixel\(s\) hold negative class ids \(down to -3\)"
    ):
        vectorize_raster(mask, tmp_path / "p.gpkg", exclude=[])
    data[0, :10] = -1
    mask = write_raster(tmp_path / "nd.tif", data, nodata=-1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", NegativeClassWarning)
        vectorize_raster(mask, tmp_path / "q.gpkg", exclude=[])  # negative nodata is fine
