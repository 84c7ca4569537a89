"""Shared fixtures: a network guard, tiny rasters made in code, the shared sample data, a COG
server."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

from tests.http_server import serve_directory

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRANSFORM = Affine(0.5, 0, 500000.0, 0, -0.5, 5700000.0)


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C back to its default when this run inherited it ignored: a shell starts background
    jobs that way (``make test`` runs the fault matrix beside the rest of the suite), and every
    process the tests start would inherit it, so that no SIGINT test could interrupt anything."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``gpu`` where torch sees no CUDA device; they run where one is."""
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False here)")
    for item in gpu:
        item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any socket connection or name lookup that leaves this machine (loopback stays
    allowed)."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(host, str) and (
            host.startswith("127.") or host in ("localhost", "::1") or self.family == socket.AF_UNIX
        ):
            return real_connect(self, address)
        raise RuntimeError(f"tests must not use the network (tried to connect to {address!r})")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    real_getaddrinfo = socket.getaddrinfo

    def lookup(
        host: Any, *args: Any, **kwargs: Any
    ) -> Any:  # no name lookups either: a test stays hermetic
        if host is None or str(host) in ("localhost", "::1") or str(host).startswith("127."):
            return real_getaddrinfo(host, *args, **kwargs)
        raise socket.gaierror(
            socket.EAI_NONAME, f"tests must not use the network (tried to look up {host!r})"
        )

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    # the Hugging Face hub retries a refused download with back-off (23 s of sleeping): tell it it
    # is offline
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the model cache (precision choices, frozen modules) of the tests out of the user's."""
    import os

    old = os.environ.get("GEOSEG_CACHE_DIR")
    os.environ["GEOSEG_CACHE_DIR"] = str(tmp_path_factory.mktemp("model-cache"))
    yield
    if old is None:
        os.environ.pop("GEOSEG_CACHE_DIR", None)
    else:
        os.environ["GEOSEG_CACHE_DIR"] = old


@pytest.fixture
def shared_data() -> Path:
    """The public sample data beside the repository; skips when absent (a lone clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"shared sample data not found at {SHARED_DATA} (only present beside a full checkout)"
        )
    return SHARED_DATA


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    transform: Affine | None = DEFAULT_TRANSFORM,
    crs: str | None = "EPSG:32631",
    nodata: float | None = None,
    **profile: Any,
) -> Path:
    """Write a ``(bands, rows, cols)`` array as a GeoTIFF and return its path."""
    if data.ndim == 2:
        data = data[None]
    kwargs: dict[str, Any] = {
        "driver": "GTiff",
        "height": data.shape[1],
        "width": data.shape[2],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "nodata": nodata,
    }
    if transform is not None:
        kwargs["transform"] = transform
    if crs is not None:
        kwargs["crs"] = crs
    kwargs.update(profile)
    with rasterio.open(path, "w", **kwargs) as dst:
        dst.write(data)
    return path


@pytest.fixture
def make_raster(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_raster(data, name="x.tif", **profile)`` writes a tiny GeoTIFF in tmp_path."""

    def make(data: np.ndarray, name: str = "raster.tif", **kwargs: Any) -> Path:
        return write_raster(tmp_path / name, data, **kwargs)

    return make


@pytest.fixture
def textured_rgb() -> Callable[[int, int], np.ndarray]:
    """Seeded, textured 3-band uint8 imagery of a given (rows, cols)."""

    def make(rows: int, cols: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:rows, 0:cols]
        base = np.stack([np.sin(x / 7.0 + k) + np.cos(y / 11.0 - k) for k in range(3)])
        noise = rng.normal(0, 0.3, size=(3, rows, cols))
        return np.clip((base + noise + 2.5) * 50, 1, 255).astype(np.uint8)

    return make


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A loopback HTTP server with range requests over a folder: yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_directory(root) as url:
        yield root, url


# Dataset fixtures made in code, shared by the dataset, training and CLI tests.
from tests.datasets.conftest import dubai_root, geotiff_pair, sn6_root  # noqa: E402, F401
