"""The public API: every exported name resolves, is documented, and the top level predicts with the
bundled model."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import rasterio

import geoseg

PACKAGES = [
    "geoseg",
    "geoseg.io",
    "geoseg.datasets",
    "geoseg.models",
    "geoseg.inference",
    "geoseg.training",
    "geoseg.evaluation",
    "geoseg.vectorize",
    "geoseg.explain",
    "geoseg.export",
    "geoseg.distributed",
    "geoseg.app",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves_and_is_documented(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__doc__, package
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        value = getattr(module, name)
        if callable(value) and not name.isupper():
            assert value.__doc__, f"{package}.{name} has no docstring"


def test_top_level_names_are_the_subpackage_objects() -> None:
    from geoseg.evaluation.evaluate import evaluate
    from geoseg.inference.engine import predict_raster
    from geoseg.training.train import train

    assert (
        geoseg.predict_raster is predict_raster
        and geoseg.train is train
        and geoseg.evaluate is evaluate
    )
    assert (
        geoseg.training.train is train and geoseg.evaluation.evaluate is evaluate
    )  # not the modules of the same name
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = geoseg.nope


def test_a_lazy_name_must_be_exported_once() -> None:
    from geoseg._lazy import lazy_attributes

    getattr_, dir_ = lazy_attributes("pkg", {"json": "dumps loads"}, ["dumps", "loads"])
    assert getattr_("dumps") is __import__("json").dumps and dir_() == ["dumps", "loads"]
    with pytest.raises(ValueError, match="'loads' is listed twice"):
        lazy_attributes("pkg", {"json": "dumps loads", "pickle": "loads"}, ["dumps", "loads"])
    with pytest.raises(ValueError, match="'dumps' is listed twice or missing"):
        lazy_attributes("pkg", {"json": "dumps"}, [])


def test_predict_raster_without_a_model_uses_the_bundled_one(
    make_raster, textured_rgb, tmp_path
) -> None:
    src = make_raster(textured_rgb(64, 80).astype(np.uint8))
    result = geoseg.predict_raster(src, tmp_path / "mask.tif", device="cpu", precision="fp32")
    with rasterio.open(result.mask) as out:
        assert out.shape == (64, 80) and "vegetation" in out.tags()["CLASS_NAMES"]
    ids = geoseg.predict_classes(src, device="cpu", precision="fp32")
    with rasterio.open(result.mask) as out:
        assert np.array_equal(ids.data[0], out.read(1)) and ids.transform == out.transform
