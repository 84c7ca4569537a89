"""Describe a raster: everything a user checks before segmenting it, as a JSON-ready dict."""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np
from affine import Affine
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geoseg.errors import RasterOpenError
from geoseg.io.open import open_raster, read_failure
from geoseg.io.tiff import cog_layout_problems, read_ifd_layout
from geoseg.provenance import Provenance

__all__ = ["cog_problems", "describe_raster", "raster_provenance"]


def cog_problems(ds: Any, path: str | None = None) -> list[str]:
    """Why an open dataset is not a valid Cloud-Optimized GeoTIFF (empty list: it is one).

    Checks what a COG reader relies on: a GeoTIFF, internally tiled when larger than 512 px,
    overviews when larger than 512 px, and the COG layout (directories ahead of the pixel data,
    smallest overview data first). The layout is read from the file itself for local paths, and
    from GDAL's layout marker for URLs.
    """
    if ds.driver != "GTiff":
        return [f"driver is {ds.driver}, not GTiff"]
    problems = []
    big = ds.width > 512 or ds.height > 512
    if big and not ds.profile.get("tiled", False):
        problems.append("not internally tiled (striped)")
    if big and not ds.overviews(1):
        problems.append("no internal overviews")
    if ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "").upper() == "COG":
        return problems
    if path is not None and os.path.isfile(path):
        try:
            with open(path, "rb") as f:
                problems += cog_layout_problems(read_ifd_layout(f))
        except (OSError, ValueError, struct.error) as exc:
            problems.append(f"TIFF directories unreadable ({exc})")
    else:
        problems.append("no COG layout marker (remote file: layout not checked byte by byte)")
    return problems


def raster_provenance(path: str | os.PathLike[str]) -> Provenance | None:
    """The provenance a raster's tags record (a geoseg output), or None (no such tags, or the
    raster cannot be opened)."""
    import rasterio

    try:  # tags are in the file itself: no side-car to look for (a listing of the folder)
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), open_raster(path) as ds:
            return Provenance.from_tags(ds.tags())
    except RasterOpenError:
        return None


def _lonlat_bounds(ds: Any) -> list[float] | None:
    if ds.crs is None:
        return None
    left, bottom, right, top = _native_bounds(ds)
    try:
        return [
            round(v, 8)
            for v in transform_bounds(ds.crs, "EPSG:4326", left, bottom, right, top, densify_pts=21)
        ]
    except Exception:  # projection errors (e.g. geostationary limb): report what could not be done
        return None


def _native_bounds(ds: Any) -> tuple[float, float, float, float]:
    t = ds.transform
    corners = [
        t @ (c, r) for c, r in ((0, 0), (ds.width, 0), (0, ds.height), (ds.width, ds.height))
    ]
    xs, ys = zip(*corners, strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def _crs_info(crs: Any) -> dict[str, Any] | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    try:
        from pyproj import CRS as ProjCRS

        name = ProjCRS.from_wkt(crs.to_wkt()).name
    except Exception:
        name = crs.to_string()
    units = crs.linear_units if crs.is_projected else "degree"
    return {"epsg": epsg, "name": name, "units": units, "wkt": crs.to_wkt()}


def _name(value: Any) -> str | None:
    """An enum member's name; rasterio hands out a plain string for values its enums lack
    (``OJPEG``)."""
    if not value:
        return None
    return str(getattr(value, "name", value)).upper()


def _check_readable(ds: Any) -> None:
    """Decode the last block so a truncated file fails here rather than halfway through a job."""
    rows, cols = ds.block_shapes[0]
    row_off = (ds.height - 1) // rows * rows
    col_off = (ds.width - 1) // cols * cols
    ds.read(
        1,
        window=Window(
            col_off, row_off, min(cols, ds.width - col_off), min(rows, ds.height - row_off)
        ),
    )


def describe_raster(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything ``geoseg info`` reports about one raster.

    Args:
        path: local path or ``http(s)://`` URL.

    Returns:
        A JSON-ready dict: driver, size, bands (dtype, nodata, colour interpretation, description,
        colour table), CRS, geotransform, resolution, bounds (native and lon/lat), tiling,
        compression, overviews, COG validity, GCPs and warnings.

    Raises:
        RasterOpenError: when the path is missing, a folder, not a raster, or truncated.
    """
    text = str(path)
    with open_raster(text) as ds:
        try:
            _check_readable(ds)
        except RasterioIOError as exc:
            raise RasterOpenError(read_failure(text, exc, "its last block")) from None
        t: Affine = ds.transform
        gcps, gcp_crs = ds.gcps
        georef = "transform"
        warnings: list[str] = []
        if t == Affine.identity() and gcps:
            georef = "gcps"
            warnings.append(
                f"georeferenced by {len(gcps)} ground control points only, no geotransform; "
                "warp it to a grid first (gdalwarp -r near in.tif out.tif) for map-aligned outputs"
            )
        elif t == Affine.identity():
            georef = "none"
        rotated = t.b != 0 or t.d != 0
        if rotated:
            warnings.append(
                "rotated/sheared geotransform: outputs keep it exactly; some tools display it "
                "unrotated"
            )
        crs = ds.crs if georef != "gcps" else gcp_crs
        if crs is None:
            warnings.append("no CRS: results keep the pixel grid but cannot be placed on a map")
        bands = []
        for i in range(1, ds.count + 1):
            try:
                ds.colormap(i)
                has_cmap = True
            except ValueError:
                has_cmap = False
            flags = ds.mask_flag_enums[i - 1]
            nodata = ds.nodatavals[i - 1]
            bands.append(
                {
                    "index": i,
                    "dtype": ds.dtypes[i - 1],
                    "nodata": None
                    if nodata is None
                    else (str(nodata) if np.isnan(nodata) else nodata),
                    "color_interp": ds.colorinterp[i - 1].name,
                    "description": ds.descriptions[i - 1],
                    "color_table": has_cmap,
                    "mask": [f.name for f in flags] if flags else [],
                    "block_shape": list(ds.block_shapes[i - 1]),
                }
            )
        overviews = ds.overviews(1) if ds.count else []
        problems = cog_problems(ds, text)
        res_x = float(np.hypot(t.a, t.d))
        res_y = float(np.hypot(t.b, t.e))
        compression = _name(ds.compression) or "NONE"
        if compression.upper() == "OJPEG":
            warnings.append(
                "old-style JPEG (OJPEG) compression, which GDAL reads with warnings and other "
                "tools may not; convert it (gdal_translate -co COMPRESS=JPEG in.tif out.tif)"
            )
        tags = ds.tags()
        return {
            "path": text,
            "driver": ds.driver,
            "width": ds.width,
            "height": ds.height,
            "count": ds.count,
            "dtypes": list(ds.dtypes),
            "nodata": bands[0]["nodata"] if bands else None,
            "bands": bands,
            "crs": _crs_info(crs),
            "georeferencing": georef,
            "gcp_count": len(gcps),
            "transform": list(t.to_gdal()),
            "rotated": rotated,
            "resolution": [res_x, res_y],
            "bounds": list(_native_bounds(ds)) if georef == "transform" else None,
            "bounds_lonlat": _lonlat_bounds(ds) if georef == "transform" else None,
            "tiled": bool(ds.profile.get("tiled", False)),
            "block_shape": list(ds.block_shapes[0]) if ds.count else None,
            "interleave": _name(ds.interleaving),
            "compression": compression,
            "overviews": overviews,
            "cog": not problems,
            "cog_problems": problems,
            "class_names": tags.get("CLASS_NAMES"),
            "provenance": prov.to_dict() if (prov := Provenance.from_tags(tags)) else None,
            "has_dataset_mask": any(MaskFlags.per_dataset in f for f in ds.mask_flag_enums),
            "warnings": warnings,
        }
