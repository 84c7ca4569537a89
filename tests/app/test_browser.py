"""The page in a real headless Chromium (Playwright driving the system's browser, never a download).

Skipped with the reason when Playwright or Chromium is missing; ``.ci/run`` installs Chromium.
The finished page is saved as ``test-artifacts/app-finished.png`` (``GEOSEG_TEST_ARTIFACTS``
chooses another folder); ``docs/app.png`` is that screenshot, scaled to 1000 px wide.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rasterio

from tests.app.conftest import Served, free_port, serve
from tests.conftest import REPO

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("GEOSEG_CHROMIUM", "/usr/bin/chromium")
SAMPLE = REPO / "sample_data" / "rotterdam_ps_rgb.tif"
ARTIFACTS = Path(os.environ.get("GEOSEG_TEST_ARTIFACTS", REPO / "test-artifacts"))
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RUN_TIMEOUT_MS = 240_000  # the bundled model on the sample scene, on a busy CPU


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="browser tests need playwright (the dev extra)"
    )
    if not Path(CHROMIUM).is_file():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: install it (apt-get install chromium; .ci/run does) or "
            "set GEOSEG_CHROMIUM"
        )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        yield b
        b.close()


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
    served.demo.close()
    served.demo.workspace.close()


def _page(browser: Any, url: str, tmp_path: Path) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.locator("#geoseg-run").wait_for(timeout=60_000)
    return page


def _upload(page: Any, path: Path) -> None:
    """Choose ``path`` in the upload box and wait until the box shows it. Now and then (on a busy
    machine) the box never shows a file it received; choosing it again brings it up. Once the
    box holds a file it has no file input until it is cleared: then only wait longer."""
    shown = page.locator("#geoseg-upload").get_by_text(path.name).filter(visible=True).first
    chooser = page.locator("#geoseg-upload input[type=file]")
    for attempt in range(3):
        if attempt == 0 or chooser.count():
            chooser.set_input_files(str(path))
        try:
            shown.wait_for(timeout=30_000)
            return
        except Exception:
            if attempt == 2:
                raise


def _image_width(img: Any) -> int:
    """The natural width of a visible image once it has loaded (0 when it failed to)."""
    img.wait_for(state="visible")
    return int(
        img.evaluate(
            """img => img.complete ? img.naturalWidth : new Promise(done => {
                img.addEventListener("load", () => done(img.naturalWidth), {once: true});
                img.addEventListener("error", () => done(0), {once: true});
            })"""
        )
    )


def test_sample_scene_end_to_end(browser: Any, full_app: Served, tmp_path: Path) -> None:
    page = _page(browser, full_app.url, tmp_path)
    _upload(page, SAMPLE)
    page.locator("#geoseg-run").click()
    page.locator("#geoseg-status").get_by_text("Done.").wait_for(timeout=RUN_TIMEOUT_MS)
    assert _image_width(page.locator("#geoseg-overlay img")) > 500
    legend = page.locator("#geoseg-legend")
    assert legend.is_visible()
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
    assert _image_width(page.locator("#geoseg-confidence img")) > 500
    page.screenshot(path=str(ARTIFACTS / "app-confidence.png"))

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
    page = _page(browser, full_app.url, tmp_path)
    _upload(page, pdf)
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
