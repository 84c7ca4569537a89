"""``geoseg predict --stac``: a STAC Item beside the mask that validates offline, refused when it
exists, and an item as the input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoseg.cli import cli
from tests.conftest import write_raster
from tests.stac_validation import validate_file

pytestmark = pytest.mark.slow  # the bundled model


def test_predict_an_item_with_stac_out(tmp_path: Path, textured_rgb) -> None:  # type: ignore[no-untyped-def]
    write_raster(tmp_path / "rgb.tif", textured_rgb(80, 96))
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "rgb-1",
        "geometry": None,
        "properties": {"datetime": "2024-05-01T10:00:00Z"},
        "links": [],
        "assets": {"image": {"href": "./rgb.tif", "type": "image/tiff", "roles": ["visual"]}},
    }
    (tmp_path / "rgb-1.json").write_text(json.dumps(item))
    args = ["predict", str(tmp_path / "rgb-1.json"), str(tmp_path / "m.tif"), "--model", "fast"]
    args += ["--device", "cpu", "--stac", "--confidence", str(tmp_path / "c.tif")]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert f"{tmp_path / 'm.stac.json'}: STAC item" in r.output
    validate_file(tmp_path / "m.stac.json")
    doc = json.loads((tmp_path / "m.stac.json").read_text())
    assert sorted(doc["assets"]) == ["classes", "confidence"]
    assert doc["properties"]["datetime"] == "2024-05-01T10:00:00Z"
    assert doc["properties"]["geoseg:item"] == "rgb-1"
    assert doc["links"][0]["rel"] == "derived_from"
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "already exists" in again.output
    assert "Traceback" not in again.output
