"""What makes the app safe to run for others: size limits, no path traversal, private results."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from tests.app.conftest import Served
from tests.conftest import write_raster

pytestmark = pytest.mark.slow


def test_oversize_upload_is_refused(
    app_server: Served, segment_call: Callable[..., Any], tmp_path: Path
) -> None:
    import requests

    rng = np.random.default_rng(1)
    big = write_raster(
        tmp_path / "big.tif", rng.integers(0, 255, (3, 700, 700), dtype=np.uint8)
    )  # ~1.5 MB > 1 MB
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1000000 bytes"):
        segment_call(big)  # gradio_client reads the limit from the server and refuses first
    with big.open(
        "rb"
    ) as f:  # a client that ignores it is refused by the server, and nothing is kept
        r = requests.post(
            f"{app_server.url}gradio_api/upload", files={"files": ("big.tif", f)}, timeout=60
        )
    assert r.status_code == 413, r.text


@pytest.mark.parametrize(
    "name", ["../tiny", "../../etc/passwd", "/etc/passwd", "tiny.safetensors", "notes", "..", ""]
)
def test_model_names_cannot_reach_files(
    segment_call: Callable[..., Any], scenes: dict[str, Path], name: str
) -> None:
    from gradio_client.exceptions import AppError

    # the app looks names up in the folder's list, never joins them to a path
    with pytest.raises(AppError, match=r"^unknown model '.*'; expected one of: tiny\. Models are"):
        segment_call(scenes["a"], model=name)


def test_pixel_budget_refuses_a_huge_claim_before_any_tile(
    app_server: Served, segment_call: Callable[..., Any], tmp_path: Path
) -> None:
    from gradio_client.exceptions import AppError

    from tests.app.conftest import write_huge_claim

    huge = write_huge_claim(tmp_path / "huge.tif")
    with pytest.raises(AppError, match="over this server's limit of 100 megapixels") as info:
        segment_call(huge)
    assert str(info.value).startswith("huge.tif: 200000 x 200000 px (40,000 megapixels) is over")
    job = app_server.demo.handlers.jobs.finished[-1]
    assert (job.outcome, job.step) == ("refused", "")  # no step reported: no model, no tile
    assert not list(Path(app_server.demo.workspace.root).glob("*/input.*"))  # nothing kept


def test_expected_errors_are_logged_in_one_line(
    segment_call: Callable[..., Any],
    scenes: dict[str, Path],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from gradio_client.exceptions import AppError

    caplog.set_level(logging.INFO, logger="geoseg.app")
    for model, bands in (("no-such-model", ""), ("tiny", "1,2")):
        with pytest.raises(AppError, match=r"unknown model|the model expects 3 band"):
            segment_call(scenes["a"], model=model, bands=bands)
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert refusals[0].startswith("refused: unknown model 'no-such-model'; expected one of: tiny")
    assert refusals[1].startswith("refused: a.tif: the model expects 3 band(s)")
    assert len(refusals) == 2 and all("\n" not in r and "--" not in r for r in refusals)
    assert "Traceback" not in capfd.readouterr().err


def test_two_clients_get_their_own_results(
    app_server: Served, segment_call: Callable[..., Any], scenes: dict[str, Path]
) -> None:
    results: dict[str, Any] = {}

    def go(key: str) -> None:
        results[key] = segment_call(scenes[key], client=app_server.client())

    threads = [threading.Thread(target=go, args=(k,)) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    folders = set()
    for key in ("a", "b"):
        downloads, status = results[key][5], results[key][6]
        assert f"{key}.tif" in status
        with rasterio.open(Path(downloads[0])) as out, rasterio.open(scenes[key]) as src:
            assert (out.transform, out.shape) == (src.transform, src.shape)
    # on the server, each request wrote into its own folder
    folders = {p.parent for p in Path(app_server.demo.workspace.root).glob("*/classes.tif")}
    assert len(folders) >= 2


def test_auth_keeps_strangers_out(models_dir: Path, tmp_path: Path) -> None:
    import requests
    from gradio_client import Client

    from tests.app.conftest import serve_tiny

    served = serve_tiny(models_dir, tmp_path, auth=(("alice", "s3cret"),))
    try:
        assert requests.get(f"{served.url}config", timeout=30).status_code in (401, 403)
        with pytest.raises(Exception, match=r"(?i)(401|403|auth|login|credentials)"):
            Client(served.url, verbose=False)
        with pytest.raises(Exception, match=r"(?i)(401|403|auth|login|credentials|incorrect)"):
            Client(served.url, auth=("alice", "wrong"), verbose=False)
        client = Client(served.url, auth=("alice", "s3cret"), verbose=False)
        assert "/segment" in str(client.view_api(print_info=False, return_format="dict"))
    finally:
        served.close()


@pytest.mark.parametrize("target", ["models", "/etc/passwd", "../../../../etc/passwd"])
def test_server_files_are_not_served(app_server: Served, models_dir: Path, target: str) -> None:
    import requests

    path = str(models_dir / "tiny.safetensors") if target == "models" else target
    r = requests.get(f"{app_server.url}gradio_api/file={path}", timeout=30)
    assert r.status_code in (400, 403, 404), (r.status_code, r.text[:200])
    assert b"root:" not in r.content and b"geoseg_config" not in r.content
