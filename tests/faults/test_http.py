"""A server that accepts the connection and never answers ends in a one-line error, not a hang."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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


@pytest.mark.slow
def test_a_silent_server_is_given_up_with_the_project_defaults(
    silent_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With nothing set but the address, a server that accepts and never answers ends in one
    line, not a hang: a raster read (GDAL, about 20 s here) and an upload (boto3, three tries of
    15 s and a brief clean-up: about 80 s here), side by side."""
    import os

    from geoseg.errors import StorageError
    from geoseg.io import storage

    for key in [*HTTP_DEFAULTS, "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", silent_server.rsplit("/", 1)[0])
    small = tmp_path / "mask.tif"
    small.write_bytes(b"x" * 1000)
    took: dict[str, tuple[float, str]] = {}

    def timed(name: str, call: Callable[[], object], error: type[Exception]) -> None:
        start = time.monotonic()
        try:
            call()
        except error as exc:
            took[name] = (time.monotonic() - start, str(exc))

    reads = threading.Thread(
        target=timed, args=("read", lambda: open_raster(silent_server), RasterOpenError)
    )
    reads.start()
    timed("upload", lambda: storage.upload(small, "s3://bucket/mask.tif"), StorageError)
    reads.join()
    assert os.environ["GDAL_HTTP_LOW_SPEED_TIME"] == HTTP_DEFAULTS["GDAL_HTTP_LOW_SPEED_TIME"]
    assert took["read"][0] < 45 and took["upload"][0] < 120, took
    assert all(len(message.splitlines()) == 1 for _, message in took.values()), took
