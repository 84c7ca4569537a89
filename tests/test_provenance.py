"""Provenance: one value built at the door, recorded in every output, shown by ``geoseg info``;
runs that differ only in time give the same pixels; a resumed run redoes what another request
made."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
from click.testing import CliRunner
from pystac.errors import STACValidationError

from geoseg.cli import cli
from geoseg.distributed import predict_many
from geoseg.inference import PredictOptions, predict_raster
from geoseg.inference.provenance import request_provenance
from geoseg.io.stac_items import write_item
from geoseg.models.checkpoint import LoadedModel, load_checkpoint
from geoseg.models.default import bundled_model
from geoseg.models.identity import model_identity
from geoseg.provenance import Provenance
from tests.conftest import write_raster
from tests.inference.conftest import config_for, conv3_model
from tests.stac_validation import validate_file

OPTS = PredictOptions(device="cpu", precision="fp32", workers=0)


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return LoadedModel(conv3_model(), config_for(tile=64, overlap=16))


@pytest.fixture
def scene(tmp_path: Path, textured_rgb) -> Path:  # type: ignore[no-untyped-def]
    data = textured_rgb(90, 110)
    data[:, :, :40] = 0  # no data on the left
    return write_raster(tmp_path / "scene.tif", data, nodata=0)


def test_tags_round_trip_and_what_makes_a_request() -> None:
    prov = Provenance(
        "quality", "ab" * 32, {"tile_size": 512, "bands": (3, 2, 1)}, ("s3://b/x.tif",)
    )
    back = Provenance.from_tags(prov.to_tags())
    assert back == prov and back.options["bands"] == [3, 2, 1]
    assert (
        prov.to_tags()["GEOSEG_INPUT"] == "s3://b/x.tif"
        and "GEOSEG_STAC_ITEM" not in prov.to_tags()
    )
    later = prov.replace(created="2030-01-01T00:00:00Z", version="9.9.9")
    assert prov.same_request(later)
    assert not prov.same_request(prov.replace(options={"tile_size": 256, "bands": [3, 2, 1]}))
    assert not prov.same_request(prov.replace(item="S2B_1")) and not prov.same_request(None)
    assert Provenance.from_tags({"GEOSEG_MODEL": "unet-vgg11"}) is None  # an older geoseg's


def test_a_bundled_model_has_one_identity_by_name_path_or_module() -> None:
    by_name = model_identity("fast")
    path = bundled_model("fast")
    assert path is not None
    assert by_name.label == "fast" and len(by_name.digest or "") == 64
    assert model_identity(path) == by_name
    assert model_identity(load_checkpoint(path)) == by_name
    assert model_identity("quality").digest != by_name.digest


def test_outputs_record_the_request(model: LoadedModel, scene: Path, tmp_path: Path) -> None:
    res = predict_raster(
        scene, tmp_path / "m.tif", model, OPTS, confidence=tmp_path / "c.tif", tile_size=32
    )
    assert res.provenance is not None
    for out in ("m.tif", "c.tif"):
        with rasterio.open(tmp_path / out) as ds:
            recorded = Provenance.from_tags(ds.tags())
        assert recorded == res.provenance
    assert recorded.inputs == (str(scene),) and recorded.model == "module"
    assert recorded.options == {
        "tile_size": 32,
        "overlap": 16,
        "blend": "gaussian",
        "precision": "fp32",
        "tta": "none",
        "bands": None,
        "scale": None,
        "resample_to_model": False,
    }


def test_two_runs_at_different_times_give_the_same_pixels(
    model: LoadedModel, scene: Path, tmp_path: Path
) -> None:
    first = request_provenance(scene, model, OPTS, created="2026-01-01T00:00:00Z")
    second = first.replace(created="2026-06-30T12:34:56Z")
    predict_raster(scene, tmp_path / "a.tif", model, OPTS, provenance=first)
    predict_raster(scene, tmp_path / "b.tif", model, OPTS, provenance=second)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert a.read().tobytes() == b.read().tobytes()
        assert a.read_masks().tobytes() == b.read_masks().tobytes()
        ta, tb = a.tags(), b.tags()
    assert {k for k in ta if ta[k] != tb.get(k)} == {"GEOSEG_CREATED"}


def test_a_rerun_skips_what_this_request_made_and_redoes_the_rest(
    model: LoadedModel, scene: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = predict_many([scene], out, model, OPTS)
    assert (first.predicted, first.skipped) == (1, 0)
    mask = out / "scene_classes.tif"
    made = mask.stat().st_mtime_ns
    again = predict_many([scene], out, model, OPTS)
    assert (again.predicted, again.skipped) == (0, 1) and mask.stat().st_mtime_ns == made
    changed = predict_many([scene], out, model, OPTS, tile_size=32)  # changes pixels
    assert (changed.predicted, changed.skipped) == (1, 0) and mask.stat().st_mtime_ns != made
    with rasterio.open(mask) as ds:
        assert json.loads(ds.tags()["GEOSEG_OPTIONS"])["tile_size"] == 32
    same = predict_many([scene], out, model, OPTS, tile_size=32, batch_size=7)  # changes none
    assert (same.predicted, same.skipped) == (0, 1)
    # as an older geoseg wrote it: no provenance
    with rasterio.open(mask, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(GEOSEG_CREATED="")
    assert predict_many([scene], out, model, OPTS, tile_size=32).predicted == 1


def test_info_shows_how_an_output_was_made(model: LoadedModel, scene: Path, tmp_path: Path) -> None:
    predict_raster(scene, tmp_path / "m.tif", model, OPTS)
    r = CliRunner().invoke(cli, ["info", str(tmp_path / "m.tif")])
    assert r.exit_code == 0, r.output
    assert "  made by      geoseg " in r.output and f"input {scene}" in r.output
    assert 'options bands=null blend="gaussian" overlap=16' in r.output
    r = CliRunner().invoke(cli, ["info", "--json", str(tmp_path / "m.tif")])
    assert json.loads(r.output)["provenance"]["inputs"] == [str(scene)]


def test_the_stac_item_of_a_prediction(model: LoadedModel, scene: Path, tmp_path: Path) -> None:
    res = predict_raster(scene, tmp_path / "m.tif", model, OPTS, confidence=tmp_path / "c.tif")
    item = write_item({"classes": str(tmp_path / "m.tif"), "confidence": str(tmp_path / "c.tif")})
    assert item == str(tmp_path / "m.stac.json")
    validate_file(item)
    doc = json.loads(Path(item).read_text())
    props = doc["properties"]
    assert props["proj:code"] == "EPSG:32631" and props["proj:shape"] == [90, 110]
    assert props["proj:transform"] == [0.5, 0.0, 500000.0, 0.0, -0.5, 5700000.0]
    assert props["geoseg:model_digest"] == res.provenance.model_digest  # type: ignore[union-attr]
    assert props["processing:software"] == {"geoseg": res.provenance.version}  # type: ignore[union-attr]
    assert doc["assets"]["confidence"]["href"] == "./c.tif"
    classes = doc["assets"]["classes"]["classification:classes"]
    assert [(c["value"], c["name"], c["color_hint"]) for c in classes] == [
        (c.id, c.name, c.hex()[1:].upper()) for c in model.config.classes
    ]
    # the footprint is where the data is: the 40 columns of no data on the left are left out
    xs, ys = [500020.0, 500055.0, 500055.0, 500020.0], [5.7e6, 5.7e6, 5699955.0, 5699955.0]
    lon, lat = rasterio.warp.transform("EPSG:32631", "EPSG:4326", xs, ys)
    assert doc["bbox"] == pytest.approx([min(lon), min(lat), max(lon), max(lat)], abs=1e-7)
    assert doc["geometry"]["type"] == "Polygon" and len(doc["geometry"]["coordinates"][0]) == 5
    assert np.isfinite(doc["bbox"]).all()
    # the validator can fail: a colour with its '#' is not a STAC colour hint
    classes[0]["color_hint"] = "#FFFFFF"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(STACValidationError, match=r"against schema at \S+classification/v1.1.0"):
        validate_file(tmp_path / "bad.json")


@pytest.mark.parametrize("ext", [".gpkg", ".fgb", ".parquet"])
def test_polygons_record_the_prediction_and_the_vectorizing(
    model: LoadedModel, scene: Path, tmp_path: Path, ext: str
) -> None:
    import pyarrow.parquet as pq
    import pyogrio

    from geoseg.vectorize import vectorize_raster

    res = predict_raster(scene, tmp_path / "m.tif", model, OPTS)
    vectorize_raster(tmp_path / "m.tif", tmp_path / f"p{ext}", min_area=2.0, workers=0)
    if ext == ".parquet":
        meta = {
            k.decode(): v.decode()
            for k, v in pq.read_schema(tmp_path / f"p{ext}").metadata.items()
            if k.startswith(b"GEOSEG_")
        }
    else:
        meta = pyogrio.read_info(tmp_path / f"p{ext}", layer="p")["layer_metadata"]
    made = Provenance.from_tags(meta)
    assert made is not None and res.provenance is not None
    assert made.model_digest == res.provenance.model_digest and made.inputs == (str(scene),)
    assert made.options["vectorize"]["min_area"] == 2.0
    assert {k: v for k, v in made.options.items() if k != "vectorize"} == res.provenance.options
