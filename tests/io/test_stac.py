"""STAC input: assets picked by band name, stacked onto the finest grid, scaled, nodata applied;
predictions equal those on the same bands stacked by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from geoseg.errors import RasterFormatError, StacError
from geoseg.inference import predict_classes
from geoseg.io.reader import RasterReader
from geoseg.io.stac import asset_bands, is_stac, open_stac, pick_bands, stac_inputs, stac_item_id
from geoseg.models.checkpoint import LoadedModel
from tests.conftest import write_raster
from tests.inference.conftest import config_for, conv3_model
from tests.stac_catalog import ITEMS, hand_stacked, make_catalog

RGB = ("red", "green", "blue")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("catalog")
    return root, make_catalog(root)


@pytest.fixture(scope="module")
def rgb_model() -> LoadedModel:
    return LoadedModel(conv3_model(), config_for(tile=64, overlap=16).replace(band_names=RGB))


def _read(path: str) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_what_is_stac() -> None:
    assert is_stac("a/item.json") and is_stac("https://x.org/cat/items.json#S2B_1")
    assert is_stac("https://earth-search.example/v1/collections/s2/items/S2B_1")
    assert not is_stac("a/scene.tif") and not is_stac("https://x.org/scene.tif")


@pytest.mark.parametrize("item", ITEMS)
def test_the_vrt_holds_the_bands_stacked_by_hand(
    catalog: tuple[Path, dict[str, Any]], item: str, tmp_path: Path
) -> None:
    root, arrays = catalog
    raster = open_stac(str(root / item / f"{item}.json"), RGB)
    assert raster.item_id == item and raster.path.startswith("/vsimem/")
    got, want = _read(raster.path), _read(str(hand_stacked(arrays, item, tmp_path)))
    assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)
    with rasterio.open(raster.path) as ds:
        assert ds.descriptions == RGB and ds.transform.a == 10.0
        assert ds.crs.to_epsg() == 32631


def test_assets_by_name_and_the_finest_grid(catalog: tuple[Path, dict[str, Any]]) -> None:
    root, _ = catalog
    doc = json.loads((root / "bands" / "bands.json").read_text())
    base = str(root / "bands" / "bands.json")
    picked = pick_bands(doc, base, ["red", "green", "nir"])
    assert [b.asset for b in picked] == ["B04", "B03", "B08"]
    assert picked[2].href == str(root / "bands" / "B08.tif")
    visual = json.loads((root / "visual" / "visual.json").read_text())
    assert [b.asset for b in asset_bands(visual, str(root / "visual" / "visual.json"))] == [
        "visual"
    ] * 3  # the thumbnail is no data
    scaled = open_stac(str(root / "scaled" / "scaled.json"), RGB).bands
    assert {(b.scale, b.offset, b.nodata, b.data_type) for b in scaled} == {
        (0.0001, -0.1, 0.0, "uint16")
    }


def test_the_models_data_type_picks_between_a_visual_asset_and_band_assets() -> None:
    def asset(bands: list[str], dtype: str) -> dict[str, Any]:
        return {
            "href": "x.tif",
            "type": "image/tiff",
            "eo:bands": [{"common_name": b} for b in bands],
            "raster:bands": [{"data_type": dtype} for _ in bands],
        }

    item = {
        "id": "s2",
        "assets": {
            "visual": {**asset(list(RGB), "uint8"), "roles": ["visual"]},
            **{name: asset([name], "uint16") for name in RGB},
        },
    }
    assert {b.asset for b in pick_bands(item, "/c/i.json", RGB, data_type="uint8")} == {"visual"}
    assert [b.asset for b in pick_bands(item, "/c/i.json", RGB, data_type="uint16")] == list(RGB)
    assert {b.asset for b in pick_bands(item, "/c/i.json", RGB)} == {"visual"}  # fewest assets


def test_a_missing_band_is_refused_in_one_line(catalog: tuple[Path, dict[str, Any]]) -> None:
    root, _ = catalog
    with pytest.raises(StacError, match=r"^bands: no asset holds the band 'swir16'") as err:
        open_stac(str(root / "bands" / "bands.json"), ["red", "swir16", "blue"])
    assert "\n" not in str(err.value) and "B08 (nir/b08)" in str(err.value)
    with pytest.raises(StacError, match="no band names and the item has no visual asset"):
        open_stac(str(root / "bands" / "bands.json"), None)


def test_collections_and_catalogs_are_many_inputs(catalog: tuple[Path, dict[str, Any]]) -> None:
    root, _ = catalog
    assert stac_inputs(str(root / "catalog.json")) == [str(root / i / f"{i}.json") for i in ITEMS]
    named = stac_inputs(str(root / "items.json"))
    assert named == [f"{root / 'items.json'}#{i}" for i in ITEMS]
    assert stac_item_id(named[1]) == "bands"
    with pytest.raises(StacError, match="an ItemCollection of 3 item"):
        open_stac(str(root / "items.json"), RGB)
    with pytest.raises(StacError, match="a STAC Catalog, that is many items"):
        open_stac(str(root / "catalog.json"), RGB)
    with pytest.raises(StacError, match="no item 'nope' in this ItemCollection"):
        stac_item_id(f"{root / 'items.json'}#nope")


def test_json_that_is_not_stac_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(StacError, match="JSON without a 'type'"):
        open_stac(str(tmp_path / "x.json"), RGB)
    with pytest.raises(StacError, match="no such file"):
        open_stac(str(tmp_path / "missing.json"), RGB)


@pytest.mark.parametrize("item", ITEMS)
def test_predictions_equal_those_on_the_bands_stacked_by_hand(
    catalog: tuple[Path, dict[str, Any]], item: str, rgb_model: LoadedModel, tmp_path: Path
) -> None:
    root, arrays = catalog
    scale = (0.0, 1.0) if item == "scaled" else None  # reflectance onto the model's 0..255
    got = predict_classes(str(root / item / f"{item}.json"), rgb_model, device="cpu", scale=scale)
    by_hand = str(hand_stacked(arrays, item, tmp_path))
    want = predict_classes(by_hand, rgb_model, device="cpu", scale=scale)
    assert np.array_equal(got.data, want.data) and got.transform == want.transform
    if item == "scaled":
        assert (got.data[0, 10:30, 20:60] == 255).all()  # no data stays no data


def test_band_names_pick_assets_and_raster_bands_by_description(
    catalog: tuple[Path, dict[str, Any]], rgb_model: LoadedModel, tmp_path: Path
) -> None:
    root, arrays = catalog
    got = predict_classes(
        str(root / "bands" / "bands.json"), rgb_model, bands=("red", "green", "nir"), device="cpu"
    )
    want = predict_classes(
        str(hand_stacked(arrays, "bands", tmp_path, "rgn")), rgb_model, device="cpu"
    )
    assert np.array_equal(got.data, want.data)
    data = np.arange(4 * 6 * 5, dtype=np.uint8).reshape(4, 6, 5)
    path = write_raster(tmp_path / "described.tif", data)
    with rasterio.open(path, "r+") as ds:
        for k, name in enumerate(["Blue", "Green", "Red", "NIR"], start=1):
            ds.set_band_description(k, name)
    with RasterReader(path, bands=("red", "nir", "blue")) as reader:
        assert reader.bands == (3, 4, 1)
    with pytest.raises(RasterFormatError, match=r"no band is named 'swir'.*1=blue, 2=green"):
        RasterReader(path, bands=("swir",))
