"""Labels checked and read onto the image grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.windows import Window

from geoseg.classes import IGNORE_INDEX
from geoseg.errors import DatasetError
from geoseg.evaluation.evaluate import EvalPair, checked_labels
from geoseg.io.labels import LabelReader
from geoseg.io.open import grid_of, open_raster
from geoseg.io.reader import RasterReader
from tests.conftest import write_raster

NAMES = ["background", "building", "water"]


def test_labels_on_a_coarser_grid_are_warped_onto_the_image(tmp_path: Path) -> None:
    image = write_raster(
        tmp_path / "image.tif",
        np.zeros((3, 40, 60), np.uint8),
        transform=Affine(1, 0, 500_000, 0, -1, 5_700_000),
    )
    coarse = np.zeros((20, 30), np.uint8)
    coarse[:, 15:] = 2
    coarse[0, 0] = 7  # nodata in the label raster
    labels = write_raster(
        tmp_path / "labels.tif",
        coarse,
        transform=Affine(2, 0, 500_000, 0, -2, 5_700_000),
        nodata=7,
    )
    out = checked_labels(EvalPair(str(image), str(labels), "scene"), (40, 60), NAMES)
    assert out.shape == (40, 60) and out.dtype == np.int64
    assert (out[:, :30][2:] == 0).all() and (out[:, 30:] == 2).all()
    assert (out[:2, :2] == IGNORE_INDEX).all()
    with LabelReader(labels, image) as reader:  # what scoring reads, window by window
        assert (reader.height, reader.width) == (40, 60)
        np.testing.assert_array_equal(reader.read(Window(0, 0, 60, 2)), out[:2])
        np.testing.assert_array_equal(reader.read(Window(20, 2, 40, 38)), out[2:, 20:])
    with open_raster(image) as ds, RasterReader(image) as reader:
        expected = {"height": 40, "width": 60, "transform": ds.transform, "crs": ds.crs}
        assert grid_of(ds) == reader.grid == expected


def test_labels_of_another_size_or_unknown_class_are_refused(tmp_path: Path) -> None:
    image = write_raster(tmp_path / "image.tif", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="scene: labels are 4x2 but the image is 8x8"):
        checked_labels(EvalPair(str(image), np.zeros((2, 4), np.int64), "scene"), (8, 8), NAMES)
    with pytest.raises(DatasetError, match="scene: labels are 4x2 but the image is 8x8"):
        LabelReader(np.zeros((2, 4), np.int64), image, name="scene")
    with pytest.raises(DatasetError, match=r"image.tif: labels hold class 5 .* knows 3 classes"):
        checked_labels(EvalPair(str(image), np.full((8, 8), 5, np.int64)), (8, 8), NAMES)
