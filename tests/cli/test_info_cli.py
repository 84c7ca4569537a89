from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from geoseg.cli import cli
from tests.conftest import REPO

SAMPLE = str(REPO / "sample_data" / "rotterdam_ps_rgb.tif")


def test_info_json_on_the_sample_scene() -> None:
    result = CliRunner().invoke(cli, ["info", "--json", SAMPLE])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["crs"]["epsg"] == 32631 and info["nodata"] == 0 and info["cog"] is True
    assert round(info["resolution"][0], 3) == 0.5


def test_info_text_for_several_paths(make_raster) -> None:
    other = make_raster(np.ones((1, 4, 4), np.uint16), crs="EPSG:4326")
    result = CliRunner().invoke(cli, ["info", SAMPLE, str(other)])
    assert result.exit_code == 0, result.output
    assert "EPSG:32631 (WGS 84 / UTM zone 31N)" in result.output and "EPSG:4326" in result.output
    assert "COG          yes" in result.output
    assert "\n\n" in result.output  # a blank line between descriptions


def test_a_bad_path_after_good_ones_keeps_their_descriptions(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["info", SAMPLE, str(tmp_path / "nope.tif")])
    assert result.exit_code == 1 and "EPSG:32631" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error:")


def test_missing_path_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["info", str(tmp_path / "nope.tif")])
    assert result.exit_code == 1
    assert "Error:" in result.output and "no such file" in result.output
    assert "Traceback" not in result.output


def test_non_raster_and_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    for arg, match in (
        (tmp_path / "notes.txt", "does not recognise as a raster"),
        (tmp_path, "is a directory"),
    ):
        result = CliRunner().invoke(cli, ["info", str(arg)])
        assert result.exit_code == 1 and match in result.output


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-v", "info", str(tmp_path / "nope.tif")])
    assert result.exit_code == 1 and "Traceback" in result.output


def test_gcp_only_raster_is_described_with_a_warning(shared_data: Path) -> None:
    result = CliRunner().invoke(
        cli, ["info", str(shared_data / "georust-gdal-fixtures" / "gcp.tif")]
    )
    assert result.exit_code == 0
    assert "ground control points only" in result.output
