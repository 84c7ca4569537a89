"""geoseg: segment satellite and aerial imagery into GIS-ready rasters and polygons.

``import geoseg`` is cheap: it imports neither torch nor rasterio. Every name below loads its
module on first use::

    import geoseg

    geoseg.predict_raster("scene.tif", "mask.tif")                  # the bundled land-cover model
    geoseg.predict_raster("scene.tif", "mask.tif", "model.safetensors", tile_size=256)
    geoseg.vectorize_raster("mask.tif", "polygons.gpkg")
    run = geoseg.train(geoseg.load_config("dubai-default", ["data.root=/data/dubai"]))
    report = geoseg.evaluate(run.checkpoint, geoseg.pairs_from_config(geoseg.load_config(...)))

Prediction: :func:`predict_raster` (to COGs), :func:`predict_block` (probabilities of one window,
in memory), :func:`predict_classes` (class ids in memory), all taking one :class:`PredictOptions`.
Vectorizing: :func:`vectorize_raster`. Models: :func:`build_model`, :func:`load_checkpoint`,
:func:`save_checkpoint`, :func:`default_model`. Training and evaluation: :func:`load_config`,
:func:`train`, :func:`evaluate`, :func:`pairs_from_config`. Data: :func:`describe_raster`,
:func:`check_dataset`, :func:`register_dataset_kind`, :class:`Normalization` (how band values become
model inputs). Errors: :class:`GeosegError`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from geoseg._lazy import lazy_attributes
from geoseg._version import __version__
from geoseg.errors import GeosegError

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.classes import ClassTable
    from geoseg.datasets import DatasetKind, check_dataset, register_dataset_kind
    from geoseg.evaluation import evaluate, pairs_from_config
    from geoseg.inference import PredictOptions, predict_block, predict_classes, predict_raster
    from geoseg.io import GeoArray, describe_raster
    from geoseg.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
    from geoseg.models.default import default_model
    from geoseg.normalize import Normalization
    from geoseg.training import load_config, train
    from geoseg.vectorize import vectorize_raster

__all__ = [
    "ClassTable",
    "DatasetKind",
    "GeoArray",
    "GeosegError",
    "ModelConfig",
    "Normalization",
    "PredictOptions",
    "__version__",
    "build_model",
    "check_dataset",
    "default_model",
    "describe_raster",
    "evaluate",
    "load_checkpoint",
    "load_config",
    "pairs_from_config",
    "predict_block",
    "predict_classes",
    "predict_raster",
    "register_dataset_kind",
    "save_checkpoint",
    "train",
    "vectorize_raster",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "geoseg.classes": "ClassTable",
        "geoseg.datasets": "DatasetKind check_dataset register_dataset_kind",
        "geoseg.evaluation": "evaluate pairs_from_config",
        "geoseg.inference": "PredictOptions predict_block predict_classes predict_raster",
        "geoseg.io": "GeoArray describe_raster",
        "geoseg.models": "ModelConfig build_model load_checkpoint save_checkpoint",
        "geoseg.models.default": "default_model",
        "geoseg.normalize": "Normalization",
        "geoseg.training": "load_config train",
        "geoseg.vectorize": "vectorize_raster",
    },
    __all__,
)
