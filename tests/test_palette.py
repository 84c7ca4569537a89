"""One palette: a class wears the same colour in every output and door, taken from the model's
class table."""

from __future__ import annotations

import re
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.windows import Window

from geoseg.app.views import class_areas, legend_html
from geoseg.classes import ClassTable
from geoseg.datasets.dubai import DUBAI_CLASSES
from geoseg.io.quicklook import write_quicklook
from geoseg.io.writer import COGWriter
from geoseg.models.config import read_config
from geoseg.models.default import bundled_model
from geoseg.vectorize import vectorize_raster
from tests.conftest import write_raster

RGB = tuple[int, int, int]


def _mask(tmp_path: Path, classes: ClassTable) -> Path:
    """A mask COG holding every class of ``classes`` (one band of columns each) and nodata."""
    ids = np.repeat(np.repeat(np.array([c.id for c in classes], np.uint8), 8)[None], 40, axis=0)
    ids[:4, :4] = 255
    dst = tmp_path / "mask.tif"
    with COGWriter(
        dst,
        height=ids.shape[0],
        width=ids.shape[1],
        count=1,
        dtype="uint8",
        transform=Affine(0.5, 0, 500000, 0, -0.5, 5700000),
        crs=CRS.from_epsg(32631),
        nodata=255,
        classes=classes,
        resampling="mode",
    ) as out:
        out.write(ids[None], Window(0, 0, ids.shape[1], ids.shape[0]))
    return dst


def _hex(colour: str) -> RGB:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _qml_categories(qml: str) -> dict[int, RGB]:
    """Class id -> fill colour of a categorized vector style."""
    root = ET.fromstring(qml.split("\n", 1)[1])
    symbols = {
        s.get("name"): s.find("layer/Option/Option[@name='color']").get("value")  # type: ignore[union-attr]
        for s in root.iter("symbol")
    }
    out = {}
    for cat in root.iter("category"):
        r, g, b, _ = (int(v) for v in symbols[cat.get("symbol")].split(","))
        out[int(cat.get("value", "-1"))] = (r, g, b)
    return out


def _colours_everywhere(tmp_path: Path, classes: ClassTable) -> dict[str, dict[int, RGB]]:
    mask = _mask(tmp_path, classes)
    found: dict[str, dict[int, RGB]] = {}
    with rasterio.open(mask) as ds:
        table = ds.colormap(1)
        found["colour table"] = {i: tuple(c[:3]) for i, c in table.items()}  # type: ignore[misc]
        found["colour table size"] = {len(table): (0, 0, 0)}
    qml = ET.parse(mask.with_suffix(".qml")).getroot()
    found[".qml"] = {
        int(e.get("value", "-1")): _hex(e.get("color", "")) for e in qml.iter("paletteEntry")
    }
    vectorize_raster(mask, tmp_path / "polygons.gpkg", layer="polygons", exclude=())
    with sqlite3.connect(tmp_path / "polygons.gpkg") as db:
        (style,) = db.execute("SELECT styleQML FROM layer_styles").fetchone()
    found["GeoPackage style"] = _qml_categories(style)
    vectorize_raster(mask, tmp_path / "polygons.fgb", exclude=())
    found["FlatGeobuf style"] = _qml_categories((tmp_path / "polygons.qml").read_text())
    image = write_raster(tmp_path / "image.tif", np.full((3, 40, 8 * len(classes)), 90, np.uint8))
    png = np.asarray(Image.open(write_quicklook(image, mask, tmp_path / "q.png")).convert("RGB"))
    legend = {tuple(int(v) for v in p) for p in png[40:].reshape(-1, 3)}
    found["quicklook legend"] = {c.id: c.color for c in classes if tuple(c.color) in legend}
    items = re.findall(
        r"background:rgb\((\d+), (\d+), (\d+)\);\"></span>([^<]+) <small>",
        legend_html(class_areas(mask, classes)),
    )
    by_name = {c.name: c.id for c in classes}
    found["app legend"] = {by_name[n]: (int(r), int(g), int(b)) for r, g, b, n in items}
    return found


def test_bundled_models_carry_the_dubai_class_table() -> None:
    for name in ("quality", "fast"):
        assert read_config(bundled_model(name)).classes == DUBAI_CLASSES
    assert [c.hex() for c in DUBAI_CLASSES] == [
        "#e6194b",  # building: red
        "#deb887",  # land: tan
        "#ffd700",  # road: yellow
        "#3cb44b",  # vegetation: green
        "#006ee6",  # water: blue
    ]


@pytest.mark.parametrize(
    "classes",
    [
        read_config(bundled_model("quality")).classes,
        # a user's own checkpoint keeps its own colours, even close ones
        ClassTable.from_list(
            [
                {"id": 0, "name": "background", "color": "#102030"},
                {"id": 1, "name": "field", "color": "#ff00ff"},
                {"id": 2, "name": "orchard", "color": "#fe01fe"},
            ]
        ),
    ],
    ids=["bundled", "own"],
)
def test_every_output_draws_a_class_in_the_model_colour(
    tmp_path: Path, classes: ClassTable
) -> None:
    expected = {c.id: tuple(c.color) for c in classes}
    found = _colours_everywhere(tmp_path, classes)
    assert found.pop("colour table size") == {len(classes): (0, 0, 0)}  # one entry per class
    for where, colours in found.items():
        assert colours == expected, where
