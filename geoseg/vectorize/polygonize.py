"""Polygonize one block of a class mask, in pixel coordinates: pure functions over numpy arrays.

Polygons are built in the raster's pixel space (integer corner coordinates, exact in floating
point), so pieces of one region cut by a block seam share their seam edges exactly and merge
without slivers; they move to map coordinates only when finished.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from rasterio import features

__all__ = ["Pieces", "polygonize_block", "sieve_block"]


@dataclass
class Pieces:
    """Polygons of one block (or merged across blocks), in pixel coordinates.

    Attributes:
        geoms: shapely polygons (multipolygons with 8-connectivity).
        values: class id of each polygon.
        pixels: pixel count of each polygon (its exact area in pixels, before any simplification).
        conf_sum: sum of the confidence raster over each polygon's pixels (None without one).
    """

    geoms: np.ndarray
    values: np.ndarray
    pixels: np.ndarray
    conf_sum: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.geoms)

    def take(self, index: np.ndarray) -> Pieces:
        return Pieces(
            self.geoms[index],
            self.values[index],
            self.pixels[index],
            None if self.conf_sum is None else self.conf_sum[index],
        )

    @staticmethod
    def empty(with_confidence: bool = False) -> Pieces:
        return Pieces(
            np.empty(0, dtype=object),
            np.empty(0, np.int32),
            np.empty(0, np.int64),
            np.empty(0, np.float64) if with_confidence else None,
        )


Edges = dict[str, np.ndarray]


def _polygons(
    data: np.ndarray,
    keep: np.ndarray,
    connectivity: int,
    row_off: int,
    col_off: int,
    weights: np.ndarray | None,
    dense: tuple[bool, bool, bool, bool],
    every_corner: bool = False,
) -> tuple[Pieces, Edges]:
    """The regions of a block as polygons (numba tracer), and the polygon index on its edges."""
    from geoseg.vectorize._trace import trace_block

    t = trace_block(
        data,
        keep,
        connectivity=connectivity,
        weights=weights,
        dense=dense,
        every_corner=every_corner,
    )
    ring_end, region = t["ring_end"], t["ring_region"]
    if not len(region):
        return Pieces.empty(weights is not None), {
            k: np.full_like(t[k], -1) for k in ("top", "bottom", "left", "right")
        }
    x, y = t["x"], t["y"]
    # shoelace per ring: the region is on the right of its rings, so exteriors come out positive
    cross = (x[:-1] * y[1:] - x[1:] * y[:-1]).astype(np.float64)
    cross[ring_end[1:-1] - 1] = 0  # the step from one ring to the next is no edge
    signed = np.add.reduceat(cross, ring_end[:-1])
    order = np.lexsort((signed <= 0, region))  # by region, its exterior first
    lengths = np.diff(ring_end)[order]
    starts = ring_end[:-1][order]
    index = np.repeat(starts - np.cumsum(np.concatenate(([0], lengths[:-1]))), lengths) + np.arange(
        lengths.sum()
    )
    coords = np.column_stack([x[index] + float(col_off), y[index] + float(row_off)])
    ring_offsets = np.concatenate(([0], np.cumsum(lengths)))
    sorted_region = region[order]
    poly_offsets = np.concatenate(([0], np.flatnonzero(np.diff(sorted_region)) + 1, [len(order)]))
    geoms = shapely.from_ragged_array(
        shapely.GeometryType.POLYGON, coords, (ring_offsets, poly_offsets)
    )
    regions = sorted_region[poly_offsets[:-1]]
    sums = None if weights is None else t["weight_sum"][regions]
    pieces = Pieces(geoms, t["value"][regions].astype(np.int32), t["pixels"][regions], sums)
    polygon_of = np.full(len(t["value"]) + 1, -1, np.int64)  # region -> polygon; index -1 stays -1
    polygon_of[regions] = np.arange(len(regions))
    return pieces, {k: polygon_of[t[k]] for k in ("top", "bottom", "left", "right")}


def polygonize_block(
    data: np.ndarray,
    *,
    row_off: int,
    col_off: int,
    connectivity: int = 4,
    nodata: int | None = None,
    exclude: frozenset[int] = frozenset(),
    simplify_px: float | None = None,
    confidence: np.ndarray | None = None,
    seams: tuple[bool, bool, bool, bool] = (False, False, False, False),
) -> tuple[Pieces, Edges]:
    """Polygons of the classes in ``data`` (a block at ``row_off, col_off`` of the raster).

    Args:
        data: ``(rows, cols)`` integer class ids.
        row_off, col_off: the block's position, so coordinates are raster pixel coordinates.
        connectivity: 4 (edge neighbours) or 8 (corners too).
        nodata: value that produces no polygon.
        exclude: class ids that produce no polygon.
        simplify_px: coverage-preserving simplification tolerance in pixels; the block's outer
            edges stay fixed, so pieces still meet exactly across block seams.
        confidence: ``(rows, cols)`` confidence on the same block, summed per polygon.
        seams: which block edges (top, bottom, left, right) are seams inside the raster.

    Returns:
        The pieces, and for each block edge the piece index of every pixel on it (-1: none).
    """
    keep = np.ones(data.shape, bool)
    if nodata is not None:
        keep &= data != nodata
    for value in exclude:
        keep &= data != value
    # to simplify, the whole block (nodata and excluded classes too) is one coverage
    pieces, edges = _polygons(
        data,
        np.ones(data.shape, bool) if simplify_px else keep,
        connectivity,
        row_off,
        col_off,
        confidence,
        seams,
        every_corner=bool(simplify_px),
    )  # a coverage to simplify shares all its vertices
    geoms = pieces.geoms
    if connectivity == 8 and len(geoms):
        bad = ~shapely.is_valid(geoms)  # rings of 8-connected regions touch themselves at corners
        geoms[bad] = shapely.make_valid(geoms[bad])
        parts, index = shapely.get_parts(geoms, return_index=True)
        pieces.geoms = shapely.multipolygons(
            parts, indices=index
        )  # one geometry type for the layer
    if simplify_px and len(pieces):
        pieces.geoms = shapely.coverage_simplify(pieces.geoms, simplify_px, simplify_boundary=False)
        wanted = np.ones(len(pieces), bool)
        if nodata is not None:
            wanted &= pieces.values != nodata
        for value in exclude:
            wanted &= pieces.values != value
        sel = np.flatnonzero(wanted)
        renumber = np.full(len(pieces) + 1, -1, np.int64)
        renumber[sel] = np.arange(len(sel))
        return pieces.take(sel), {k: renumber[v] for k, v in edges.items()}
    return pieces, edges


def sieve_block(
    data: np.ndarray, size: int, *, connectivity: int = 4, nodata: int | None = None
) -> np.ndarray:
    """GDAL's sieve on a block read with a halo: regions under ``size`` pixels join their largest
    neighbour. Nodata pixels neither move nor absorb."""
    mask = None if nodata is None else data != nodata
    dtype = data.dtype if data.dtype in (np.uint8, np.int16, np.uint16, np.int32) else np.int32
    out = features.sieve(data.astype(dtype, copy=False), size, mask=mask, connectivity=connectivity)
    if nodata is not None and mask is not None:
        out[~mask] = nodata
    return np.asarray(out, dtype=data.dtype)
