"""A real S3-compatible server on 127.0.0.1 (moto in server mode) with a fresh bucket, and the
environment a user sets to reach it: credentials, a region and ``AWS_ENDPOINT_URL``, nothing of
GDAL's own (geoseg maps the endpoint for GDAL itself)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["USER_SETTINGS", "local_bucket"]

# what a user of an S3-compatible store sets (plus the endpoint); GDAL's own variables are unset
USER_SETTINGS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
GDAL_OWN = ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING", "AWS_PROFILE")


@contextlib.contextmanager
def local_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any, Any]]:
    """A fresh bucket on a local S3 server, the environment pointed at it. Yields
    ``(bucket name, boto3 client, the server)`` (``server.stop()`` takes it away)."""
    moto_server = pytest.importorskip(
        "moto.server", reason="the S3 tests need moto[server] (in the dev extra)"
    )
    boto3 = pytest.importorskip("boto3", reason="writing to s3:// needs boto3 (the s3 extra)")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {**USER_SETTINGS, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    for key in GDAL_OWN:
        monkeypatch.delenv(key, raising=False)
    name = f"geoseg-{uuid.uuid4().hex[:12]}"  # GDAL caches by path: a new name each time
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=name)
    try:
        yield name, client, server
    finally:
        with contextlib.suppress(Exception):  # a test may have stopped it already
            server.stop()
