"""The app as an HTTP API, driven with gradio_client against a server started in the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rasterio

pytestmark = pytest.mark.slow


def test_segment_returns_cog_on_input_grid_and_polygons(segment_call: Callable[..., Any], scenes: dict[str, Path]) -> None:
    overlay, legend, confidence, map_view, table, downloads, status = segment_call(scenes["a"])
    names = [Path(d["value"] if isinstance(d, dict) else d).name for d in downloads]
    assert names == ["classes.tif", "classes.qml", "polygons.gpkg", "polygons.geojson", "quicklook.png", "confidence.tif"]
    cog = Path(downloads[0]["value"] if isinstance(downloads[0], dict) else downloads[0])
    with rasterio.open(cog) as out, rasterio.open(scenes["a"]) as src:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
    assert "building" in legend and "geoseg-legend" in legend
    assert "<svg" in map_view and "°N" in map_view
    rows = table["data"] if isinstance(table, dict) else table
    assert [r[0] for r in rows] == ["background", "building", "road"]
    assert sum(r[1] for r in rows) == 96 * 80
    assert abs(sum(r[2] for r in rows) - 96 * 80 * 0.25) < 1e-3  # 0.5 m pixels
    assert status.startswith("Done.") and "a.tif" in status
