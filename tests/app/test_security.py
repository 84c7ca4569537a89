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

    # the picker refuses names it does not list; the app looks names up, never joins them to a path
    with pytest.raises(
        AppError,
        match=r"unknown model .* expected one of: tiny|is not in the list of choices: \['tiny'\]",
    ):
        segment_call(scenes["a"], model=name)


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

    from geoseg.app import AppConfig
    from tests.app.conftest import free_port, serve

    config = AppConfig(
        models_dir=models_dir,
        include_bundled=False,
        port=free_port(),
        auth=(("alice", "s3cret"),),
        workdir=tmp_path,
    )
    served = serve(config)
    try:
        assert requests.get(f"{served.url}config", timeout=30).status_code in (401, 403)
        with pytest.raises(Exception, match=r"(?i)(401|403|auth|login|credentials)"):
            Client(served.url, verbose=False)
        with pytest.raises(Exception, match=r"(?i)(401|403|auth|login|credentials|incorrect)"):
            Client(served.url, auth=("alice", "wrong"), verbose=False)
        client = Client(served.url, auth=("alice", "s3cret"), verbose=False)
        assert "/segment" in str(client.view_api(print_info=False, return_format="dict"))
    finally:
        served.demo.close()
        served.demo.workspace.close()


@pytest.mark.parametrize("target", ["models", "/etc/passwd", "../../../../etc/passwd"])
def test_server_files_are_not_served(app_server: Served, models_dir: Path, target: str) -> None:
    import requests

    path = str(models_dir / "tiny.safetensors") if target == "models" else target
    r = requests.get(f"{app_server.url}gradio_api/file={path}", timeout=30)
    assert r.status_code in (400, 403, 404), (r.status_code, r.text[:200])
    assert b"root:" not in r.content and b"geoseg_config" not in r.content
