"""Tile plans over a raster grid: pure arithmetic on rasterio ``Window`` values, no I/O.

Axis order is always ``rows, cols`` (``height, width``). A plan lays tiles of one fixed size over a
raster so that every pixel is covered and consecutive tiles overlap by at least the asked overlap.
With ``edge="shift"`` (the default) the last tile of each axis is moved back inside the raster, so
every tile lies fully inside it and has the full size; only a raster smaller than a tile gets a
tile that reaches past its edge (the reader pads it). With ``edge="pad"`` tiles keep a regular
stride from the first row (column) and the last ones reach past the raster's far edge; with
``edge="pad-start"`` the regular stride ends on the last row (column) and the first tiles reach
before row (column) 0. An edge mode may be given per axis, ``(rows, cols)``: QGIS Deepness lays
``("pad-start", "pad")``, its grid padded at the top and the right.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from affine import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geoseg.errors import TilingError

__all__ = [
    "Tile",
    "TilePlan",
    "axis_starts",
    "clip_window",
    "plan_tiles",
    "resolve_overlap",
    "tile_transform",
]

EdgeMode = Literal["shift", "pad", "pad-start"]
EDGE_MODES: tuple[str, ...] = ("shift", "pad", "pad-start")


@dataclass(frozen=True)
class Tile:
    """One tile of a plan.

    Attributes:
        index: position in raster order (row-major) within the plan.
        grid_row: index of the tile's row of tiles.
        grid_col: index of the tile's column of tiles.
        window: the tile's window in raster pixels; may reach past the raster edge.
    """

    index: int
    grid_row: int
    grid_col: int
    window: Window


def resolve_overlap(tile_size: int, overlap: float | int) -> int:
    """Overlap in pixels from pixels (an int >= 1 or 0) or a fraction of the tile
    (a float in [0, 1)).

    Raises:
        TilingError: when the overlap is negative or leaves no stride.
    """
    if isinstance(overlap, bool):
        raise TilingError(f"overlap must be pixels (int) or a fraction (float), got {overlap!r}")
    if isinstance(overlap, float) and 0 <= overlap < 1:
        pixels = min(round(tile_size * overlap), max(tile_size - 1, 0))
    elif float(overlap).is_integer():
        pixels = int(overlap)
    else:
        raise TilingError(
            f"overlap={overlap!r} is neither whole pixels nor a fraction in [0, 1); "
            f"use e.g. {tile_size // 4} (pixels) or 0.25 (a quarter of the tile)"
        )
    if not 0 <= pixels < tile_size:
        raise TilingError(
            f"overlap of {pixels} px does not fit a tile of {tile_size} px; "
            f"expected 0 <= overlap < tile size, e.g. {tile_size // 4}"
        )
    return pixels


def axis_starts(size: int, tile: int, stride: int, edge: EdgeMode = "shift") -> tuple[int, ...]:
    """Start offsets of the tiles along one axis.

    Args:
        size: raster extent along the axis, in pixels (>= 1).
        tile: tile extent along the axis (>= 1).
        stride: distance between consecutive starts (1 <= stride <= tile).
        edge: ``"shift"`` moves the last tile back inside the raster; ``"pad"`` keeps the stride
            from 0, the last tile reaching past ``size``; ``"pad-start"`` keeps the stride back
            from ``size``, the first tile reaching before 0.

    Returns:
        Increasing start offsets; the tiles ``[s, s + tile)`` cover ``[0, size)``.
    """
    if size < 1 or tile < 1 or not 1 <= stride <= tile:
        raise TilingError(
            f"need size >= 1, tile >= 1, 1 <= stride <= tile; got {size=}, {tile=}, {stride=}"
        )
    if edge not in EDGE_MODES:
        raise TilingError(f"edge must be one of {', '.join(EDGE_MODES)}, got {edge!r}")
    if size <= tile:
        return (size - tile,) if edge == "pad-start" else (0,)
    count = math.ceil((size - tile) / stride) + 1
    starts = [i * stride for i in range(count)]
    if edge == "shift":
        starts[-1] = size - tile
    elif edge == "pad-start":
        starts = [size - tile - s for s in reversed(starts)]
    return tuple(starts)


@dataclass(frozen=True)
class TilePlan:
    """Tiles of ``tile_size`` laid over a ``height x width`` raster, in raster (row-major) order.

    Attributes:
        height: raster rows.
        width: raster columns.
        tile_size: tile extent in pixels (square tiles).
        overlap: asked overlap in pixels; actual overlaps are at least this.
        row_starts: start row of each row of tiles.
        col_starts: start column of each column of tiles.
    """

    height: int
    width: int
    tile_size: int
    overlap: int
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]

    @property
    def stride(self) -> int:
        """Regular distance between tile starts, ``tile_size - overlap``."""
        return self.tile_size - self.overlap

    @property
    def shape(self) -> tuple[int, int]:
        """Number of tiles as ``(rows, cols)``."""
        return len(self.row_starts), len(self.col_starts)

    def __len__(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def __iter__(self) -> Iterator[Tile]:
        return self.tiles()

    def tile(self, grid_row: int, grid_col: int) -> Tile:
        """The tile at one grid position."""
        window = Window(
            self.col_starts[grid_col], self.row_starts[grid_row], self.tile_size, self.tile_size
        )
        return Tile(grid_row * len(self.col_starts) + grid_col, grid_row, grid_col, window)

    def tiles(self, block: Window | None = None) -> Iterator[Tile]:
        """Tiles in raster order; with ``block``, only those that intersect that window."""
        rows = range(len(self.row_starts))
        cols = range(len(self.col_starts))
        if block is not None:
            rows = self._intersecting(self.row_starts, int(block.row_off), int(block.height))
            cols = self._intersecting(self.col_starts, int(block.col_off), int(block.width))
        for r in rows:
            for c in cols:
                yield self.tile(r, c)

    def _intersecting(self, starts: tuple[int, ...], off: int, length: int) -> range:
        first = next((i for i, s in enumerate(starts) if s + self.tile_size > off), len(starts))
        last = next((i for i in range(len(starts) - 1, -1, -1) if starts[i] < off + length), -1)
        return range(first, last + 1)

    def rows_final_after(self, grid_row: int) -> int:
        """Rows ``[0, n)`` that no tile after grid row ``grid_row`` touches (in raster order)."""
        if grid_row + 1 >= len(self.row_starts):
            return self.height
        return self.row_starts[grid_row + 1]


def plan_tiles(
    height: int,
    width: int,
    tile_size: int,
    overlap: float | int = 0.25,
    *,
    edge: EdgeMode | tuple[EdgeMode, EdgeMode] = "shift",
) -> TilePlan:
    """Lay square tiles over a ``height x width`` raster.

    Args:
        height: raster rows (>= 1).
        width: raster columns (>= 1).
        tile_size: tile extent in pixels (>= 1).
        overlap: pixels (int) or a fraction of the tile (float in [0, 1)).
        edge: ``"shift"`` (tiles stay inside the raster), ``"pad"`` or ``"pad-start"`` (regular
            stride, padded past the far or the near edge; see :func:`axis_starts`), or one mode
            per axis as ``(rows, cols)``.

    Returns:
        The plan; iterate it for :class:`Tile` values in raster order.

    Raises:
        TilingError: for a non-positive size or an overlap that leaves no stride.
    """
    if height < 1 or width < 1:
        raise TilingError(f"raster must have at least 1 row and 1 column, got {height} x {width}")
    if tile_size < 1:
        raise TilingError(f"tile_size must be a positive number of pixels, got {tile_size}")
    px = resolve_overlap(tile_size, overlap)
    stride = tile_size - px
    row_edge, col_edge = (edge, edge) if isinstance(edge, str) else edge
    return TilePlan(
        height=height,
        width=width,
        tile_size=tile_size,
        overlap=px,
        row_starts=axis_starts(height, tile_size, stride, row_edge),
        col_starts=axis_starts(width, tile_size, stride, col_edge),
    )


def clip_window(window: Window, height: int, width: int, *, grow: int = 0) -> Window:
    """The part of ``window`` (grown by ``grow`` pixels on every side) inside a ``height x width``
    raster.

    Returns a window of zero height or width when they do not overlap. Offsets and sizes are ints.
    """
    row0, col0 = int(window.row_off) - grow, int(window.col_off) - grow
    r0, r1 = max(row0, 0), min(row0 + int(window.height) + 2 * grow, height)
    c0, c1 = max(col0, 0), min(col0 + int(window.width) + 2 * grow, width)
    return Window(c0, r0, max(c1 - c0, 0), max(r1 - r0, 0))


def tile_transform(window: Window, transform: Affine) -> Affine:
    """The affine transform of a window's pixel grid (rotations and shears kept)."""
    return window_transform(window, transform)
