"""A small static STAC catalog made in code: items whose assets are tiled GeoTIFFs, and the same
bands stacked by hand, to compare predictions with.

- ``visual``: one RGB asset (``visual``, uint8, 10 m), STAC 1.0 ``eo:bands``;
- ``bands``: red and green at 10 m, blue and nir at 20 m, one asset each (``eo:bands``);
- ``scaled``: one 3-band uint16 reflectance asset with ``scale``/``offset`` and ``nodata`` 0 (a
  block of no data), STAC 1.1 ``bands``.

Asset links are relative, so the folder works as it is on disk, over HTTP and in a bucket.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from tests.conftest import write_raster

__all__ = ["ITEMS", "OFFSET", "SCALE", "hand_stacked", "make_catalog"]

ITEMS = ("visual", "bands", "scaled")
SCALE, OFFSET = 0.0001, -0.1
ROWS, COLS = 96, 128
FINE = Affine(10.0, 0, 600_000.0, 0, -10.0, 5_750_000.0)
COARSE = Affine(20.0, 0, 600_000.0, 0, -20.0, 5_750_000.0)
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
TILED = {"tiled": True, "blockxsize": 32, "blockysize": 32}


def _texture(bands: int, rows: int, cols: int, seed: int, high: int = 250) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    base = np.stack([np.sin(x / (6.0 + k) + k) + np.cos(y / 9.0 - k) for k in range(bands)])
    scaled = (base + 2.2 + rng.normal(0, 0.3, (bands, rows, cols))) / 4.4 * high
    return np.clip(scaled, 1, high)


def _item(item_id: str, assets: dict[str, Any], *, version: str = "1.0.0") -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": version,
        "stac_extensions": [],
        "id": item_id,
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[3.0, 51.0], [3.02, 51.0], [3.02, 51.01], [3.0, 51.01], [3.0, 51.0]]],
        },
        "bbox": [3.0, 51.0, 3.02, 51.01],
        "properties": {"datetime": "2024-06-01T10:30:00Z"},
        "links": [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
        ],
        "assets": {
            **assets,
            "thumbnail": {"href": "./thumb.png", "type": "image/png", "roles": ["thumbnail"]},
        },
    }


def make_catalog(root: Path) -> dict[str, Any]:
    """Write the catalog under ``root``: ``catalog.json``, ``ID/ID.json`` and the assets beside
    each item, and ``items.json`` (the same items as one ItemCollection). Returns the arrays the
    assets hold, by item and asset key."""
    arrays: dict[str, Any] = {}
    items = []
    # one RGB visual asset
    folder = root / "visual"
    folder.mkdir(parents=True)
    rgb = _texture(3, ROWS, COLS, 0).astype(np.uint8)
    write_raster(folder / "visual.tif", rgb, transform=FINE, **TILED)
    arrays["visual"] = {"visual": rgb}
    rgb_bands = [{"name": n, "common_name": n} for n in ("red", "green", "blue")]
    items.append(
        _item(
            "visual",
            {
                "visual": {
                    "href": "./visual.tif",
                    "type": COG,
                    "roles": ["visual"],
                    "eo:bands": rgb_bands,
                }
            },
        )
    )
    # one asset per band, at 10 m and 20 m
    folder = root / "bands"
    folder.mkdir()
    arrays["bands"] = {}
    assets = {}
    for k, (key, name, fine) in enumerate(
        [
            ("B04", "red", True),
            ("B03", "green", True),
            ("B02", "blue", False),
            ("B08", "nir", False),
        ]
    ):
        shape = (ROWS, COLS) if fine else (ROWS // 2, COLS // 2)
        data = _texture(1, *shape, seed=10 + k).astype(np.uint8)
        write_raster(folder / f"{key}.tif", data, transform=FINE if fine else COARSE, **TILED)
        arrays["bands"][key] = data
        assets[key] = {
            "href": f"./{key}.tif",
            "type": COG,
            "roles": ["data"],
            "gsd": 10 if fine else 20,
            "eo:bands": [{"name": key, "common_name": name}],
            "raster:bands": [{"data_type": "uint8", "spatial_resolution": 10 if fine else 20}],
        }
    items.append(_item("bands", assets))
    # reflectance with scale, offset and nodata (STAC 1.1 bands)
    folder = root / "scaled"
    folder.mkdir()
    reflectance = _texture(3, ROWS, COLS, 20, high=9000).astype(np.uint16) + 1000
    reflectance[:, 10:30, 20:60] = 0  # no data
    write_raster(folder / "reflectance.tif", reflectance, transform=FINE, nodata=0, **TILED)
    arrays["scaled"] = {"reflectance": reflectance}
    bands = [
        {
            "name": f"b{k}",
            "eo:common_name": name,
            "nodata": 0,
            "data_type": "uint16",
            "raster:scale": SCALE,
            "raster:offset": OFFSET,
        }
        for k, name in enumerate(("red", "green", "blue"))
    ]
    items.append(
        _item(
            "scaled",
            {
                "reflectance": {
                    "href": "./reflectance.tif",
                    "type": COG,
                    "roles": ["data"],
                    "bands": bands,
                }
            },
            version="1.1.0",
        )
    )
    for item in items:
        (root / item["id"] / f"{item['id']}.json").write_text(json.dumps(item), encoding="utf-8")
    catalog = {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": "test-catalog",
        "description": "Tiny items made in the test",
        "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]
        + [
            {"rel": "item", "href": f"./{i['id']}/{i['id']}.json", "type": "application/json"}
            for i in items
        ],
    }
    (root / "catalog.json").write_text(json.dumps(catalog), encoding="utf-8")
    features = []
    for item in items:
        feature = json.loads(json.dumps(item))
        feature["links"] = []
        for asset in feature["assets"].values():
            asset["href"] = f"./{item['id']}/{asset['href'][2:]}"
        features.append(feature)
    collection = {"type": "FeatureCollection", "features": features}
    (root / "items.json").write_text(json.dumps(collection), encoding="utf-8")
    return arrays


def hand_stacked(arrays: dict[str, Any], item: str, folder: Path, names: str = "rgb") -> Path:
    """The bands of ``item`` the model reads, stacked by hand into one GeoTIFF on the 10 m grid:
    20 m bands repeated 2 x 2, scale and offset applied with NaN where the asset has no data."""
    assets = arrays[item]
    if item == "visual":
        data, nodata = assets["visual"], None
    elif item == "bands":
        keys = ("B04", "B03", "B02") if names == "rgb" else ("B04", "B03", "B08")
        layers = [
            assets[k]
            if assets[k].shape[-2:] == (ROWS, COLS)
            else assets[k].repeat(2, 1).repeat(2, 2)
            for k in keys
        ]
        data, nodata = np.concatenate(layers), None
    else:
        raw = assets["reflectance"]
        data = (raw.astype(np.float64) * SCALE + OFFSET).astype(np.float32)
        data[raw == 0] = np.nan
        nodata = float("nan")
    return write_raster(folder / f"{item}-{names}-by-hand.tif", data, transform=FINE, nodata=nodata)
