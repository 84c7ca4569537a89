"""Finished polygons: pixel -> map coordinates, clean-up, and attributes in true metres."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geoseg.vectorize.polygonize import Pieces
from geoseg.vectorize.regularize import regularize
from geoseg.vectorize.source import MaskSource, class_info

__all__ = ["Cleanup", "FeatureBatch", "Metric", "finish", "metric_for", "to_map"]


@dataclass(frozen=True)
class Cleanup:
    """What to do to finished polygons (areas in square metres)."""

    min_area: float | None = None
    fill_holes: float | None = None
    regularize: frozenset[int] = frozenset()  # class ids whose polygons are squared up (buildings)
    regularize_px: float = 1.5  # outline tolerance of the regularization, in pixels


@dataclass
class FeatureBatch:
    """Polygons in map coordinates with their attributes, ready for a writer."""

    geoms: np.ndarray
    class_id: np.ndarray
    class_name: list[str]
    area_m2: np.ndarray
    perimeter_m: np.ndarray
    mean_confidence: np.ndarray | None = None
    wkb: np.ndarray | None = None  # the geometries as WKB, once packed for another process

    def __len__(self) -> int:
        return len(self.geoms) if self.wkb is None else len(self.wkb)

    def packed(self) -> FeatureBatch:
        """The batch with WKB instead of geometry objects: cheaper to send between processes."""
        if self.wkb is None:
            self.wkb = shapely.to_wkb(self.geoms)
            self.geoms = np.empty(0, dtype=object)
        return self

    def to_wkb(self) -> np.ndarray:
        return self.wkb if self.wkb is not None else shapely.to_wkb(self.geoms)


def to_map(geoms: np.ndarray, transform: Affine) -> np.ndarray:
    """Apply the raster's affine transform to pixel-space geometries (vectorised)."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    return shapely.transform(geoms, apply)


class Metric:
    """Areas and lengths in metres for any CRS: geodesic on geographic CRSs, unit-scaled
    otherwise."""

    def __init__(self, crs: CRS | None) -> None:
        self.geod = None
        self.factor = 1.0
        if crs is not None:
            from pyproj import CRS as ProjCRS

            pcrs = ProjCRS.from_user_input(crs.to_wkt())
            if pcrs.is_geographic:
                self.geod = pcrs.get_geod()
            else:
                unit = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else 1.0
                self.factor = float(unit or 1.0)

    def area_perimeter(self, geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.geod is None:
            return shapely.area(geoms) * self.factor**2, shapely.length(geoms) * self.factor
        out = np.array(
            [self.geod.geometry_area_perimeter(g) for g in geoms], dtype=np.float64
        ).reshape(-1, 2)
        return np.abs(out[:, 0]), out[:, 1]

    def ring_area(self, ring: shapely.LinearRing) -> float:
        if self.geod is None:
            return float(shapely.Polygon(ring).area) * self.factor**2
        x, y = shapely.get_coordinates(ring).T
        return abs(float(self.geod.polygon_area_perimeter(x, y)[0]))


@functools.lru_cache(maxsize=8)
def metric_for(crs: CRS | None) -> Metric:
    """One :class:`Metric` per CRS and process (building it parses the CRS)."""
    return Metric(crs)


def _fill_holes(geoms: np.ndarray, limit: float, metric: Metric) -> np.ndarray:
    """Drop interior rings smaller than ``limit`` m²."""
    out = geoms.copy()
    for i in np.flatnonzero(shapely.get_num_interior_rings(geoms) > 0 if len(geoms) else []):
        out[i] = _fill_one(geoms[i], limit, metric)
    # multipolygons report 0 interior rings: handle their parts
    for i in np.flatnonzero(shapely.get_type_id(geoms) == shapely.GeometryType.MULTIPOLYGON):
        out[i] = shapely.multipolygons(
            [_fill_one(p, limit, metric) for p in shapely.get_parts(geoms[i])]
        )
    return out


def _fill_one(poly: shapely.Polygon, limit: float, metric: Metric) -> shapely.Polygon:
    keep = [r for r in poly.interiors if metric.ring_area(r) >= limit]
    return shapely.Polygon(poly.exterior, keep) if len(keep) != len(poly.interiors) else poly


def _without_overlaps(
    geoms: np.ndarray,
    changed: np.ndarray,
    shapes: list[shapely.Geometry],
    cell: shapely.Geometry | None,
    others: np.ndarray | None = None,
) -> np.ndarray:
    """Put regularized ``shapes`` in place of ``geoms[changed]`` without overlapping any other
    polygon.

    A squared-up footprint may grow into space no polygon of its batch holds, never into a
    neighbour: each new shape loses what the current shapes of its neighbours cover. Polygons of
    other batches are out of sight, so growth stays inside ``cell`` (the block the batch comes
    from; None: no growth at all, for polygons merged across blocks), and out of ``others`` (the
    block's polygons finished elsewhere). The output stays a coverage.
    """
    out = geoms.copy()
    if cell is not None and others is not None and len(others):
        cell = shapely.difference(cell, shapely.union_all(others))
    limits = [shapely.union(geoms[i], cell) if cell is not None else geoms[i] for i in changed]
    shapes = [shapely.intersection(s, lim) for s, lim in zip(shapes, limits, strict=True)]
    if not len(changed):
        return out
    tree = shapely.STRtree(geoms)
    done: list[int] = []  # grown shapes are not in the tree: check them directly
    for i, shape in zip(changed, shapes, strict=True):
        found = {int(j) for j in tree.query(shape, predicate="intersects")}
        found |= {k for k in done if shapely.intersects(out[k], shape)}
        near = sorted(found - {int(i)})
        if near:
            shape = shapely.difference(shape, shapely.union_all(out[near]))
            if shape.geom_type not in ("Polygon", "MultiPolygon"):
                shape = shapely.union_all(
                    [p for p in shapely.get_parts(shape) if p.geom_type == "Polygon"]
                )
            if shape.is_empty or not shape.is_valid:
                shape = geoms[i]
        out[i] = _same_type(shape, geoms[i])
        done.append(int(i))
    return out


def _same_type(shape: shapely.Geometry, traced: shapely.Geometry) -> shapely.Geometry:
    """``shape`` as the geometry type of the ``traced`` polygon it replaces (the layer's type).

    A squared-up polygon that its neighbours cut into pieces keeps its traced outline (one
    Polygon cannot hold the pieces; dropping some would open a gap in the coverage); a
    multipolygon squared into one piece becomes a MultiPolygon of one part.
    """
    if shapely.get_type_id(traced) == shapely.GeometryType.MULTIPOLYGON:
        if shape.geom_type == "Polygon":
            return shapely.multipolygons([shape])
        return shape if shape.geom_type == "MultiPolygon" else traced
    return shape if shape.geom_type == "Polygon" else traced


def finish(
    pieces: Pieces,
    source: MaskSource,
    cleanup: Cleanup,
    metric: Metric,
    window: Window | None = None,
    others: Pieces | None = None,
) -> FeatureBatch | None:
    """Map coordinates, clean-up and attributes for finished pieces (None when nothing is left).

    ``window``: the block every piece lies in (regularized footprints may grow inside it, but not
    into ``others``, the block's pieces finished later); None for pieces merged across blocks."""
    if not len(pieces):
        return None
    geoms = to_map(pieces.geoms, source.transform)
    if cleanup.regularize:
        px = source.pixel_size * cleanup.regularize_px
        squared = np.flatnonzero(np.isin(pieces.values, list(cleanup.regularize)))
        cell = None
        if window is not None:
            r0, c0 = int(window.row_off), int(window.col_off)
            r1, c1 = r0 + int(window.height), c0 + int(window.width)
            cell = shapely.Polygon(
                [source.transform * (c, r) for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1))]
            )
        rest = (
            to_map(others.geoms, source.transform) if others is not None and len(squared) else None
        )
        geoms = _without_overlaps(
            geoms, squared, [regularize(geoms[i], px) for i in squared], cell, rest
        )
    if cleanup.fill_holes:
        geoms = _fill_holes(geoms, cleanup.fill_holes, metric)
    area, perimeter = metric.area_perimeter(geoms)
    keep = np.ones(len(geoms), bool)
    if cleanup.min_area:
        keep &= area >= cleanup.min_area
    keep &= ~shapely.is_empty(geoms)
    if not keep.any():
        return None
    sel = np.flatnonzero(keep)
    values = pieces.values[sel]
    names = {int(v): class_info(source.classes, int(v)).name for v in np.unique(values)}
    mean_conf = None
    if pieces.conf_sum is not None:
        mean_conf = pieces.conf_sum[sel] / np.maximum(pieces.pixels[sel], 1)
    return FeatureBatch(
        geoms[sel], values, [names[int(v)] for v in values], area[sel], perimeter[sel], mean_conf
    )
