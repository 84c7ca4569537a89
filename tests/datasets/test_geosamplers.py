"""Nodata-aware sampling over TorchGeo datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from affine import Affine
from torchgeo.samplers import GridGeoSampler, RandomGeoSampler, Units

from geoseg.datasets.geosamplers import NodataFilter, ValidityIndex
from geoseg.datasets.geotiff import geotiff_dataset
from geoseg.errors import DatasetError
from tests.conftest import write_raster


@pytest.fixture
def half_empty(tmp_path):
    data = np.full((3, 256, 256), 100, np.uint8)
    data[:, :, :128] = 0  # the left half has no data
    return write_raster(
        tmp_path / "img.tif", data, transform=Affine(1, 0, 1000, 0, -1, 2000), nodata=0
    )


def test_random_chips_skip_nodata_and_are_seeded(half_empty) -> None:
    ds = geotiff_dataset([str(half_empty)])
    index = ValidityIndex([str(half_empty)])

    def draw() -> list:
        inner = RandomGeoSampler(
            ds, size=32, length=10, units=Units.PIXELS, generator=torch.Generator().manual_seed(5)
        )
        return list(NodataFilter(inner, index, max_nodata=0.0, length=25))

    a, b = draw(), draw()
    assert len(a) == 25 and a == b
    assert all(q[0].start >= 1128 for q in a)  # x of every chip in the valid right half
    sample = ds[a[0]]
    assert (sample["image"] > 0).all()


def test_grid_is_filtered(half_empty) -> None:
    ds = geotiff_dataset([str(half_empty)])
    index = ValidityIndex([str(half_empty)])
    grid = GridGeoSampler(ds, size=64, stride=64, units=Units.PIXELS)
    kept = list(NodataFilter(grid, index, max_nodata=0.5))
    assert len(grid) == 16 and len(kept) == 8


def test_impossible_request_is_reported(half_empty) -> None:
    ds = geotiff_dataset([str(half_empty)])
    index = ValidityIndex([str(half_empty)])
    inner = RandomGeoSampler(
        ds, size=200, length=5, units=Units.PIXELS, generator=torch.Generator().manual_seed(0)
    )
    with pytest.raises(DatasetError, match="raise max_nodata or use smaller chips"):
        list(NodataFilter(inner, index, max_nodata=0.0, length=3, tries=2))
