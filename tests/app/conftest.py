"""Fixtures of the web-app tests: a folder with a tiny checkpoint, the app served on 127.0.0.1,
and a headless Chromium to drive its page."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the web app needs the `app` extra (gradio)")
pytest.importorskip("gradio_client", reason="the app tests drive it with gradio_client")

from geoseg.app import AppConfig, close_app, launch_app
from geoseg.classes import ClassTable
from geoseg.models import ModelConfig, build_model, save_checkpoint
from tests.conftest import REPO, write_raster

TINY = "tiny"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder holding ``tiny.safetensors``: a 3-stage U-Net, 3 bands, 3 classes, 64-px
    tiles."""
    folder = tmp_path_factory.mktemp("models")
    cfg = ModelConfig(
        "unet",
        "resnet18",
        3,
        ClassTable.from_names(["background", "building", "road"]),
        band_names=("red", "green", "blue"),
        band_dtype="uint8",
        gsd=0.5,
        tile_size=64,
        overlap=16,
        model_kwargs={"encoder_depth": 3, "decoder_channels": [16, 8, 8]},
        output_stride=8,
    )
    net = build_model(
        "unet", "resnet18", in_channels=3, classes=3, encoder_depth=3, decoder_channels=[16, 8, 8]
    )
    save_checkpoint(net, cfg, folder / f"{TINY}.safetensors")
    (folder / "notes.txt").write_text("not a model")
    return folder


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small inputs: two GeoTIFFs on different grids, a 1-band GeoTIFF, a PNG, a PDF, a truncated
    TIFF."""
    from affine import Affine
    from PIL import Image

    folder = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(0)
    out = {
        "a": write_raster(folder / "a.tif", rng.integers(1, 255, (3, 96, 80), dtype=np.uint8)),
        "b": write_raster(
            folder / "b.tif",
            rng.integers(1, 255, (3, 72, 120), dtype=np.uint8),
            transform=Affine(1.0, 0, 600000.0, 0, -1.0, 5800000.0),
        ),
        "oneband": write_raster(
            folder / "oneband.tif", rng.integers(1, 255, (1, 64, 64), dtype=np.uint8)
        ),
    }
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(folder / "photo.png")
    out["png"] = folder / "photo.png"
    out["pdf"] = folder / "report.pdf"
    out["pdf"].write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" + b"0" * 2000)
    whole = (folder / "a.tif").read_bytes()
    out["truncated"] = folder / "truncated.tif"
    out["truncated"].write_bytes(whole[: len(whole) // 2])
    return out


def write_huge_claim(path: Path) -> Path:
    """A sparse 3-band GeoTIFF of 200000 x 200000 px with no block written: about 300 kB that
    claim 40 gigapixels."""
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=200_000,
        height=200_000,
        count=3,
        dtype="uint8",
        tiled=True,
        blockxsize=1024,
        blockysize=1024,
        sparse_ok=True,
        compress="deflate",
        crs="EPSG:32631",
        transform=from_origin(500000, 5800000, 0.5, 0.5),
    ):
        pass
    return path


class Served:
    """An app listening on 127.0.0.1: its URL, Blocks and config."""

    def __init__(self, demo: Any, url: str, config: AppConfig) -> None:
        self.demo, self.url, self.config = demo, url, config

    def close(self) -> None:
        close_app(self.demo)

    def client(self) -> Any:
        from gradio_client import Client

        return Client(
            self.url,
            verbose=False,
            download_files=str(Path(self.demo.workspace.root).parent / "client"),
        )


def serve(config: AppConfig) -> Served:
    demo = launch_app(config, block=False, warm=False, quiet=True)
    return Served(demo, f"http://127.0.0.1:{config.port}/", config)


def serve_tiny(models_dir: Path, workdir: Path, **settings: Any) -> Served:
    """The app offering the tiny model only, on a free port, with ``settings`` of
    :class:`AppConfig`."""
    config = AppConfig(
        models_dir=models_dir,
        include_bundled=False,
        port=free_port(),
        workdir=workdir,
        **settings,
    )
    return serve(config)


@pytest.fixture(scope="session")
def app_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app with the tiny model only, 1 MB uploads, two predictions at a time."""
    served = serve_tiny(models_dir, tmp_path_factory.mktemp("app"), max_size_mb=1.0, concurrency=2)
    yield served
    served.close()


@pytest.fixture
def segment_call(app_server: Served) -> Callable[..., Any]:
    """``segment_call(path=None, url="", model="tiny", **settings)`` through gradio_client."""
    from gradio_client import handle_file

    def call(
        path: Path | None = None,
        url: str = "",
        model: str = TINY,
        *,
        client: Any = None,
        tile: int | None = None,
        overlap: float | None = None,
        tta: str = "none",
        precision: str = "fp32",
        bands: str = "",
        scale: str = "",
    ) -> Any:
        c = client or app_server.client()
        return c.predict(
            handle_file(str(path)) if path else None,
            url,
            model,
            tile,
            overlap,
            tta,
            precision,
            bands,
            scale,
            api_name="/segment",
        )

    return call


# -- the browser (Playwright driving Debian's Chromium, headless) ---------------------------------

CHROMIUM = os.environ.get("GEOSEG_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("GEOSEG_TEST_ARTIFACTS", REPO / "test-artifacts"))
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for every browser test; skips when Playwright or Chromium is
    missing."""
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


def open_page(browser: Any, url: str) -> Any:
    """The app's page in a new browser context (a new session), once its button is there."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.locator("#geoseg-run").wait_for(timeout=60_000)
    return page


def upload(page: Any, path: Path) -> None:
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


def image_width(img: Any) -> int:
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
