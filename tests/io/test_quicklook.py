"""The PNG quicklook: image size, overlay colours, legend."""

from __future__ import annotations

import numpy as np
from PIL import Image

from geoseg.classes import ClassTable
from geoseg.io.quicklook import write_quicklook
from tests.conftest import write_raster


def test_quicklook_overlays_classes_and_adds_a_legend(tmp_path) -> None:
    image = write_raster(tmp_path / "img.tif", np.full((3, 200, 300), 100, np.uint8))
    ids = np.zeros((200, 300), np.uint8)
    ids[:, 150:] = 1
    ids[:10, :10] = 255
    mask = write_raster(tmp_path / "mask.tif", ids, nodata=255)
    classes = ClassTable.from_list([{"id": 0, "name": "land", "color": "#000000"}, {"id": 1, "name": "water", "color": "#0000ff"}])
    out = write_quicklook(image, mask, tmp_path / "q.png", classes=classes, max_size=150)
    png = np.asarray(Image.open(out).convert("RGB"))
    assert png.shape[1] == 150 and png.shape[0] > 100  # 150 x 100 image plus the legend strip
    left, right, nodata = png[50, 20], png[50, 130], png[1, 1]
    assert right[2] > right[0] + 50  # blue-tinted where class 1 lies
    assert tuple(left) == (55, 55, 55)  # 100 * (1 - 0.45) + 0 * 0.45
    assert tuple(nodata) == (100, 100, 100)  # no overlay on nodata
    assert (png[100:] < 128).any()  # legend text and swatches


def test_quicklook_stretches_non_8bit_imagery(tmp_path) -> None:
    rng = np.random.default_rng(0)
    image = write_raster(tmp_path / "img.tif", rng.normal(1000, 50, size=(4, 64, 64)).astype(np.float32))
    mask = write_raster(tmp_path / "mask.tif", np.full((64, 64), 255, np.uint8), nodata=255)
    out = write_quicklook(image, mask, tmp_path / "q.png", classes=ClassTable.default(2))
    png = np.asarray(Image.open(out).convert("RGB"))[:64]
    assert png.min() == 0 and png.max() == 255
