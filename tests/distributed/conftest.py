"""A small in-process Dask cluster, tiny rasters and a tiny model for the scale-out tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from geoseg.models.checkpoint import LoadedModel
from tests.conftest import write_raster
from tests.inference.conftest import config_for, conv3_model

distributed = pytest.importorskip(
    "distributed", reason="Dask is an optional extra (pip install 'geoseg[distributed]')"
)


def textured(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    base = np.stack([np.sin(x / (5.0 + seed) + k) + np.cos(y / 9.0 - k) for k in range(3)])
    return np.clip((base + rng.normal(0, 0.3, (3, rows, cols)) + 2.5) * 50, 1, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_model() -> LoadedModel:
    """Two 3x3 convolutions on 64-px tiles: enough tiles per raster that the frozen trace runs."""
    return LoadedModel(conv3_model(), config_for(tile=64, overlap=16))


@pytest.fixture
def rasters(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    shapes = [(150, 170), (97, 131), (200, 90)]
    return [
        write_raster(folder / f"scene{i}.tif", textured(*s, seed=i)) for i, s in enumerate(shapes)
    ]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Two single-threaded workers in this process (fast to start); process workers where a test
    needs them."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def read(path: str | Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()
