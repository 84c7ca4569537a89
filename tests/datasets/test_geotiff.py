"""GeoTIFF image/label datasets on TorchGeo: alignment, vector labels, nodata, the fast read
path."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.warp import reproject
from torchgeo.datasets import RasterDataset

from geoseg.classes import IGNORE_INDEX
from geoseg.datasets._torchgeo import make_query, sample_geo, sample_image, sample_mask
from geoseg.datasets.geotiff import (
    GeoTiffImages,
    geotiff_dataset,
    geotiff_scenes,
    to_training_sample,
)
from geoseg.errors import AlignmentWarning, DatasetError
from geoseg.normalize import Normalization
from tests.conftest import write_raster


def test_fast_path_reads_the_same_pixels_as_merge(geotiff_pair) -> None:
    image, _ = geotiff_pair
    fast = GeoTiffImages(paths=[str(image)])
    q = make_query(600005.0, 5749901.0, 600069.0, 5749965.0, fast.res)
    a = sample_image(fast[q])
    slow = GeoTiffImages(paths=[str(image)])
    slow.cache = False  # TorchGeo's own lookup and rasterio.merge
    ref = RasterDataset.__getitem__(slow, q)
    got = fast[q]
    assert torch.equal(a, sample_image(ref)) and a.dtype == sample_image(ref).dtype
    assert sorted(got) == sorted(ref)
    assert sample_geo(got, fast) == sample_geo(ref, slow)


def test_labels_in_another_crs_are_aligned_with_a_warning(tmp_path, geotiff_pair) -> None:
    image, labels = geotiff_pair
    with rasterio.open(labels) as src:
        data, t = src.read(1), src.transform
    from rasterio.warp import transform_bounds

    w, so, e, n = transform_bounds("EPSG:32631", "EPSG:4326", 600000, 5749872, 600128, 5750000)
    dst = np.full((200, 200), 255, np.uint8)
    t4326 = Affine((e - w) / 200, 0, w, 0, -(n - so) / 200, n)
    reproject(
        data,
        dst,
        src_transform=t,
        src_crs="EPSG:32631",
        dst_transform=t4326,
        dst_crs="EPSG:4326",
        src_nodata=255,
        dst_nodata=255,
    )
    other = write_raster(
        tmp_path / "labels4326.tif", dst, transform=t4326, crs="EPSG:4326", nodata=255
    )
    with pytest.warns(AlignmentWarning, match="reprojected"):
        ds = geotiff_dataset([str(image)], [str(other)])
    sample = ds[make_query(600030.0, 5749900.0, 600094.0, 5749964.0, ds.res)]
    got = sample_mask(sample).numpy()
    with rasterio.open(labels) as src:
        truth = src.read(1, window=((36, 100), (30, 94)))
    agree = (got == truth).mean()
    assert agree > 0.9  # nearest-neighbour resampling through a reprojection moves edges by a pixel


def test_vector_labels_by_class_name(tmp_path, geotiff_pair) -> None:
    image, _ = geotiff_pair
    poly = {
        "type": "Polygon",
        "coordinates": [
            [
                [600020, 5749980],
                [600060, 5749980],
                [600060, 5749940],
                [600020, 5749940],
                [600020, 5749980],
            ]
        ],
    }
    fc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32631"}},
        "features": [{"type": "Feature", "properties": {"class": "building"}, "geometry": poly}],
    }
    path = tmp_path / "buildings.geojson"
    path.write_text(json.dumps(fc))
    ds = geotiff_dataset(
        [str(image)], [str(path)], label_attribute="class", classes=["background", "building"]
    )
    sample = ds[make_query(600000.0, 5749872.0, 600128.0, 5750000.0, ds.res)]
    mask = sample_mask(sample).numpy()
    assert mask.sum() == 40 * 40
    assert mask[30, 30] == 1 and mask[0, 0] == 0
    fc["features"][0]["properties"]["class"] = "tree"
    path.write_text(json.dumps(fc))
    ds = geotiff_dataset(
        [str(image)], [str(path)], label_attribute="class", classes=["background", "building"]
    )
    with pytest.raises(DatasetError, match="'tree', which is not in the class list"):
        ds[make_query(600000.0, 5749872.0, 600128.0, 5750000.0, ds.res)]


def test_nodata_becomes_invalid_and_ignored(geotiff_pair) -> None:
    image, labels = geotiff_pair
    ds = geotiff_dataset([str(image)], [str(labels)])
    raw = ds[make_query(600000.0, 5749900.0, 600032.0, 5749932.0, ds.res)]
    out = to_training_sample(
        raw, normalization=Normalization(kind="scale"), num_classes=3, nodata=0
    )
    assert not out["valid"][:, :10].any() and out["valid"][:, 10:].all()
    assert (out["mask"][:, :10] == IGNORE_INDEX).all()
    assert (out["image"][:, :, :10] == 0).all()


def test_scenes_carry_classes_and_validity(geotiff_pair) -> None:
    image, labels = geotiff_pair
    scenes, classes, nodata = geotiff_scenes([str(image)], [str(labels)])
    assert nodata == 0 and len(classes) == 3
    (scene,) = scenes
    assert scene.shape == (128, 128) and not scene.valid[:, :10].any()
    assert (scene.mask[:, :10] == IGNORE_INDEX).all()
    with pytest.raises(DatasetError, match="names only 2 classes"):
        geotiff_scenes([str(image)], [str(labels)], classes=["a", "b"])


def test_clear_errors(tmp_path, geotiff_pair) -> None:
    image, _ = geotiff_pair
    with pytest.raises(DatasetError, match="no image file matches"):
        geotiff_dataset(str(tmp_path / "nothing" / "*.tif"))
    far = write_raster(
        tmp_path / "far.tif", np.zeros((10, 10), np.uint8), transform=Affine(1, 0, 0, 0, -1, 10)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlignmentWarning)
        with pytest.raises(DatasetError, match="do not overlap"):
            geotiff_dataset([str(image)], [str(far)])
