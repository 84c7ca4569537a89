"""A server that accepts the connection and never answers ends in a one-line error, not a hang."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.errors import RasterOpenError
from geoseg.io.open import open_raster
from geoseg.io.storage import HTTP_DEFAULTS


@pytest.fixture
def silent_server() -> Iterator[str]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)  # never answer
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/scene.tif"
    stop.set()
    thread.join()
    for c in held:
        c.close()
    server.close()


def test_silent_server_times_out(silent_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    monkeypatch.setenv("CPL_VSIL_CURL_NON_CACHED", "/vsicurl/" + silent_server)
    start = time.monotonic()
    with pytest.raises(RasterOpenError, match=r"no answer from the server|error from the server"):
        open_raster(silent_server)
    assert time.monotonic() - start < 20
    result = CliRunner().invoke(cli, ["info", silent_server])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output


def test_defaults_are_bounded_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from geoseg.io.storage import http_defaults

    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "5")
    monkeypatch.delenv("GDAL_HTTP_CONNECTTIMEOUT", raising=False)
    http_defaults()
    import os

    assert (
        os.environ["GDAL_HTTP_TIMEOUT"] == "5"
        and os.environ["GDAL_HTTP_CONNECTTIMEOUT"] == HTTP_DEFAULTS["GDAL_HTTP_CONNECTTIMEOUT"]
    )
    assert int(HTTP_DEFAULTS["GDAL_HTTP_TIMEOUT"]) <= 120
