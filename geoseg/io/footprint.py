"""The valid-data footprint of a raster: where it holds data, as a polygon in EPSG:4326.

Read through GDAL's dataset mask (nodata, internal mask or alpha) at no more than ``max_size``
pixels a side, so a large COG costs a read of its overviews; a cell with any valid pixel counts as
valid, so the footprint covers every pixel with data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from affine import Affine
from rasterio.enums import Resampling

__all__ = ["valid_footprint"]


def valid_footprint(dataset: Any, *, max_size: int = 1024) -> dict[str, Any] | None:
    """The footprint of an open raster's valid pixels as a GeoJSON geometry in EPSG:4326
    (longitude, latitude), or None when the raster has no CRS or no valid pixel.

    Args:
        dataset: an open rasterio dataset.
        max_size: the mask is read at no more than this many pixels a side.
    """
    from rasterio.features import shapes
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping, shape
    from shapely.ops import unary_union

    if dataset.crs is None:
        return None
    factor = max(1.0, max(dataset.width, dataset.height) / max_size)
    rows = max(1, math.ceil(dataset.height / factor))
    cols = max(1, math.ceil(dataset.width / factor))
    if factor > 1:
        fractions = dataset.dataset_mask(out_shape=(rows, cols), resampling=Resampling.average)
        valid = fractions > 0
    else:
        valid = dataset.dataset_mask() > 0
    if not valid.any():
        return None
    transform = dataset.transform * Affine.scale(dataset.width / cols, dataset.height / rows)
    parts = [
        shape(geom)
        for geom, value in shapes(valid.astype(np.uint8), mask=valid, transform=transform)
        if value
    ]
    native = unary_union(parts)
    geometry = transform_geom(dataset.crs, "EPSG:4326", mapping(native), precision=7)
    return dict(geometry)
