"""Output grid = input grid over the odd rasters of the shared test data (rotated, 4326,
uint16...)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.errors import NoValidDataWarning
from geoseg.inference import predict_raster
from geoseg.models.checkpoint import LoadedModel
from geoseg.normalize import Normalization
from tests.inference.conftest import config_for, pointwise_model

ODD = [
    "rotated.tif",
    "world.byte.tif",
    "RGBA.uint16.tif",
    "float_nan.tif",
    "all-nodata.tif",
    "float_raster_with_nodata.tif",
    "shade.tif",
]


@pytest.mark.parametrize("name", ODD)
def test_output_grid_equals_input_grid(shared_data: Path, tmp_path: Path, name: str) -> None:
    src = shared_data / "geotiff-rasterio-testdata" / name
    with rasterio.open(src) as ds:
        count, dtype = ds.count, ds.dtypes[0]
    scale = {"uint8": 255.0, "uint16": 65535.0}.get(dtype, 1.0)
    cfg = config_for(in_channels=count, tile=64, overlap=16).replace(
        normalization=Normalization("scale", scale=scale)
    )
    model = LoadedModel(pointwise_model(in_channels=count), cfg)
    dst = tmp_path / "mask.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoValidDataWarning)
        predict_raster(src, dst, model, device="cpu")
    with rasterio.open(src) as inp, rasterio.open(dst) as out:
        assert out.shape == inp.shape
        assert out.transform.almost_equals(inp.transform)
        assert out.crs == inp.crs
        mask = out.read(1)
        data = inp.read()
        invalid = (
            inp.dataset_mask() == 0
        )  # GDAL's view: nodata in every band, internal mask or alpha
        if data.dtype.kind == "f":
            invalid |= np.isnan(data).any(axis=0)
        assert (mask[invalid] == 255).all()
        assert (mask[~invalid] < 4).all()


def test_gcp_raster_keeps_its_gcps(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "georust-gdal-fixtures" / "gcp.tif"
    cfg = config_for(in_channels=1, tile=64, overlap=16).replace(
        normalization=Normalization("scale", scale=65535.0)
    )
    predict_raster(
        src, tmp_path / "m.tif", LoadedModel(pointwise_model(in_channels=1), cfg), device="cpu"
    )
    with rasterio.open(src) as inp, rasterio.open(tmp_path / "m.tif") as out:
        assert len(out.gcps[0]) == len(inp.gcps[0]) and out.gcps[1] == inp.gcps[1]
