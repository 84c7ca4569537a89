"""Building footprint regularization: right angles along the footprint's dominant orientation."""

from __future__ import annotations

import math

import numpy as np
import shapely

__all__ = ["dominant_angle", "regularize", "regularize_ring"]


def dominant_angle(xy: np.ndarray) -> float:
    """Length-weighted edge direction of a closed ring, modulo 90 degrees (radians)."""
    d = np.diff(xy, axis=0)
    length = np.hypot(d[:, 0], d[:, 1])
    theta = np.arctan2(d[:, 1], d[:, 0])
    # directions 90 degrees apart are the same orientation: average on the 4x circle
    s, c = (length * np.sin(4 * theta)).sum(), (length * np.cos(4 * theta)).sum()
    return math.atan2(s, c) / 4


def regularize_ring(xy: np.ndarray, angle: float) -> np.ndarray | None:
    """A rectilinear ring (in the frame rotated by ``angle``) fitted to a closed ring's edges.

    Each edge is snapped to the nearer of the two axes; runs of edges on the same axis become
    one line through their length-weighted middle; consecutive lines meet at right angles.
    """
    cos, sin = math.cos(angle), math.sin(angle)
    u = xy[:, 0] * cos + xy[:, 1] * sin  # along the dominant direction
    v = -xy[:, 0] * sin + xy[:, 1] * cos
    du, dv = np.diff(u), np.diff(v)
    length = np.hypot(du, dv)
    ok = length > 0
    if ok.sum() < 4:
        return None
    horizontal = np.abs(du) >= np.abs(dv)  # runs along u: constant v
    mid_u, mid_v = (u[:-1] + u[1:]) / 2, (v[:-1] + v[1:]) / 2
    idx = np.flatnonzero(ok)
    # rotate so that a run does not wrap around the ring's start
    starts = [i for k, i in enumerate(idx) if horizontal[i] != horizontal[idx[k - 1]]]
    if len(starts) < 4:
        return None
    first = int(np.searchsorted(idx, starts[0]))
    order = np.concatenate([idx[first:], idx[:first]])
    lines: list[tuple[bool, float]] = []
    group: list[int] = []
    for i in [*order, -1]:
        if group and (i == -1 or horizontal[i] != horizontal[group[0]]):
            g = np.asarray(group)
            w = length[g]
            value = (
                float((mid_v[g] * w).sum() / w.sum())
                if horizontal[g[0]]
                else float((mid_u[g] * w).sum() / w.sum())
            )
            lines.append((bool(horizontal[g[0]]), value))
            group = []
        if i != -1:
            group.append(int(i))
    if len(lines) < 4 or len(lines) % 2:
        return None
    pts = []
    for k, (horiz, value) in enumerate(lines):
        nxt = lines[(k + 1) % len(lines)][1]
        pu, pv = (nxt, value) if horiz else (value, nxt)
        pts.append((pu * cos - pv * sin, pu * sin + pv * cos))
    pts.append(pts[0])
    return np.asarray(pts)


def _regularize_polygon(poly: shapely.Polygon, tolerance: float) -> shapely.Polygon:
    simple = shapely.simplify(poly, tolerance, preserve_topology=True)
    if simple.is_empty or simple.geom_type != "Polygon":
        return poly
    angle = dominant_angle(np.asarray(simple.exterior.coords))
    shell = regularize_ring(np.asarray(simple.exterior.coords), angle)
    if shell is None:
        return shapely.minimum_rotated_rectangle(poly) if poly.area > 0 else poly
    holes = [
        h
        for h in (regularize_ring(np.asarray(r.coords), angle) for r in simple.interiors)
        if h is not None
    ]
    out = shapely.Polygon(shell, holes)
    if not out.is_valid:
        out = shapely.make_valid(out)
        parts = [p for p in shapely.get_parts(out) if p.geom_type == "Polygon"]
        if not parts:
            return poly
        out = max(parts, key=lambda p: p.area)
    # a fit that changes the footprint's area by more than a third is not a regularization
    if not (0.67 <= out.area / poly.area <= 1.5):
        return poly
    return out


def regularize(geom: shapely.Geometry, tolerance: float) -> shapely.Geometry:
    """Square up a building footprint (polygon or multipolygon) at ``tolerance`` map units."""
    if geom.geom_type == "MultiPolygon":
        parts = [_regularize_polygon(p, tolerance) for p in shapely.get_parts(geom)]
        out = shapely.multipolygons(parts)
        # parts that touched at a corner (8-connected regions) may overlap once squared up
        return out if out.is_valid else shapely.union_all(parts)
    return _regularize_polygon(geom, tolerance)
