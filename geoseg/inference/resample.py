"""``--resample-to-model``: predict at the model's ground sample distance, return on the input grid.

The input is warped (same CRS and extent, the model's pixel size) into a temporary GeoTIFF beside
the output, predicted there, and each output is warped back onto the input's exact grid (nearest
for classes, bilinear for probabilities) and written as the usual COGs. QGIS Deepness users know
this as its resolution setting.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window

from geoseg.classes import MASK_NODATA
from geoseg.errors import InputCompatibilityError
from geoseg.inference.options import PredictOptions
from geoseg.io.atomic import temporary_name
from geoseg.io.open import open_raster, warped_onto
from geoseg.io.reader import RasterReader
from geoseg.io.writer import COG_BLOCK
from geoseg.models.checkpoint import LoadedModel

__all__ = ["predict_resampled"]

log = logging.getLogger(__name__)

SAME_GSD = 0.01  # relative difference under which no resampling is done


def predict_resampled(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    loaded: LoadedModel,
    options: PredictOptions,
    *,
    probabilities: str | os.PathLike[str] | None,
    confidence: str | os.PathLike[str] | None,
    overwrite: bool,
    progress: Callable[[int, int, float], None] | None,
) -> Any:
    """:func:`~geoseg.inference.predict_raster` through the model's pixel size (see the module).

    Raises:
        InputCompatibilityError: the checkpoint has no GSD, or the input no metric pixel size.
    """
    from geoseg.inference.engine import output_writers, predict_raster

    start = time.perf_counter()
    cfg = loaded.config
    plain = options.replace(resample_to_model=False)
    with RasterReader(src, bands=options.bands) as reader:
        pixel, height, width, transform, crs = (
            reader.pixel_size,
            reader.height,
            reader.width,
            reader.transform,
            reader.crs,
        )
    if not cfg.gsd:
        raise InputCompatibilityError(
            f"{src}: --resample-to-model needs the model's ground sample distance, and this "
            "checkpoint records none; resample the input yourself (gdalwarp -tr) or drop the option"
        )
    if pixel is None:
        raise InputCompatibilityError(
            f"{src}: --resample-to-model needs a georeferenced input with a pixel size in metres, "
            "found none (no CRS, or GCPs only); drop the option"
        )
    if abs(pixel / cfg.gsd - 1) < SAME_GSD:
        return predict_raster(
            src,
            dst,
            loaded,
            plain,
            probabilities=probabilities,
            confidence=confidence,
            overwrite=overwrite,
            progress=progress,
        )
    factor = pixel / cfg.gsd  # > 1: the model sees finer pixels than the input has
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    fine = transform * Affine.scale(width / new_w, height / new_h)
    fine_grid = {"height": new_h, "width": new_w, "transform": fine, "crs": crs}
    work = temporary_name(Path(dst), "-resample")
    work.mkdir()
    try:
        with (
            open_raster(src) as ds,
            warped_onto(ds, fine_grid, resampling="bilinear" if factor > 1 else "average") as vrt,
        ):
            rasterio.shutil.copy(
                vrt, work / "input.tif", driver="GTiff", tiled=True, compress="deflate"
            )
        parts = {"classes": work / "classes.tif"}
        if probabilities is not None:
            parts["probabilities"] = work / "probabilities.tif"
        if confidence is not None:
            parts["confidence"] = work / "confidence.tif"
        result = predict_raster(
            work / "input.tif",
            parts["classes"],
            loaded,
            plain,
            probabilities=parts.get("probabilities"),
            confidence=parts.get("confidence"),
            overwrite=True,
            progress=progress,
        )
        geo = {"height": height, "width": width, "transform": transform, "crs": crs}
        writers = output_writers(cfg, geo, dst, probabilities, confidence, overwrite=overwrite)
        _warp_back(parts, writers, geo)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.mask, result.height, result.width = Path(dst), height, width
    result.probabilities = Path(probabilities) if probabilities else None
    result.confidence = Path(confidence) if confidence else None
    result.seconds = time.perf_counter() - start
    result.megapixels_per_second = height * width / 1e6 / result.seconds
    result.extra["resampled_to"] = cfg.gsd
    return result


def _warp_back(parts: dict[str, Path], writers: list[Any], geo: dict[str, Any]) -> None:
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
