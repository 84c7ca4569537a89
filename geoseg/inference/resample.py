"""``--resample-to-model``: predict at the model's ground sample distance, return on the input grid.

The input is warped (same CRS and extent, the model's pixel size) into a temporary GeoTIFF beside
the output, predicted there, and each output is warped back onto the input's exact grid (nearest
for classes, bilinear for probabilities) and written as the usual COGs. QGIS Deepness users know
this as its resolution setting.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window

from geoseg.classes import MASK_NODATA
from geoseg.errors import InputCompatibilityError
from geoseg.io.open import open_raster, warped_onto
from geoseg.io.reader import RasterReader
from geoseg.io.writer import COG_BLOCK

__all__ = ["Resampling", "resampling_for", "warp_back", "warp_input"]

log = logging.getLogger(__name__)

SAME_GSD = 0.01  # relative difference under which no resampling is done


@dataclass(frozen=True)
class Resampling:
    """The grids of a prediction at the model's pixel size.

    Attributes:
        grid: the input's grid (``height``, ``width``, ``transform``, ``crs``).
        fine: the grid at the model's ground sample distance, same CRS and extent.
        gsd: the model's ground sample distance (metres).
    """

    grid: dict[str, Any]
    fine: dict[str, Any]
    gsd: float


def resampling_for(src: str | os.PathLike[str], config: Any, options: Any) -> Resampling | None:
    """The grids of ``--resample-to-model`` for ``src``, or None when the input already has the
    model's pixel size (within 1 %).

    Raises:
        InputCompatibilityError: the checkpoint has no GSD, or the input no metric pixel size.
    """
    with RasterReader(src, bands=options.bands) as reader:
        pixel = reader.pixel_size
        grid = reader.grid
    if not config.gsd:
        raise InputCompatibilityError(
            f"{src}: --resample-to-model needs the model's ground sample distance, and this "
            "checkpoint records none; resample the input yourself (gdalwarp -tr) or drop the option"
        )
    if pixel is None:
        raise InputCompatibilityError(
            f"{src}: --resample-to-model needs a georeferenced input with a pixel size in metres, "
            "found none (no CRS, or GCPs only); drop the option"
        )
    if abs(pixel / config.gsd - 1) < SAME_GSD:
        return None
    factor = pixel / config.gsd  # > 1: the model sees finer pixels than the input has
    height, width = grid["height"], grid["width"]
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    fine = grid["transform"] * Affine.scale(width / new_w, height / new_h)
    return Resampling(
        {k: grid[k] for k in ("height", "width", "transform", "crs")},
        {"height": new_h, "width": new_w, "transform": fine, "crs": grid["crs"]},
        float(config.gsd),
    )


def warp_input(src: str | os.PathLike[str], plan: Resampling, dst: Path) -> Path:
    """Write ``src`` warped onto the fine grid as a tiled GeoTIFF ``dst``."""
    finer = plan.fine["width"] > plan.grid["width"]
    with (
        open_raster(src) as ds,
        warped_onto(ds, plan.fine, resampling="bilinear" if finer else "average") as vrt,
    ):
        rasterio.shutil.copy(vrt, dst, driver="GTiff", tiled=True, compress="deflate")
    return dst


def warp_back(parts: dict[str, Path], writers: list[Any], geo: dict[str, Any]) -> None:
    """Warp each predicted output onto the input grid, block row by block row, into its writer."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        views = {}
        for name, path in parts.items():
            ds = stack.enter_context(rasterio.open(path))
            method = "nearest" if name == "classes" else "bilinear"
            nodata = MASK_NODATA if name == "classes" else None
            views[name] = stack.enter_context(
                warped_onto(ds, geo, resampling=method, nodata=nodata)
            )
        for writer, _ in writers:
            stack.enter_context(writer)
        for row in range(0, geo["height"], COG_BLOCK):
            window = Window(0, row, geo["width"], min(COG_BLOCK, geo["height"] - row))
            classes = views["classes"].read(window=window)
            valid = classes[0] != MASK_NODATA
            for writer, name in writers:
                data = classes if name == "classes" else views[name].read(window=window)
                if name != "classes":
                    data = np.where(valid[None], data, 0).astype(np.uint8)
                writer.write(data, window, valid)
