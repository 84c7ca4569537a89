"""Label rasters read window by window on an image's pixel grid.

Scoring a model streams its prediction in bands of rows; :class:`LabelReader` hands out the labels
of the same windows, so no image's labels are ever held whole. Labels on another grid (another
CRS, resolution or extent) are warped onto the image's with nearest neighbour; labels without a
CRS, or an image without one, must have the image's size.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from geoseg.classes import IGNORE_INDEX
from geoseg.errors import DatasetError, RasterOpenError
from geoseg.io.open import grid_of, open_raster, read_failure, warped_onto

__all__ = ["LabelReader"]


class LabelReader:
    """Class indexes of a label raster (band 1) on an image's grid, one window at a time.

    Pixels that hold the label raster's nodata, or that a warped view leaves uncovered, read as
    :data:`~geoseg.classes.IGNORE_INDEX`.

    Args:
        labels: the label raster, or a ``(rows, cols)`` integer array already on the image grid.
        image: the image whose grid the labels must match.
        name: how messages call the pair (default: the image's path).

    Raises:
        RasterOpenError: a raster cannot be opened.
        DatasetError: labels of another size than the image, where neither can be warped (no
            CRS).
    """

    def __init__(
        self,
        labels: str | os.PathLike[str] | np.ndarray,
        image: str | os.PathLike[str],
        *,
        name: str | None = None,
    ) -> None:
        self.name = name or str(image)
        self._stack = contextlib.ExitStack()
        self._array: np.ndarray | None = None
        self._source: Any = None
        self._nodata: float | None = None
        with open_raster(image) as img:
            grid = grid_of(img)
        self.height, self.width = int(grid["height"]), int(grid["width"])
        if isinstance(labels, np.ndarray):
            if labels.shape != (self.height, self.width):
                raise DatasetError(
                    f"{self.name}: labels are {labels.shape[-1]}x{labels.shape[0]} but the image "
                    f"is {self.width}x{self.height}"
                )
            self._array = labels
            self.path = None
            return
        self.path = str(labels)
        try:
            lab = self._stack.enter_context(open_raster(labels))
            same = (lab.crs, lab.transform, lab.shape) == (
                grid["crs"],
                grid["transform"],
                (self.height, self.width),
            )
            if same or grid["crs"] is None or lab.crs is None:
                if lab.shape != (self.height, self.width):
                    raise DatasetError(
                        f"{labels}: labels are {lab.width}x{lab.height} but {image} is "
                        f"{self.width}x{self.height}"
                    )
                self._source = lab
            else:
                self._source = self._stack.enter_context(
                    warped_onto(lab, grid, nodata=IGNORE_INDEX)
                )
            self._nodata = lab.nodata
        except BaseException:
            self._stack.close()
            raise

    def read(self, window: Window) -> np.ndarray:
        """The labels of ``window`` (inside the image) as ``(rows, cols)`` int64 class indexes.

        Raises:
            RasterOpenError: GDAL cannot decode the window.
        """
        r0, c0 = int(window.row_off), int(window.col_off)
        rows, cols = int(window.height), int(window.width)
        if self._array is not None:
            return np.asarray(self._array[r0 : r0 + rows, c0 : c0 + cols], np.int64)
        try:
            data = self._source.read(1, window=Window(c0, r0, cols, rows))
        except RasterioIOError as exc:
            where = f"rows {r0}-{r0 + rows}, cols {c0}-{c0 + cols}"
            raise RasterOpenError(read_failure(str(self.path), exc, where)) from None
        out = data.astype(np.int64)
        if self._nodata is not None:
            out[data == self._nodata] = IGNORE_INDEX
        return out

    def close(self) -> None:
        """Close the label raster."""
        self._stack.close()

    def __enter__(self) -> LabelReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
