"""The PNG quicklook: image size, overlay colours, legend."""

from __future__ import annotations

import numpy as np
from PIL import Image

from geoseg.classes import ClassTable
from geoseg.io.quicklook import display_colours, write_comparison, write_quicklook
from tests.conftest import write_raster


def test_quicklook_overlays_classes_and_adds_a_legend(tmp_path) -> None:
    image = write_raster(tmp_path / "img.tif", np.full((3, 200, 300), 100, np.uint8))
    ids = np.zeros((200, 300), np.uint8)
    ids[:, 150:] = 1
    ids[:10, :10] = 255
    mask = write_raster(tmp_path / "mask.tif", ids, nodata=255)
    classes = ClassTable.from_list(
        [{"id": 0, "name": "c0", "color": "#000000"}, {"id": 1, "name": "c1", "color": "#0000ff"}]
    )
    out = write_quicklook(image, mask, tmp_path / "q.png", classes=classes, max_size=150)
    png = np.asarray(Image.open(out).convert("RGB"))
    assert png.shape[1] == 150 and png.shape[0] > 100  # 150 x 100 image plus the legend strip
    left, right, nodata = png[50, 20], png[50, 130], png[1, 1]
    assert right[2] > right[0] + 50  # blue-tinted where class 1 lies
    assert tuple(left) == (55, 55, 55)  # 100 * (1 - 0.45) + 0 * 0.45
    assert tuple(nodata) == (100, 100, 100)  # no overlay on nodata
    assert (png[100:] < 128).any()  # legend text and swatches


def test_quicklook_without_legend_is_the_picture_alone(tmp_path) -> None:
    image = write_raster(tmp_path / "img.tif", np.full((3, 200, 300), 100, np.uint8))
    mask = write_raster(tmp_path / "mask.tif", np.ones((200, 300), np.uint8), nodata=255)
    classes = ClassTable.default(2)
    out = write_quicklook(
        image, mask, tmp_path / "q.png", classes=classes, max_size=150, legend=False
    )
    with_legend = write_quicklook(image, mask, tmp_path / "l.png", classes=classes, max_size=150)
    png = np.asarray(Image.open(out).convert("RGB"))
    assert png.shape == (100, 150, 3)  # no strip below for a legend
    legend = np.asarray(Image.open(with_legend).convert("RGB"))
    assert (legend[:100] == png).all() and legend.shape[0] > 100


def test_quicklook_stretches_non_8bit_imagery(tmp_path) -> None:
    rng = np.random.default_rng(0)
    image = write_raster(
        tmp_path / "img.tif", rng.normal(1000, 50, size=(4, 64, 64)).astype(np.float32)
    )
    mask = write_raster(tmp_path / "mask.tif", np.full((64, 64), 255, np.uint8), nodata=255)
    out = write_quicklook(image, mask, tmp_path / "q.png", classes=ClassTable.default(2))
    png = np.asarray(Image.open(out).convert("RGB"))[:64]
    assert png.min() == 0 and png.max() == 255


DUBAI = ClassTable.from_list(
    [
        {"id": 0, "name": "building", "color": "#e6194b"},
        {"id": 1, "name": "land", "color": "#deb887"},
        {"id": 2, "name": "road", "color": "#ffd700"},
        {"id": 3, "name": "vegetation", "color": "#3cb44b"},
        {"id": 4, "name": "water", "color": "#006ee6"},
    ]
)


def test_the_overlay_keeps_the_table_colours() -> None:
    mine = ClassTable.from_list(
        [
            {"id": 0, "name": "building", "color": "#102030"},
            {"id": 1, "name": "b", "color": "#ff00ff"},
            {"id": 2, "name": "c", "color": "#fe01fe"},
        ]
    )
    assert display_colours(mine) == {0: (16, 32, 48), 1: (255, 0, 255), 2: (254, 1, 254)}


def test_truth_is_drawn_beside_the_prediction(tmp_path) -> None:
    image = write_raster(tmp_path / "img.tif", np.full((3, 100, 120), 100, np.uint8))
    pred = np.zeros((100, 120), np.uint8)
    truth = np.full((100, 120), 4, np.uint8)
    truth[:5] = 255  # unlabelled: not painted
    mask = write_raster(tmp_path / "mask.tif", pred, nodata=255)
    out = write_quicklook(
        image, mask, tmp_path / "q.png", classes=DUBAI, truth=truth, caption="mIoU 0.5"
    )
    png = np.asarray(Image.open(out).convert("RGB"))
    assert png.shape[1] == 2 * 120 + 8  # two panels and a gap
    building, water = display_colours(DUBAI)[0], display_colours(DUBAI)[4]
    top = 18 + 6  # the title row above the panels
    left, right = png[top + 50, 60].astype(int), png[top + 50, 128 + 60].astype(int)
    assert np.abs(left - (100 * 0.55 + np.array(building) * 0.45)).max() <= 1
    assert np.abs(right - (100 * 0.55 + np.array(water) * 0.45)).max() <= 1
    assert tuple(png[top + 2, 128 + 60]) == (100, 100, 100)
    out = write_comparison(image, pred, truth, DUBAI, tmp_path / "c.png", caption="x")
    png = np.asarray(Image.open(out).convert("RGB"))
    assert (
        png.shape[1] == 2 * 120 + 8
        and abs(int(png[top + 50, 60][2]) - int(100 * 0.55 + water[2] * 0.45)) <= 1
    )
