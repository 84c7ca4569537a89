"""geoseg: segment satellite and aerial imagery into GIS-ready rasters and polygons.

``import geoseg`` is cheap: it imports neither torch nor rasterio. The heavy entry points are
loaded on first use::

    import geoseg
    geoseg.predict_raster("scene.tif", "mask.tif", "model.safetensors")
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from geoseg._version import __version__
from geoseg.errors import GeosegError

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.inference import predict_raster
    from geoseg.io import describe_raster
    from geoseg.models import build_model, load_checkpoint, save_checkpoint

__all__ = [
    "GeosegError",
    "__version__",
    "build_model",
    "describe_raster",
    "load_checkpoint",
    "predict_raster",
    "save_checkpoint",
]

_LAZY = {
    "describe_raster": "geoseg.io",
    "predict_raster": "geoseg.inference",
    "build_model": "geoseg.models",
    "load_checkpoint": "geoseg.models",
    "save_checkpoint": "geoseg.models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'geoseg' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
