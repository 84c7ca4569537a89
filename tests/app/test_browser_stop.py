"""Runs that must stop, in a real headless Chromium: a huge claim refused before any tile, the
Cancel button, a closed tab, and SIGTERM to ``geoseg app``.

The long run is the tiny model on a 4000 x 4000 scene (6889 tiles of 64 px): minutes of work
that each test stops after the first tile. Timeouts are generous (a busy 2-core machine) but
bounded, and every wait is for a state, never a fixed sleep. Screenshots go to the artifacts
folder (``GEOSEG_TEST_ARTIFACTS``) with the measured stop latencies in ``app-stop-times.txt``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.app.conftest import (
    ARTIFACTS,
    Served,
    free_port,
    open_page,
    serve_tiny,
    upload,
    write_huge_claim,
)
from tests.conftest import REPO, write_raster

pytestmark = pytest.mark.slow

STARTED_MS = 120_000  # from Segment to the first tile, the model loading on a busy machine
STOP_LIMIT_S = 2.0  # a cancelled run stops within this, counted on the server


def settled(status: Any, timeout: float = 10.0) -> str:
    """The status line's text once the run's progress timer ("0.0s") has left it: the message
    comes first, the timer goes a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        text = " ".join(status.inner_text().split())
        if not re.match(r"\d+(\.\d+)?s\b", text) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


@pytest.fixture(scope="module")
def long_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4000 x 4000 px of smooth RGB (about 3 MB as deflate): 6889 tiny-model tiles."""
    rows, cols = np.mgrid[0:4000, 0:4000]
    band = ((np.sin(cols / 37.0) + np.cos(rows / 23.0)) * 60 + 128).astype(np.uint8)
    path = tmp_path_factory.mktemp("long") / "long.tif"
    data = np.stack([band, 255 - band, band // 2])
    return write_raster(
        path,
        data,
        compress="deflate",
        predictor=2,
        interleave="band",
        tiled=True,
        blockxsize=256,
        blockysize=256,
    )


@pytest.fixture(scope="module")
def tiny_app(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The tiny model only, one run at a time: a second user waits for the first."""
    served = serve_tiny(models_dir, tmp_path_factory.mktemp("stop"), max_size_mb=20, concurrency=1)
    yield served
    served.close()


def _note(text: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / "app-stop-times.txt").open("a") as f:
        f.write(text + "\n")


def _cancel_goes_grey(page: Any) -> None:
    """Wait until the Cancel button is disabled again: nothing runs for this page."""
    from playwright.sync_api import expect

    expect(page.locator("button#geoseg-cancel")).to_be_disabled(timeout=30_000)


def _start_long_run(browser: Any, url: str, scene: Path) -> Any:
    """A page whose run has reached its first tiles."""
    page = open_page(browser, url)
    upload(page, scene)
    page.locator("#geoseg-run").click()
    page.locator("#geoseg-status").get_by_text("predicting: tile").wait_for(timeout=STARTED_MS)
    return page


def test_huge_claim_is_refused_before_any_tile(
    browser: Any, tiny_app: Served, tmp_path: Path
) -> None:
    page = open_page(browser, tiny_app.url)
    upload(page, write_huge_claim(tmp_path / "huge.tif"))
    page.locator("#geoseg-run").click()
    status = page.locator("#geoseg-status")
    status.get_by_text("over this server's limit of 100 megapixels").wait_for(timeout=60_000)
    assert settled(status) == (
        "Error: huge.tif: 200000 x 200000 px (40,000 megapixels) is over this server's limit of "
        "100 megapixels; crop it to the area you need or reduce its resolution, and upload that"
    )
    job = tiny_app.demo.handlers.jobs.finished[-1]
    assert (job.outcome, job.step) == ("refused", "")  # no step reported: no model, no tile
    _cancel_goes_grey(page)
    page.screenshot(path=str(ARTIFACTS / "app-refused.png"), full_page=True)
    page.context.close()


def test_cancel_stops_the_run_and_the_next_user_runs(
    browser: Any, tiny_app: Served, long_scene: Path, scenes: dict[str, Path]
) -> None:
    jobs = tiny_app.demo.handlers.jobs
    second = open_page(browser, tiny_app.url)  # the next user, ready before the first starts
    upload(second, scenes["a"])
    first = _start_long_run(browser, tiny_app.url, long_scene)
    # one progress display: on the status line, nowhere else
    assert first.locator(".progress-text").count() == 1
    assert first.locator("#geoseg-status .progress-text").count() == 1
    second.locator("#geoseg-run").click()
    second.locator("#geoseg-status").get_by_text("queue").wait_for(timeout=60_000)
    runs = jobs.running()  # the first user's run; the second waits in the queue
    assert len(runs) == 1, [(j.session, j.step) for j in runs]
    running = runs[0]
    first.screenshot(path=str(ARTIFACTS / "app-running.png"), full_page=True)

    clicked = time.perf_counter()
    first.locator("#geoseg-cancel").click()
    first.locator("#geoseg-status").get_by_text("Cancelled").wait_for(timeout=30_000)
    shown = time.perf_counter() - clicked
    assert running.stopped.is_set() and running.outcome == "cancelled"
    latency = jobs.stop_latencies[-1]
    _note(
        f"cancel: run stopped {latency:.3f} s after the request; page said so {shown:.3f} s "
        f"after the click (stopped at {running.step!r})"
    )
    assert latency < STOP_LIMIT_S
    assert settled(first.locator("#geoseg-status")) == (
        "Cancelled: the run stopped; nothing was kept."
    )
    _cancel_goes_grey(first)
    first.screenshot(path=str(ARTIFACTS / "app-cancelled.png"), full_page=True)

    second.locator("#geoseg-status").get_by_text("Done.").wait_for(timeout=120_000)
    assert "a.tif: 80 x 96 px" in second.locator("#geoseg-status").inner_text()
    _cancel_goes_grey(second)
    second.screenshot(path=str(ARTIFACTS / "app-next-user.png"), full_page=True)
    assert not list(Path(tiny_app.demo.workspace.root).glob("*/input.tif"))
    first.context.close()
    second.context.close()


def test_closing_the_tab_stops_its_run(browser: Any, tiny_app: Served, long_scene: Path) -> None:
    page = _start_long_run(browser, tiny_app.url, long_scene)
    jobs = tiny_app.demo.handlers.jobs.running()
    assert len(jobs) == 1, [(j.session, j.step) for j in jobs]
    running = jobs[0]
    page.context.close()
    assert running.stopped.wait(30), f"still running at {running.step!r} ({running.why!r})"
    assert (running.outcome, running.why) == ("cancelled", "the page was closed")
    _note(
        f"closed tab: run stopped {tiny_app.demo.handlers.jobs.stop_latencies[-1]:.3f} s after "
        "the server heard of it"
    )


def _lines(stream: Any, into: list[str], seen: threading.Event, marker: str) -> None:
    for line in stream:
        into.append(line)
        if marker in line:
            seen.set()


def test_sigterm_stops_runs_and_removes_every_folder(
    browser: Any, models_dir: Path, long_scene: Path, tmp_path: Path
) -> None:
    temp = tmp_path / "tmp"  # the app's system temp folder: its request folders and uploads
    temp.mkdir()
    port = free_port()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(REPO)}
    env.pop("GRADIO_TEMP_DIR", None)
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "geoseg",
            "app",
            "--models",
            str(models_dir),
            "--no-bundled",
            "--port",
            str(port),
            "--max-size-mb",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out: list[str] = []
    err: list[str] = []
    listening = threading.Event()
    readers = [
        threading.Thread(target=_lines, args=(app.stdout, out, listening, "Running on")),
        threading.Thread(target=_lines, args=(app.stderr, err, threading.Event(), "")),
    ]
    for r in readers:
        r.start()
    try:
        assert listening.wait(120), "".join(out + err)
        page = _start_long_run(browser, f"http://127.0.0.1:{port}/", long_scene)
        assert list(temp.glob("geoseg-app-*/*/input.tif"))  # the run's folder, while it runs
        sent = time.perf_counter()
        app.send_signal(signal.SIGTERM)
        code = app.wait(60)
        _note(f"SIGTERM: geoseg app exited {time.perf_counter() - sent:.3f} s after the signal")
        page.context.close()
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        for r in readers:
            r.join(30)
    log = "".join(err)
    assert code == 0, log
    assert "terminate called" not in log and "Traceback" not in log, log
    assert list(temp.glob("geoseg-app-*")) == []
    assert list(temp.rglob(long_scene.name)) == []  # Gradio's copy of the upload went too
