"""URL inputs: public addresses only unless the operator opts in, enforced for GDAL's own requests
(redirects, side files) by the app's egress proxy."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from geoseg.app.egress import EgressProxy, address_kind
from geoseg.app.urls import RemoteInput, check_url
from geoseg.errors import UploadError
from tests.conftest import write_raster
from tests.http_server import serve_directory


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    assert address_kind(address) == kind


@pytest.fixture
def numeric_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve address literals for real (no DNS: AI_NUMERICHOST), as the app would."""
    import _socket

    def lookup(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return _socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8000/a.tif", "127.0.0.1 is a loopback address"),
        ("http://[::1]/a.tif", "::1 is a loopback address"),
        ("http://10.0.0.7/a.tif", "10.0.0.7 is a private address"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("http://[fe80::1]:81/a.tif", "fe80::1 is a link-local address"),
        ("http://0.0.0.0/a.tif", "0.0.0.0 is an unspecified address"),
    ],
)
def test_non_public_hosts_are_refused(numeric_lookups: None, url: str, shown: str) -> None:
    with pytest.raises(UploadError, match="public internet only") as info:
        check_url(url)
    assert str(info.value) == (
        f"{url}: {shown}, and this server reads URLs on the public internet only; download the "
        "image and upload it instead"
    )
    assert check_url(url, allow_private=True).url == url  # the operator's opt-in


def test_names_that_resolve_to_loopback_are_refused() -> None:
    with pytest.raises(UploadError, match=r"localhost \((127\.0\.0\.1|::1)\) is a loopback"):
        check_url("http://localhost:9/a.tif")


def test_unknown_host_and_bad_port(numeric_lookups: None) -> None:
    with pytest.raises(UploadError, match=r"the host cogs\.invalid is unknown; check the URL"):
        check_url("https://cogs.invalid/a.tif")
    with pytest.raises(UploadError, match="the port is not a number from 1 to 65535"):
        check_url("http://8.8.8.8:99999/a.tif")


def test_gdal_path_disables_side_files_and_names_the_proxy() -> None:
    remote = RemoteInput("https://example.org/a b.tif?x=1&y=2", "a b.tif")
    assert remote.gdal_path() == (
        "/vsicurl?empty_dir=yes&url=https%3A%2F%2Fexample.org%2Fa%20b.tif%3Fx%3D1%26y%3D2"
    )
    assert remote.gdal_path("http://127.0.0.1:5", "geoseg:t0k").startswith(
        "/vsicurl?empty_dir=yes&proxy=http%3A%2F%2F127.0.0.1%3A5&proxyuserpwd=geoseg%3At0k&url="
    )


@pytest.fixture(scope="module")
def proxy() -> Iterator[EgressProxy]:
    """The app's proxy, told to treat 127.0.0.1 as public: 127.0.0.2 stands for an internal
    host."""
    egress = EgressProxy(allowed=["127.0.0.1/32"])
    yield egress
    egress.close()


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    write_raster(root / "a.tif", np.full((3, 32, 32), 7, np.uint8))
    for name in ("b.tif", "c.tif"):
        shutil.copy(root / "a.tif", root / name)
    return root


def test_proxy_reads_allowed_hosts_without_side_file_probes(
    proxy: EgressProxy, www: Path, tmp_path: Path
) -> None:
    log = tmp_path / "requests.txt"
    with serve_directory(www, requests_log=log) as url:
        path = RemoteInput(f"{url}/a.tif", "a.tif").gdal_path(proxy.url, proxy.credentials)
        with rasterio.open(path) as ds:
            assert ds.read(1).max() == 7 and ds.overviews(1) == []
            ds.read_masks(1)
    assert {line.split()[1] for line in log.read_text().splitlines()} == {"/a.tif"}


def test_proxy_refuses_a_redirect_to_an_internal_host(
    proxy: EgressProxy, www: Path, tmp_path: Path
) -> None:
    inner_log, outer_log = tmp_path / "inner.txt", tmp_path / "outer.txt"
    with serve_directory(www, host="127.0.0.2", requests_log=inner_log) as inner:
        with serve_directory(
            www, redirects={"/b.tif": f"{inner}/c.tif"}, requests_log=outer_log
        ) as outer:
            path = RemoteInput(f"{outer}/b.tif", "b.tif").gdal_path(proxy.url, proxy.credentials)
            with pytest.raises(rasterio.errors.RasterioIOError, match="403"):
                rasterio.open(path)
    assert "/b.tif" in outer_log.read_text()  # the public server was asked, and redirected
    assert not inner_log.exists()  # the internal one never was


def test_proxy_wants_its_token(proxy: EgressProxy, www: Path) -> None:
    with serve_directory(www) as url, socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.sendall(f"GET {url}/a.tif HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = s.recv(1000).decode()
    assert answer.startswith("HTTP/1.1 407 Proxy Authentication Required")


def _through_proxy(proxy: EgressProxy, request: str) -> str:
    import base64

    token = base64.b64encode(proxy.credentials.encode()).decode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
        s.sendall(
            request.replace(
                "\r\n\r\n", f"\r\nProxy-Authorization: Basic {token}\r\n\r\n", 1
            ).encode()
        )
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
            if request.startswith("CONNECT") and b"\r\n\r\n" in answer:
                if not answer.startswith(b"HTTP/1.1 200"):
                    break
                # the tunnel is open: speak HTTP to the server through it
                s.sendall(b"HEAD /a.tif HTTP/1.0\r\nHost: x\r\n\r\n")
                request = "tunnelled"
    return answer.decode("latin-1")


def test_proxy_tunnels_https_style_connects_to_allowed_hosts_only(
    proxy: EgressProxy, www: Path
) -> None:
    with serve_directory(www) as allowed, serve_directory(www, host="127.0.0.2") as internal:
        port = allowed.rsplit(":", 1)[1]
        answer = _through_proxy(proxy, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith("HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.0 200 OK")
        port = internal.rsplit(":", 1)[1]
        answer = _through_proxy(proxy, f"CONNECT 127.0.0.2:{port} HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith("HTTP/1.1 403 Forbidden")
        assert answer.endswith(
            "127.0.0.2 is a loopback address; this server reads public addresses only\n"
        )
