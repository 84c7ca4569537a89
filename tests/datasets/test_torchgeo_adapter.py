"""The adapter reads every form of TorchGeo sample geometry the supported releases produce."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from affine import Affine
from rasterio.crs import CRS

from geoseg.datasets._torchgeo import (
    TORCHGEO_VERSION,
    make_query,
    sample_geo,
    sample_image,
    sample_mask,
)
from geoseg.datasets.geotiff import geotiff_dataset

IMAGE = torch.zeros(3, 4, 8)
EXPECTED = Affine(0.5, 0, 100.0, 0, -0.5, 202.0)


def test_08_slices_with_crs() -> None:
    sample = {
        "crs": CRS.from_epsg(32631),
        "bounds": (
            slice(100.0, 104.0, 0.5),
            slice(200.0, 202.0, 0.5),
            slice(pd.Timestamp.min, pd.Timestamp.max),
        ),
        "image": IMAGE,
    }
    geo = sample_geo(sample)
    assert geo.crs == CRS.from_epsg(32631)
    assert geo.transform.almost_equals(EXPECTED)
    assert geo.bounds == (100.0, 200.0, 104.0, 202.0)


def test_010_transform_tensor_and_no_crs() -> None:
    class Dataset:
        crs = CRS.from_epsg(32631)

    sample = {
        "transform": torch.tensor([0.5, 0, 100.0, 0, -0.5, 202.0]),
        "bounds": torch.tensor([100.0, 104.0, 200.0, 202.0, 0, 1]),
        "image": IMAGE,
    }
    geo = sample_geo(sample, Dataset())
    assert geo.crs == CRS.from_epsg(32631)
    assert geo.transform.almost_equals(EXPECTED)
    assert geo.bounds == (100.0, 200.0, 104.0, 202.0)


def test_old_bounding_box() -> None:
    class Box:
        minx, maxx, miny, maxy = 100.0, 104.0, 200.0, 202.0

    geo = sample_geo({"bounds": Box(), "image": IMAGE, "crs": "EPSG:4326"})
    assert geo.transform.almost_equals(EXPECTED)
    assert geo.crs == CRS.from_epsg(4326)


def test_missing_geometry_is_named() -> None:
    with pytest.raises(KeyError, match="neither 'transform' nor 'bounds'"):
        sample_geo({"image": IMAGE})


def test_mask_band_axis_dropped() -> None:
    assert sample_mask({"mask": torch.zeros(1, 4, 8)}).shape == (4, 8)
    with pytest.raises(KeyError, match="no 'image'"):
        sample_image({"mask": IMAGE})


def test_installed_torchgeo_round_trip(geotiff_pair) -> None:
    """Pins the keys the installed release returns and that our reading of them is right."""
    image, labels = geotiff_pair
    ds = geotiff_dataset([str(image)], [str(labels)])
    q = make_query(600016.0, 5749900.0, 600048.0, 5749932.0, ds.res)
    sample = ds[q]
    keys = set(sample)
    if TORCHGEO_VERSION < (0, 9):
        assert {"crs", "bounds", "image", "mask"} <= keys
    else:
        assert {"transform", "image", "mask"} <= keys
    geo = sample_geo(sample, ds)
    assert geo.crs == CRS.from_epsg(32631)
    assert geo.transform.almost_equals(Affine(1.0, 0, 600016.0, 0, -1.0, 5749932.0))
    assert sample_image(sample).shape == (3, 32, 32)
    assert sample_mask(sample).shape == (32, 32)
