"""The app as an HTTP API, driven with gradio_client against a server started in the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rasterio

pytestmark = pytest.mark.slow


def test_segment_returns_cog_on_input_grid_and_polygons(
    segment_call: Callable[..., Any], scenes: dict[str, Path]
) -> None:
    overlay, legend, confidence, map_view, table, downloads, status = segment_call(scenes["a"])
    names = [Path(d["value"] if isinstance(d, dict) else d).name for d in downloads]
    assert names == [
        "classes.tif",
        "classes.qml",
        "polygons.gpkg",
        "polygons.geojson",
        "quicklook.png",
        "confidence.tif",
    ]
    cog = Path(downloads[0]["value"] if isinstance(downloads[0], dict) else downloads[0])
    with rasterio.open(cog) as out, rasterio.open(scenes["a"]) as src:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
    assert "building" in legend and "geoseg-legend" in legend
    assert "<svg" in map_view and "°N" in map_view
    rows = table["data"] if isinstance(table, dict) else table
    assert [r[0] for r in rows] == ["background", "building", "road"]
    assert sum(r[1] for r in rows) == 96 * 80
    assert abs(sum(r[2] for r in rows) - 96 * 80 * 0.25) <= 0.05 * len(
        rows
    )  # 0.5 m pixels, m² rounded to 0.1
    assert status.startswith("Done.") and "a.tif" in status
    assert Path(overlay).read_bytes()[:4] == Path(confidence).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("scene", "expected"),
    [
        (
            "pdf",
            "report.pdf: expected a raster GDAL can open (GeoTIFF, COG, JP2...), found a file "
            "GDAL does not recognise as a raster",
        ),
        ("truncated", "truncated.tif: could not read pixels"),
        (
            "oneband",
            "oneband.tif: the model expects 3 band(s) (red, green, blue) but 1 were selected from "
            "a raster of 1",
        ),
    ],
)
def test_bad_input_gets_the_cli_one_line_message(
    app_server: Any,
    segment_call: Callable[..., Any],
    scenes: dict[str, Path],
    scene: str,
    expected: str,
) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="expect") as info:
        segment_call(scenes[scene])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message.strip() and "Traceback" not in message
    assert "geoseg-app-" not in message  # server paths are not shown
    assert not list(
        Path(app_server.demo.workspace.root).glob("*/input.*")
    )  # a refused request keeps nothing


def test_png_without_crs_runs_and_says_it_cannot_be_mapped(
    segment_call: Callable[..., Any], scenes: dict[str, Path]
) -> None:
    _, _, _, map_view, table, downloads, status = segment_call(scenes["png"])
    assert "cannot be placed on a map" in map_view
    rows = table["data"] if isinstance(table, dict) else table
    assert sum(r[1] for r in rows) == 50 * 70 and all(r[2] in (None, "") for r in rows)
    assert status.startswith("Done.") and "no GeoJSON: the image has no CRS" in status
    assert "polygons.geojson" not in [Path(d).name for d in downloads]


def test_no_input_and_bad_settings_are_refused(
    segment_call: Callable[..., Any], scenes: dict[str, Path]
) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="got neither"):
        segment_call(None)
    with pytest.raises(
        AppError, match="not a multiple of the model's output stride 8; use 56 or 64"
    ):
        segment_call(scenes["a"], tile=60)
    with pytest.raises(
        AppError, match="expected an http:// or https:// URL of a COG, got 'file:///etc/passwd'"
    ):
        segment_call(None, url="file:///etc/passwd")


def test_loopback_url_is_refused_by_default(
    app_server: Any, segment_call: Callable[..., Any], scenes: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    from gradio_client.exceptions import AppError

    from tests.http_server import serve_directory

    shutil.copy(scenes["b"], tmp_path / "b.tif")
    requests = tmp_path / "requests.txt"
    with serve_directory(tmp_path, requests_log=requests) as url:
        with pytest.raises(AppError, match="is a loopback address") as info:
            segment_call(None, url=f"{url}/b.tif")
    assert str(info.value).startswith(f"{url}/b.tif: 127.0.0.1 is a loopback address, and this ")
    assert "public internet only; download the image and upload it instead" in str(info.value)
    assert not requests.exists()  # the server was never asked for anything


def test_cog_url_is_read_over_http_with_the_opt_in(
    models_dir: Path, scenes: dict[str, Path], tmp_path: Path
) -> None:
    """An operator's ``allow_private_urls`` reads an internal server; GDAL asks it for the file
    only, never for side files next to it."""
    import shutil

    from tests.app.conftest import serve_tiny
    from tests.http_server import serve_directory

    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(scenes["b"], root / "b.tif")
    requests = tmp_path / "requests.txt"
    served = serve_tiny(models_dir, tmp_path, allow_private_urls=True)
    try:
        with serve_directory(root, requests_log=requests) as url:
            *_, downloads, status = served.client().predict(
                None, f"{url}/b.tif", "tiny", None, None, "none", "fp32", "", api_name="/segment"
            )
    finally:
        served.close()
    assert status.startswith("Done.") and "b.tif" in status
    with rasterio.open(Path(downloads[0])) as out:
        assert out.shape == (72, 120)
    asked = {line.split()[1] for line in requests.read_text().splitlines()}
    assert asked == {"/b.tif"}
