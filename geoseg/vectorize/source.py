"""The class mask to vectorize: checks, class table, pixel geometry and the block plan. No torch."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from geoseg.classes import ClassInfo, ClassTable, classes_of, default_palette
from geoseg.errors import GeosegWarning, NoCRSWarning, RasterFormatError, RasterOpenError
from geoseg.io.open import open_raster, read_failure

__all__ = ["MaskSource", "block_windows", "check_confidence_values", "class_info", "open_mask"]

LOOK = 1024  # longer edge of the decimated read that checks a confidence raster's values


@dataclass(frozen=True)
class MaskSource:
    """What the vectorizer needs to know about a class mask (picklable, for worker processes).

    Attributes:
        path: the mask's path or URL.
        height, width: size in pixels.
        transform: pixel -> map affine transform.
        crs: coordinate reference system (None: pixel grid only).
        nodata: value that marks no data (None: every pixel is data).
        classes: class table (ids, names, colours).
        block_shape: the mask's internal block (rows, cols).
        confidence: optional confidence/probability raster on the same grid (band 1 is used;
            uint8 0-255 or float 0-1).
    """

    path: str
    height: int
    width: int
    transform: Affine
    crs: CRS | None
    nodata: int | None
    classes: ClassTable
    block_shape: tuple[int, int]
    confidence: str | None = None

    @property
    def pixel_size(self) -> float:
        """Mean pixel edge in CRS units (1 for a bare pixel grid)."""
        return (abs(self.transform.a) + abs(self.transform.e)) / 2 or 1.0


def open_mask(
    path: str | os.PathLike[str],
    *,
    classes: ClassTable | None = None,
    confidence: str | os.PathLike[str] | None = None,
) -> MaskSource:
    """Open and check a class mask.

    Args:
        path: single-band integer raster (e.g. the output of ``geoseg predict``).
        classes: class table to use instead of the mask's own.
        confidence: optional raster of per-pixel confidence on the same grid.

    Raises:
        RasterOpenError: the mask cannot be opened.
        RasterFormatError: a float or multi-band mask, or a confidence raster on another grid.
    """
    text = str(path)
    with open_raster(text) as ds:
        dtype = np.dtype(ds.dtypes[0])
        if ds.count != 1:
            raise RasterFormatError(
                f"{text}: expected a single-band class mask, found {ds.count} bands. Vectorize one "
                f"band, e.g. `gdal_translate -b 1 {os.path.basename(text)} mask.tif`, or write the "
                "mask with `geoseg predict`."
            )
        if dtype.kind not in "ui" or dtype.itemsize > 2:
            raise RasterFormatError(
                f"{text}: expected integer class ids (uint8/uint16/int16), found {dtype.name}. A "
                "probability or regression raster must be classified first, e.g. `gdal_calc.py "
                '--calc "A>0.5" --type Byte`, or predict with `geoseg predict`, which writes '
                "uint8 class ids."
            )
        if ds.crs is None:
            warnings.warn(
                f"{text} has no CRS: polygons are written in its pixel/map units with no CRS, and "
                "GeoJSON output needs --keep-crs.",
                NoCRSWarning,
                stacklevel=2,
            )
        nodata = None if ds.nodata is None else int(ds.nodata)
        table = classes or classes_of(ds) or ClassTable(())  # unlisted ids are named class_<id>
        source = MaskSource(
            text,
            ds.height,
            ds.width,
            ds.transform,
            ds.crs,
            nodata,
            table,
            tuple(ds.block_shapes[0]),
        )
    if confidence is not None:
        with open_raster(confidence) as cds:
            if (cds.height, cds.width) != (
                source.height,
                source.width,
            ) or not cds.transform.almost_equals(source.transform):
                raise RasterFormatError(
                    f"{confidence}: expected a confidence raster on the mask's grid "
                    f"({source.width} x {source.height} px), found {cds.width} x {cds.height} px "
                    "with another transform. Use the --confidence or --probabilities output of "
                    "the same `geoseg predict` run."
                )
            _check_confidence(str(confidence), cds, len(source.classes))
        source = MaskSource(**{**source.__dict__, "confidence": str(confidence)})
    return source


def block_windows(source: MaskSource, block_size: int) -> list[list[Window]]:
    """Rows of blocks covering the mask, each a multiple of its internal block (so reads decode
    every stored block once)."""
    bh, bw = source.block_shape
    rows = max(bh, block_size // bh * bh) if bh < source.height else source.height
    cols = max(bw, block_size // bw * bw) if bw < source.width else source.width
    return [
        [
            Window(c, r, min(cols, source.width - c), min(rows, source.height - r))
            for c in range(0, source.width, cols)
        ]
        for r in range(0, source.height, rows)
    ]


def class_info(table: ClassTable, class_id: int) -> ClassInfo:
    """The class with ``class_id``, or a generated one for ids the table does not list."""
    for c in table:
        if c.id == class_id:
            return c
    return ClassInfo(class_id, f"class_{class_id}", default_palette(class_id % 18 + 1)[-1])


def _check_confidence(path: str, ds: Any, classes: int) -> None:
    """Refuse a raster that cannot be a confidence or probabilities raster of the mask, and warn
    when nothing says it is one (its values are read as probabilities)."""
    fix = "pass the --confidence or --probabilities output of the `geoseg predict` run"
    if ds.descriptions and ds.descriptions[0] == "class":
        raise RasterFormatError(f"{path}: a class mask, not a confidence raster; {fix}")
    if ds.count != 1 and classes and ds.count != classes:
        raise RasterFormatError(
            f"{path}: expected 1 band (confidence) or {classes} (probabilities, one per class), "
            f"found {ds.count}; {fix}"
        )
    try:
        look = ds.read(out_shape=(ds.count, *_decimated(ds)))
    except RasterioError as exc:
        raise RasterOpenError(f"--confidence {read_failure(path, exc)}") from None
    check_confidence_values(path, look, ds.nodata)
    if "GEOSEG_MODEL" not in ds.tags():
        warnings.warn(
            f"{path}: not written by geoseg predict, so mean_confidence reads its values as "
            "probabilities (uint8: 0-255, floats: 0-1); if they are not, " + fix,
            GeosegWarning,
            stacklevel=3,
        )


def _decimated(ds: Any) -> tuple[int, int]:
    scale = max(ds.height, ds.width) / LOOK
    return max(1, round(ds.height / max(scale, 1))), max(1, round(ds.width / max(scale, 1)))


def check_confidence_values(path: str, values: np.ndarray, nodata: float | None) -> None:
    """Refuse confidence values that are no probabilities: uint8 holds 0..255 (any value fits),
    every other type 0..1. Nodata and NaN are left out.

    Raises:
        RasterFormatError: naming the range found, the range expected and the fix.
    """
    if values.dtype == np.uint8 or values.size == 0:
        return
    keep = ~np.isnan(values) if values.dtype.kind in "fc" else np.ones(values.shape, bool)
    if nodata is not None and not np.isnan(nodata):
        keep &= values != nodata
    if not keep.any():
        return
    lo, hi = float(values[keep].min()), float(values[keep].max())
    if lo < 0 or hi > 1:
        raise RasterFormatError(
            f"{path}: confidence values reach {lo:g}..{hi:g}; expected probabilities, 0..1 (or "
            "0..255 in a uint8 raster). Pass the --confidence or --probabilities output of the "
            "`geoseg predict` run, or rescale the raster to 0..1"
        )
