"""What the page shows, computed from the written outputs: class areas, a confidence picture, a
colour-coded mask, a legend and a map of where the result lies. No web framework here.

Rasters are opened through :func:`geoseg.io.open.open_raster` and read block by block or as a
small overview, so memory stays bounded whatever the raster's size.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.enums import Resampling

from geoseg.classes import MASK_NODATA, ClassTable

__all__ = [
    "ClassArea",
    "Footprint",
    "class_areas",
    "confidence_png",
    "confidence_scale_html",
    "footprint_of",
    "legend_html",
    "map_svg",
    "mask_png",
]

PREVIEW = 768  # longest side of the pictures, in pixels
CONFIDENCE_COLORMAP = "viridis"  # the confidence picture and its colour bar


@dataclass(frozen=True)
class ClassArea:
    """Area of one class: pixels, square metres (None without a CRS) and share of valid pixels
    (0-1)."""

    id: int
    name: str
    color: tuple[int, int, int]
    pixels: int
    m2: float | None
    share: float

    @property
    def ha(self) -> float | None:
        return None if self.m2 is None else self.m2 / 10_000


def _row_areas(ds: Any, row0: int, rows: int) -> np.ndarray | float | None:
    """Area of one pixel in m² for rows ``row0..row0+rows`` (an array for geographic CRSs)."""
    crs, t = ds.crs, ds.transform
    if crs is None:
        return None
    if crs.is_geographic:
        from pyproj import Geod

        geod = Geod(ellps="WGS84")
        out = np.empty(rows)
        for r in range(rows):
            xs, ys = zip(
                *(t * (c, row0 + r + dr) for c, dr in ((0, 0), (1, 0), (1, 1), (0, 1))), strict=True
            )
            out[r] = abs(geod.polygon_area_perimeter(xs, ys)[0])
        return out[:, None]
    unit = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    return abs(t.a * t.e - t.b * t.d) * unit * unit


def class_areas(mask: str | os.PathLike[str], classes: ClassTable) -> list[ClassArea]:
    """Pixels, true area and share of every class of ``classes`` in a class mask, block by block.

    Areas are geodesic for geographic CRSs and scaled to metres for projected ones; ``m2`` is
    None for a mask without a CRS. Nodata (255) counts for nothing.
    """
    from geoseg.io.open import open_raster

    counts = np.zeros(256, np.int64)
    areas = np.zeros(256, np.float64)
    known = True
    with open_raster(mask) as ds:
        for _, window in ds.block_windows(1):
            ids = ds.read(1, window=window)
            counts += np.bincount(ids.ravel(), minlength=256)[:256]
            per_pixel = _row_areas(ds, int(window.row_off), int(window.height))
            if per_pixel is None:
                known = False
            else:
                weights = np.broadcast_to(per_pixel, ids.shape).ravel()
                areas += np.bincount(ids.ravel(), weights=weights, minlength=256)[:256]
    valid = counts[:MASK_NODATA].sum()
    return [
        ClassArea(
            c.id,
            c.name,
            c.color,
            int(counts[c.id]),
            float(areas[c.id]) if known else None,
            float(counts[c.id] / valid) if valid else 0.0,
        )
        for c in classes
    ]


def _png(rgba: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return buf.getvalue()


def _preview_shape(height: int, width: int, size: int) -> tuple[int, int]:
    scale = max(height, width) / size
    return max(1, round(height / max(scale, 1))), max(1, round(width / max(scale, 1)))


def mask_png(mask: str | os.PathLike[str], classes: ClassTable, *, size: int = PREVIEW) -> bytes:
    """The class mask as a PNG in the class colours, nodata transparent, at most ``size`` px."""
    from geoseg.io.open import open_raster

    with open_raster(mask) as ds:
        ids = ds.read(
            1, out_shape=_preview_shape(ds.height, ds.width, size), resampling=Resampling.nearest
        )
    lut = np.zeros((256, 4), np.uint8)
    for c in classes:
        lut[c.id] = (*c.color, 255)
    return _png(lut[ids])


def confidence_png(
    confidence: str | os.PathLike[str], mask: str | os.PathLike[str], *, size: int = PREVIEW
) -> bytes:
    """The winning class's probability as a PNG: dark purple (uncertain) to yellow (sure), nodata
    transparent."""
    from matplotlib import colormaps

    from geoseg.io.open import open_raster

    with open_raster(confidence) as ds:
        shape = _preview_shape(ds.height, ds.width, size)
        conf = ds.read(1, out_shape=shape, resampling=Resampling.average)
    with open_raster(mask) as ds:
        ids = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
    rgba = (colormaps[CONFIDENCE_COLORMAP](conf / 255.0) * 255).astype(np.uint8)
    rgba[ids == MASK_NODATA, 3] = 0
    return _png(rgba)


def confidence_scale_html(*, stops: int = 11) -> str:
    """The colour bar of :func:`confidence_png`: the colour map from probability 0 to 1, sampled
    at ``stops`` points, with ticks every 0.25."""
    from matplotlib import colormaps

    cmap = colormaps[CONFIDENCE_COLORMAP]
    gradient = ", ".join(
        "rgb({}, {}, {}) {:.0f}%".format(
            *(round(255 * c) for c in cmap(i / (stops - 1))[:3]), 100 * i / (stops - 1)
        )
        for i in range(stops)
    )
    ticks = "".join(f"<span>{t:g}</span>" for t in (0, 0.25, 0.5, 0.75, 1))
    return (
        '<div id="geoseg-confidence-scale" style="max-width:480px;margin:6px 0;font-size:12px;">'
        "<b>Probability of the winning class</b>"
        f'<div class="geoseg-colorbar" style="height:14px;margin:3px 0;border:1px solid #333;'
        f'background:linear-gradient(to right, {gradient});"></div>'
        f'<div style="display:flex;justify-content:space-between;">{ticks}</div>'
        "<small>purple: unsure, yellow: sure; transparent: no data</small></div>"
    )


def legend_html(areas: list[ClassArea]) -> str:
    """An HTML legend: one swatch, name and share per class."""
    items = "".join(
        '<li class="geoseg-legend-item"><span class="geoseg-swatch" '
        f'style="background:rgb{a.color};"></span>{html.escape(a.name)} <small>'
        f"({a.share:.1%})</small></li>"
        for a in areas
    )
    return (
        '<div id="geoseg-legend"><b>Legend</b><ul style="list-style:none;padding:0;margin:4px 0;">'
        f"{items}</ul></div><style>.geoseg-swatch{{display:inline-block;width:14px;height:14px;"
        "margin-right:6px;border:1px solid #333;"
        "vertical-align:middle}.geoseg-legend-item{margin:2px 0}</style>"
    )


@dataclass(frozen=True)
class Footprint:
    """Outline of a raster in lon/lat (degrees), ``lons`` and ``lats`` in order around it."""

    lons: tuple[float, ...]
    lats: tuple[float, ...]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)``."""
        return min(self.lons), min(self.lats), max(self.lons), max(self.lats)


def footprint_of(raster: str | os.PathLike[str], *, per_side: int = 8) -> Footprint | None:
    """The raster's outline in EPSG:4326 (edges sampled ``per_side`` times), or None without a
    CRS."""
    from rasterio.warp import transform

    from geoseg.io.open import open_raster

    with open_raster(raster) as ds:
        if ds.crs is None:
            return None
        h, w, t = ds.height, ds.width, ds.transform
        steps = np.linspace(0, 1, per_side + 1)[:-1]
        edge = (
            [(s * w, 0) for s in steps]
            + [(w, s * h) for s in steps]
            + [((1 - s) * w, h) for s in steps]
            + [(0, (1 - s) * h) for s in steps]
        )
        xs, ys = zip(*(t * p for p in edge), strict=True)
        lons, lats = transform(ds.crs, "EPSG:4326", list(xs), list(ys))
    return Footprint(tuple(lons), tuple(lats))


def _nice_step(span: float) -> float:
    """A graticule step of 1, 2 or 5 times a power of ten giving about 4-8 lines over ``span``
    degrees."""
    raw = max(span, 1e-9) / 5
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _fmt(value: float, step: float, pos: str, neg: str) -> str:
    digits = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{abs(value):.{digits}f}°{pos if value >= 0 else neg}"


def _ticks(low: float, high: float, step: float) -> list[float]:
    """The multiples of ``step`` from ``low`` to ``high``."""
    return [k * step for k in range(math.ceil(low / step), math.floor(high / step) + 1)]


def _grid_line(line: tuple[float, float, float, float], at: tuple[float, float], label: str) -> str:
    """One graticule line (x1, y1, x2, y2) with its label at ``at``."""
    x1, y1, x2, y2 = line
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#b8c4cf" '
        f'stroke-width="1"/><text x="{at[0]:.1f}" y="{at[1]:.1f}" fill="#556">{label}</text>'
    )


def map_svg(
    footprint: Footprint | None,
    overlay: bytes | None = None,
    *,
    width: int = 560,
    height: int = 420,
) -> str:
    """An offline map (SVG): the result placed on a lon/lat graticule, with a world inset.

    The overlay PNG is drawn over the footprint's bounding box (the footprint outline is exact;
    the picture is exact for north-up rasters in lon/lat and close for small projected scenes).
    Without a footprint (no CRS) it says so instead of drawing a map.
    """
    if footprint is None:
        return (
            '<div id="geoseg-map" style="padding:1em;border:1px dashed #999;">This image has no '
            "coordinate reference system, so it cannot be placed on a map. Results keep its pixel "
            "grid.</div>"
        )
    west, south, east, north = footprint.bounds
    mid_lat = (south + north) / 2
    kx = max(math.cos(math.radians(mid_lat)), 0.05)  # equirectangular, true scale at the centre
    span_x, span_y = max((east - west) * kx, 1e-9), max(north - south, 1e-9)
    pad = 0.35
    view_x, view_y = span_x * (1 + 2 * pad), span_y * (1 + 2 * pad)
    scale = min(width / view_x, height / view_y)
    cx, cy = (west + east) / 2, mid_lat

    def px(lon: float, lat: float) -> tuple[float, float]:
        return width / 2 + (lon - cx) * kx * scale, height / 2 - (lat - cy) * scale

    parts = [
        f'<svg id="geoseg-map" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px;background:#eef3f7;font:11px sans-serif;">'
    ]
    lon_lo, lon_hi = cx - width / 2 / (kx * scale), cx + width / 2 / (kx * scale)
    lat_lo, lat_hi = cy - height / 2 / scale, cy + height / 2 / scale
    step = _nice_step(max(lon_hi - lon_lo, lat_hi - lat_lo))
    for lon in _ticks(lon_lo, lon_hi, step):
        x = px(lon, cy)[0]
        parts.append(_grid_line((x, 0, x, height), (x + 2, height - 4), _fmt(lon, step, "E", "W")))
    for lat in _ticks(lat_lo, lat_hi, step):
        y = px(cx, lat)[1]
        parts.append(_grid_line((0, y, width, y), (3, y - 3), _fmt(lat, step, "N", "S")))
    if overlay is not None:
        x0, y0 = px(west, north)
        x1, y1 = px(east, south)
        data = base64.b64encode(overlay).decode("ascii")
        parts.append(
            f'<image x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" '
            f'opacity="0.85" preserveAspectRatio="none" href="data:image/png;base64,{data}"/>'
        )
    outline = " ".join(
        f"{x:.1f},{y:.1f}"
        for x, y in (px(a, b) for a, b in zip(footprint.lons, footprint.lats, strict=True))
    )
    parts.append(f'<polygon points="{outline}" fill="none" stroke="#d62728" stroke-width="2"/>')
    # world inset: where on Earth this is
    iw, ih = 120, 60
    ix, iy = width - iw - 8, 8
    dot_x, dot_y = ix + (cx + 180) / 360 * iw, iy + (90 - cy) / 180 * ih
    parts.append(f'<rect x="{ix}" y="{iy}" width="{iw}" height="{ih}" fill="#fff" stroke="#556"/>')
    for g in range(-150, 180, 30):
        gx = ix + (g + 180) / 360 * iw
        parts.append(f'<line x1="{gx:.1f}" y1="{iy}" x2="{gx:.1f}" y2="{iy + ih}" stroke="#dde"/>')
    for g in range(-60, 90, 30):
        gy = iy + (90 - g) / 180 * ih
        parts.append(f'<line x1="{ix}" y1="{gy:.1f}" x2="{ix + iw}" y2="{gy:.1f}" stroke="#dde"/>')
    parts.append(f'<circle cx="{dot_x:.1f}" cy="{dot_y:.1f}" r="3" fill="#d62728"/>')
    parts.append(
        f'<text x="6" y="14" fill="#223">centre {_fmt(cy, 1e-4, "N", "S")}, '
        f"{_fmt(cx, 1e-4, 'E', 'W')} (WGS 84; no basemap offline)</text></svg>"
    )
    return "".join(parts)
