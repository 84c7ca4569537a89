"""Turning raster windows into model-ready tiles, and finished rows into output arrays: pure
numpy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from rasterio.windows import Window

from geoseg.classes import MASK_NODATA
from geoseg.errors import CheckpointError, TilingError
from geoseg.inference.accumulator import FinishedRows
from geoseg.io.reader import GeoArray, RasterReader
from geoseg.io.windows import EdgeMode, clip_window, resolve_overlap, tile_transform
from geoseg.models.config import ModelConfig
from geoseg.normalize import Normalization

__all__ = [
    "MAX_TILE",
    "TILINGS",
    "Finished",
    "Tiling",
    "argmax_classes",
    "checked_tiling",
    "finalize",
    "pad_reflect",
    "read_tile",
    "stride_problem",
    "tiling_of",
]

MAX_TILE = 8192  # a larger tile needs tens of GB for one forward pass

Fill = Literal["mean", "nodata"]


@dataclass(frozen=True)
class Tiling:
    """How tiles are laid over a raster, what fills their pixels without data, and how they are
    combined: the part of a run that a model config names (its ``tiling``), so that every door
    runs a model the way it was exported to run.

    Attributes:
        edge: the tile plan's edge modes, ``(rows, cols)`` (see
            :func:`~geoseg.io.windows.axis_starts`).
        blend: the blend kernel when the options name none.
        fill: ``"mean"``: pixels without data become the normalized mean (0) and tiles are
            reflected past the raster's edges; ``"nodata"``: pixels keep their stored value and
            past the edges take the nodata value (0 without one), as QGIS reads a raster.
    """

    edge: tuple[EdgeMode, EdgeMode]
    blend: str
    fill: Fill


TILINGS: dict[str, Tiling] = {
    # geoseg's own: tiles inside the raster, Gaussian blending, nodata as the mean
    "geoseg": Tiling(("shift", "shift"), "gaussian", "mean"),
    # QGIS Deepness 0.6 (deepness/processing/extent_utils.py, tile_params.py): a regular grid from
    # the raster's left edge and up from its bottom edge (its extent is extended to the right and
    # the top), each tile's core kept, pixels as QGIS reads them
    "deepness": Tiling(("pad-start", "pad"), "core", "nodata"),
}


def tiling_of(config: ModelConfig) -> Tiling:
    """The :class:`Tiling` a model config names (its ``tiling``).

    Raises:
        CheckpointError: a name this geoseg does not know.
    """
    name = config.tiling
    if name not in TILINGS:
        raise CheckpointError(
            f"the model's config asks for tiling {name!r}; this geoseg knows "
            f"{', '.join(TILINGS)}. Upgrade geoseg (pip install -U geoseg) or re-export the model"
        )
    return TILINGS[name]


def stride_problem(tile: int, stride: int) -> str | None:
    """Why ``tile`` does not suit a network of output ``stride`` (None when it does)."""
    if tile % stride == 0:
        return None
    lower, upper = max(stride, tile // stride * stride), (tile // stride + 1) * stride
    sizes = " or ".join(str(v) for v in sorted({lower, upper}))
    return (
        f"tile size {tile} px is not a multiple of the model's output stride {stride}; use {sizes}"
    )


def checked_tiling(tile: int, overlap: float | int, stride: int) -> int:
    """The overlap in pixels of ``tile``-px tiles for a network of output ``stride``.

    Raises:
        TilingError: a tile that is not a multiple of the stride or larger than :data:`MAX_TILE`,
            or an overlap beyond half the tile (a stride so small that the work grows
            quadratically: 511 px of 512 is 262,144 times the tiles).
    """
    problem = stride_problem(tile, stride)
    if problem is not None:
        raise TilingError(problem)
    if tile > MAX_TILE:
        raise TilingError(
            f"tile size {tile} px is larger than the {MAX_TILE} px a forward pass can hold in "
            "memory; expected at most that, e.g. 512 or 1024"
        )
    px = resolve_overlap(tile, overlap)
    if px > tile // 2:
        raise TilingError(
            f"overlap of {px} px leaves a stride of {tile - px} px on {tile}-px tiles, "
            f"{(tile / (tile - px)) ** 2:,.0f}x the tiles of no overlap; expected at most half "
            f"the tile ({tile // 2} px or 0.5)"
        )
    return px


def pad_reflect(data: np.ndarray, before: tuple[int, int], after: tuple[int, int]) -> np.ndarray:
    """Pad ``(bands, rows, cols)`` by reflection (edge replication where an axis is 1 px)."""
    widths = ((0, 0), (before[0], after[0]), (before[1], after[1]))
    if min(data.shape[1:]) > 1:
        return np.pad(data, widths, mode="reflect")
    return np.pad(data, widths, mode="edge")


def read_tile(
    reader: RasterReader,
    window: Window,
    norm: Normalization,
    adapt: Callable[[np.ndarray], np.ndarray] | None = None,
    fill: Fill = "mean",
) -> tuple[np.ndarray, np.ndarray] | None:
    """Read, pad and normalise one tile (``adapt``: applied to the raw values first, e.g. a
    rescaling; ``fill``: see :class:`Tiling`).

    Returns:
        ``(x, valid)``: ``x`` is ``(bands, rows, cols)`` float32 (with ``fill="mean"``, invalid
        pixels set to 0, the normalised mean), ``valid`` is ``(rows, cols)`` bool; or None when
        the tile holds no valid pixel (the model is not run on it).
    """
    row0, col0 = int(window.row_off), int(window.col_off)
    rows, cols = int(window.height), int(window.width)
    clipped = clip_window(window, reader.height, reader.width)
    r0, c0 = int(clipped.row_off), int(clipped.col_off)
    r1, c1 = r0 + int(clipped.height), c0 + int(clipped.width)
    inner = reader.read(clipped)
    if not inner.valid.any():
        return None
    before, after = (r0 - row0, c0 - col0), (row0 + rows - r1, col0 + cols - c1)
    data = inner.data
    if fill == "nodata" and (any(before) or any(after)):
        value = 0 if reader.nodata is None else reader.nodata
        widths = ((0, 0), (before[0], after[0]), (before[1], after[1]))
        data = np.pad(data, widths, constant_values=value)
    x = norm.apply(data if adapt is None else adapt(data))
    if fill == "mean":
        x[:, ~inner.valid] = 0.0
    np.nan_to_num(
        x, copy=False, nan=0.0, posinf=0.0, neginf=0.0
    )  # never let one value swamp a tile
    if any(before) or any(after):
        if fill == "mean":
            x = pad_reflect(x, before, after)
        valid = np.zeros((rows, cols), dtype=bool)
        valid[before[0] : before[0] + r1 - r0, before[1] : before[1] + c1 - c0] = inner.valid
        return x, valid
    return x, inner.valid


def _valid(rows: FinishedRows) -> np.ndarray:
    """Pixels with valid input that some tile covered."""
    return rows.valid & (rows.weight > 0)


def _normalised(probs: np.ndarray, weight: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Blended probabilities ``(classes, rows, cols)`` from weighted sums and weight sums."""
    return probs / np.where(valid, weight, 1.0)[None]


def argmax_classes(probs: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = argmax(probs, axis=0)`` (first maximum on ties), one class plane at a time:
    contiguous passes instead of numpy's strided reduction over the first axis.

    Args:
        probs: ``(classes, rows, cols)`` scores (probabilities or weighted sums).
        out: ``(rows, cols)`` integer array that receives the class ids.
    """
    best = probs[0].copy()
    out[...] = 0
    for c in range(1, probs.shape[0]):
        better = probs[c] > best
        out[better] = c
        np.maximum(best, probs[c], out=best)


_argmax0 = argmax_classes  # the former private name


class Finished:
    """Output arrays of finished rows: class mask, confidence and probabilities (uint8).

    Computed in chunks of rows, so a wide row band needs no full-size float or int64 temporaries.
    """

    CHUNK_PIXELS = 1 << 20  # pixels per chunk of the computation

    def __init__(
        self, rows: FinishedRows, *, probabilities: bool = False, confidence: bool = False
    ) -> None:
        self.window = rows.window
        classes_n, n, width = rows.probs.shape
        self.valid = _valid(rows)
        self.classes = np.empty((1, n, width), dtype=np.uint8)
        self.probabilities = np.zeros((classes_n, n, width), np.uint8) if probabilities else None
        self.confidence = np.zeros((1, n, width), np.uint8) if confidence else None
        step = max(1, self.CHUNK_PIXELS // max(width, 1))
        for a in range(0, n, step):
            b = min(n, a + step)
            probs, valid = rows.probs[:, a:b], self.valid[a:b]
            cls = self.classes[0, a:b]
            argmax_classes(probs, cls)  # weighted sums share the argmax of the blend
            cls[~valid] = MASK_NODATA
            if probabilities or confidence:
                norm = _normalised(probs, rows.weight[a:b], valid)
                if self.confidence is not None:
                    c = self.confidence[0, a:b]
                    c[...] = np.maximum(np.rint(norm.max(axis=0) * 255), 1)  # 0 is nodata
                    c[~valid] = 0
                if self.probabilities is not None:
                    p = self.probabilities[:, a:b]
                    p[...] = np.rint(np.multiply(norm, 255, out=norm), out=norm)
                    p[:, ~valid] = 0


def finalize(
    rows: FinishedRows, *, probabilities: bool = False, confidence: bool = False
) -> Finished:
    """Class ids (255 where invalid), and optionally uint8 probabilities and confidence."""
    return Finished(rows, probabilities=probabilities, confidence=confidence)


def geoarray_of(rows: FinishedRows, reader: RasterReader) -> GeoArray:
    """Normalised probabilities of finished rows, with their georeferencing."""
    valid = _valid(rows)
    return GeoArray(
        _normalised(rows.probs, rows.weight, valid),
        valid,
        tile_transform(rows.window, reader.transform),
        reader.crs,
        rows.window,
    )
