"""The page in a real headless Chromium (Playwright driving the system's browser, never a download).

Skipped with the reason when Playwright or Chromium is missing; ``.ci/run`` installs Chromium.
The finished page is saved as ``test-artifacts/app-finished.png`` (``GEOSEG_TEST_ARTIFACTS``
chooses another folder); ``docs/app.png`` is that screenshot, scaled to 1000 px wide.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rasterio

from tests.app.conftest import ARTIFACTS, Served, free_port, image_width, open_page, serve, upload
from tests.conftest import REPO

pytestmark = pytest.mark.slow

SAMPLE = REPO / "sample_data" / "rotterdam_ps_rgb.tif"
RUN_TIMEOUT_MS = 240_000  # the bundled model on the sample scene, on a busy CPU


@pytest.fixture(scope="module")
def full_app(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app with the bundled model (first in the picker) and the tiny one."""
    from geoseg.app import AppConfig

    config = AppConfig(
        models_dir=models_dir,
        port=free_port(),
        max_size_mb=20,
        workdir=tmp_path_factory.mktemp("browser"),
    )
    served = serve(config)
    yield served
    served.close()


def test_sample_scene_end_to_end(browser: Any, full_app: Served, tmp_path: Path) -> None:
    page = open_page(browser, full_app.url)
    upload(page, SAMPLE)
    page.locator("#geoseg-run").click()
    page.locator("#geoseg-status").get_by_text("Done.").wait_for(timeout=RUN_TIMEOUT_MS)
    assert image_width(page.locator("#geoseg-overlay img")) > 500
    legend = page.locator("#geoseg-legend")
    assert legend.count() == 1 and legend.is_visible()  # one legend
    assert page.locator(".progress-text").count() == 0  # the progress display has gone
    for name in ("building", "land", "road", "vegetation", "water"):
        assert name in legend.inner_text()
    table = page.locator("#geoseg-table").get_by_text("building").filter(visible=True)
    table.first.wait_for()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-finished.png"), full_page=True)

    with page.expect_download() as info:
        page.locator('#geoseg-downloads a[href$="classes.tif"]').first.click()
    cog = tmp_path / "classes.tif"
    info.value.save_as(cog)
    with rasterio.open(cog) as out, rasterio.open(SAMPLE) as src:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        assert out.tags()["CLASS_NAMES"].count("building") == 1

    page.get_by_role("tab", name="Confidence").click()
    assert image_width(page.locator("#geoseg-confidence img")) > 500
    scale = page.locator("#geoseg-confidence-scale")
    assert scale.is_visible() and scale.locator(".geoseg-colorbar").bounding_box()["width"] > 300
    assert " ".join(scale.inner_text().split()) == (
        "Probability of the winning class 0 0.25 0.5 0.75 1 purple: unsure, yellow: sure; "
        "transparent: no data"
    )
    page.screenshot(path=str(ARTIFACTS / "app-confidence.png"), full_page=True)

    page.get_by_role("tab", name="Map").click()
    svg = page.locator("svg#geoseg-map")
    svg.wait_for(state="visible")
    assert "51.87" in svg.inner_html() and "N" in svg.inner_html()
    page.screenshot(path=str(ARTIFACTS / "app-map.png"), full_page=True)
    page.context.close()


def test_bad_file_shows_the_one_line_message(
    browser: Any, full_app: Served, tmp_path: Path
) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + b"0" * 500)
    page = open_page(browser, full_app.url)
    upload(page, pdf)
    page.locator("#geoseg-run").click()
    status = page.locator("#geoseg-status").get_by_text(
        "report.pdf: expected a raster GDAL can open"
    )
    status.wait_for(timeout=60_000)  # in the status line, and in a message box
    assert page.get_by_text("report.pdf: expected a raster GDAL can open").count() >= 2
    assert page.get_by_text("Traceback").count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-bad-file.png"), full_page=True)
    page.context.close()
