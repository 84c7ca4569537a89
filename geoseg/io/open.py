"""The one place that turns a path or URL into an open rasterio dataset, with clear errors."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import RasterioIOError

from geoseg.errors import NoCRSWarning, RasterOpenError

__all__ = ["gdal_reason", "is_url", "open_raster", "read_failure", "to_gdal_path"]

_URL_PREFIXES = ("http://", "https://", "s3://", "gs://", "az://")


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a URL (``http(s)://``, ``s3://``...) rather than a local file."""
    return str(path).startswith(_URL_PREFIXES) or str(path).startswith("/vsi")


_VSI = {"s3://": "/vsis3/", "gs://": "/vsigs/", "az://": "/vsiaz/"}


def to_gdal_path(path: str | os.PathLike[str]) -> str:
    """The string GDAL opens: URLs go through ``/vsicurl/`` (range requests), ``s3://bucket/key``
    through ``/vsis3/bucket/key`` (likewise ``gs://``, ``az://``), paths stay as they are."""
    text = str(path)
    if text.startswith(("http://", "https://")):
        return "/vsicurl/" + text
    for scheme, vsi in _VSI.items():
        if text.startswith(scheme):
            return vsi + text[len(scheme) :]
    return text


def _check_local(path: str) -> None:
    p = Path(path)
    if not p.exists():
        raise RasterOpenError(
            f"{path}: no such file; expected a raster such as a GeoTIFF. Check the path."
        )
    if p.is_dir():
        raise RasterOpenError(
            f"{path}: is a directory; expected a raster file (e.g. {p / 'scene.tif'}). Name a "
            "file inside it."
        )


def open_raster(path: str | os.PathLike[str], *, warn_no_crs: bool = False, **kwargs: Any) -> Any:
    """Open a raster for reading with a clear error when it cannot be.

    Args:
        path: local path or URL (``http(s)://`` uses HTTP range requests).
        warn_no_crs: emit :class:`NoCRSWarning` when the raster has no CRS.
        **kwargs: passed to :func:`rasterio.open`.

    Returns:
        An open ``rasterio.DatasetReader``; close it (or use it as a context manager).

    Raises:
        RasterOpenError: missing path, a directory, or a file GDAL does not read as a raster.
    """
    text = str(path)
    if not is_url(text):
        _check_local(text)
    else:
        from geoseg.io.storage import apply_environment

        apply_environment()
    try:
        dataset = rasterio.open(to_gdal_path(text), **kwargs)
    except RasterioIOError as exc:
        reason = gdal_reason(exc)
        if (
            "not recognized as being in a supported file format" in reason
            or "not recognized as a supported" in reason
        ):
            found = "a file GDAL does not recognise as a raster"
        elif is_url(text) and ("timed out" in reason.lower() or "timeout" in reason.lower()):
            found = (
                f"no answer from the server within {os.environ.get('GDAL_HTTP_TIMEOUT')} s "
                f"({reason}); check the URL, or allow longer with GDAL_HTTP_TIMEOUT=SECONDS"
            )
        elif is_url(text):
            found = f"an error from the server or network ({reason})"
        else:
            found = f"a file GDAL cannot read ({reason})"
        advice = (
            ""
            if "GDAL_HTTP_TIMEOUT" in found
            else (
                " Check that the file is complete and is an image, or convert it with "
                "gdal_translate."
            )
        )
        raise RasterOpenError(
            f"{text}: expected a raster GDAL can open (GeoTIFF, COG, JP2...), found "
            f"{found}.{advice}"
        ) from None
    if warn_no_crs and dataset.crs is None:
        warnings.warn(
            f"{text} has no CRS: outputs keep its pixel grid but will not line up on a map. "
            "Assign one with `gdal_edit.py -a_srs EPSG:XXXX` if you know it.",
            NoCRSWarning,
            stacklevel=2,
        )
    return dataset


def grid_of(dataset: Any) -> dict[str, Any]:
    """``height``, ``width``, ``transform`` and ``crs`` of an open raster: the keywords that put
    another raster (an output, a warped view) on its grid."""
    return {
        "height": dataset.height,
        "width": dataset.width,
        "transform": dataset.transform,
        "crs": dataset.crs,
    }


def warped_onto(
    dataset: Any,
    grid: Mapping[str, Any],
    *,
    resampling: str = "nearest",
    nodata: float | None = None,
) -> Any:
    """A virtual view of an open ``dataset`` on another raster's grid, warped on read.

    Args:
        dataset: an open rasterio dataset.
        grid: ``height``, ``width``, ``transform`` and ``crs`` of the target grid
            (:func:`grid_of`).
        resampling: a :class:`rasterio.enums.Resampling` name.
        nodata: the view's nodata value [default: the dataset's].

    Returns:
        An open ``rasterio.vrt.WarpedVRT``; close it (or use it as a context manager).
    """
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    return WarpedVRT(
        dataset,
        crs=grid["crs"],
        transform=grid["transform"],
        width=grid["width"],
        height=grid["height"],
        resampling=Resampling[resampling],
        nodata=nodata,
    )


_GENERIC = ("see previous exception", "ireadblock failed", "readencoded")


def gdal_reason(exc: BaseException, limit: int = 300) -> str:
    """GDAL's own words for a failure: rasterio raises "Read failed. See previous exception for
    details." from the error GDAL reported, so the distinct messages of the exception and its
    causes are joined, most specific first (the generic ones last, and only when alone)."""
    seen: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 8:
        line = (str(current).strip().splitlines() or [type(current).__name__])[0]
        if line not in seen:
            seen.append(line)
        current = current.__cause__ or current.__context__
    specific = [m for m in seen if not any(g in m.lower() for g in _GENERIC)]
    text = "; ".join(reversed(specific or seen))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_failure(path: str | os.PathLike[str], exc: BaseException, where: str = "") -> str:
    """What went wrong when pixels of ``path`` would not decode, with GDAL's reason and the fix.

    Tells apart a source file that is missing (a VRT's), an encoding this GDAL cannot decode
    (12-bit JPEG...), and a truncated or corrupt file.

    Args:
        path: the raster that was read.
        exc: the exception of the read.
        where: which pixels, e.g. ``"rows 0-512, cols 0-512"``.
    """
    reason = gdal_reason(exc)
    lower = reason.lower()
    at = f" at {where}" if where else ""
    name = Path(str(path)).name
    if "precision 12" in lower or ("jpeg" in lower and "12" in lower and "bits" in lower):
        return (
            f"{path}: holds 12-bit JPEG-compressed pixels, which this GDAL build cannot decode "
            f"({reason}); convert it with a GDAL that reads 12-bit JPEG, e.g. `gdal_translate "
            f"-co COMPRESS=DEFLATE {name} out.tif`"
        )
    if "no such file" in lower or "does not exist" in lower:
        return (
            f"{path}: a file it refers to is missing ({reason}); expected every source file of "
            "a VRT (or a side-car such as .ovr or .msk) in place. Restore the file or rebuild "
            "the VRT (gdalbuildvrt)"
        )
    if "permission denied" in lower:
        return (
            f"{path}: a file it needs cannot be read ({reason}); give read permission or copy "
            "it somewhere readable"
        )
    if "unsupported" in lower or "not supported" in lower:
        return (
            f"{path}: its pixels{at} use an encoding this GDAL cannot decode ({reason}); convert "
            f"it, e.g. `gdal_translate -co COMPRESS=DEFLATE {name} out.tif`"
        )
    return (
        f"{path}: could not read pixels{at} ({reason}); expected a complete raster. The file "
        "may be truncated or corrupt: re-download or re-export it"
    )
