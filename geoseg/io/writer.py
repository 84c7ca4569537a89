"""Atomic, block-by-block writing of large rasters, finished as Cloud-Optimized GeoTIFFs.

The writer streams windows into a tiled GeoTIFF under a hidden temporary name in the destination
folder, then copies it through GDAL's COG driver (overviews included), checks that the result
decodes (last tile and every overview), flushes it to disk and renames it onto the final name
(:func:`~geoseg.io.atomic.atomic_output`). An interrupted or killed run leaves nothing under the
final name; temporary names are unique per run, so two runs never share one.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from geoseg.classes import ClassTable, class_tags
from geoseg.errors import GeosegError, WriteError
from geoseg.io.atomic import atomic_output, check_destination, describe_os_error, temporary_name
from geoseg.io.open import gdal_reason

__all__ = ["COG_BLOCK", "COGWriter", "check_destination", "verify_cog", "write_qml"]

log = logging.getLogger(__name__)

COG_BLOCK = (
    512  # internal tile edge of the COGs geoseg writes; prediction stripes are a multiple of it
)

Resampling = Literal["nearest", "mode", "average", "bilinear"]


def verify_cog(path: Path) -> None:
    """Check a finished GeoTIFF decodes: it opens, and the last tile of every band and of every
    overview reads back (a disk that filled up truncates the file there first).

    Raises:
        WriteError: the file is unreadable, with the reason.
    """
    try:
        with rasterio.open(path) as ds:
            levels = len(ds.overviews(1))
            for level in (None, *range(levels)):
                with (
                    rasterio.open(path, overview_level=level)
                    if level is not None
                    else contextlib.nullcontext(ds)
                ) as view:
                    bh, bw = view.block_shapes[0]
                    h, w = min(bh, view.height), min(bw, view.width)
                    view.read(window=Window(view.width - w, view.height - h, w, h))
                    view.read(window=Window(0, 0, w, h))
    except Exception as exc:  # GDAL's CPLE_* errors are not RasterioErrors
        reason = gdal_reason(exc)
        raise WriteError(
            f"{path}: the finished raster does not read back ({reason}); the disk may be full"
        ) from None


def write_qml(path: Path, classes: ClassTable, *, nodata: int | None = 255) -> None:
    """Write a QGIS style (paletted renderer: class names and colours) that QGIS loads by
    default."""
    entries = "\n".join(
        f'        <paletteEntry value="{c.id}" color="{c.hex()}" alpha="255" '
        f"label={quoteattr(c.name)}/>"
        for c in classes
    )
    transparency = (
        f'<rasterTransparency><singleValuePixelList><pixelListEntry min="{nodata}" max="{nodata}" '
        'percentTransparent="100"/></singleValuePixelList></rasterTransparency>'
        if nodata is not None
        else "<rasterTransparency/>"
    )
    resampling = (
        '<resampling enabled="false" zoomedInResamplingMethod="nearestNeighbour" '
        'zoomedOutResamplingMethod="nearestNeighbour"/>'
    )
    text = f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28.0" styleCategories="AllStyleCategories">
  <pipe>
    <provider>{resampling}</provider>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      {transparency}
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
  </pipe>
</qgis>
"""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# GDAL raster attribute table columns: name, type (0 int, 2 string), usage (GFU_* code)
_RAT_FIELDS = {
    "value": (0, 5),
    "count": (0, 1),
    "class": (2, 2),
    "red": (0, 6),
    "green": (0, 7),
    "blue": (0, 8),
    "alpha": (0, 9),
}


def rat_xml(classes: ClassTable, counts: np.ndarray | None = None) -> str:
    """A GDAL raster attribute table (value, pixel count if ``counts`` is given, class name,
    colour), the category names and a colour table of one entry per class for band 1, as GDAL's
    PAM XML.

    A GeoTIFF's own colour table always has 256 entries (QGIS lists every one in its legend); GDAL
    reads the PAM colour table instead, so QGIS shows the classes alone. Ids missing between the
    classes get transparent entries.

    Args:
        classes: the table of values.
        counts: pixels per value (indexed by class id), e.g. a histogram of the band.
    """
    fields = [f for f in _RAT_FIELDS if f != "count" or counts is not None]
    defs = "".join(
        f'<FieldDefn index="{i}"><Name>{name}</Name><Type>{_RAT_FIELDS[name][0]}</Type>'
        f"<Usage>{_RAT_FIELDS[name][1]}</Usage></FieldDefn>"
        for i, name in enumerate(fields)
    )
    rows = []
    for k, c in enumerate(classes):
        values = {
            "value": c.id,
            "count": int(counts[c.id]) if counts is not None else 0,
            "class": escape(c.name),
            "red": c.color[0],
            "green": c.color[1],
            "blue": c.color[2],
            "alpha": 255,
        }
        cells = "".join(f"<F>{values[name]}</F>" for name in fields)
        rows.append(f'<Row index="{k}">{cells}</Row>')
    ids = range(max(c.id for c in classes) + 1)
    names = "".join(f"<Category>{escape(_name_of(classes, v))}</Category>" for v in ids)
    colours = {c.id: (*c.color, 255) for c in classes}
    entries = "".join(
        '<Entry c1="{}" c2="{}" c3="{}" c4="{}"/>'.format(*colours.get(v, (0, 0, 0, 0)))
        for v in ids
    )
    return (
        f'<PAMDataset><PAMRasterBand band="1"><CategoryNames>{names}</CategoryNames>'
        f"<ColorInterp>Palette</ColorInterp><ColorTable>{entries}</ColorTable>"
        f'<GDALRasterAttributeTable tableType="thematic">{defs}{"".join(rows)}'
        "</GDALRasterAttributeTable>"
        "</PAMRasterBand></PAMDataset>\n"
    )


def _name_of(classes: ClassTable, value: int) -> str:
    return next((c.name for c in classes if c.id == value), "")


class COGWriter:
    """Write a large raster window by window, then publish it atomically as a COG.

    Use as a context manager; the COG appears under ``dst`` only when the block exits cleanly::

        with COGWriter(dst, height=h, width=w, count=1, dtype="uint8", transform=t, crs=crs,
                       nodata=255, classes=table) as out:
            out.write(array, window)
            out.class_counts = histogram  # optional: a count column in the attribute table

    Args:
        dst: output path.
        height: rows.
        width: columns.
        count: bands.
        dtype: numpy dtype name.
        transform: affine transform of the output grid.
        crs: CRS or None.
        nodata: nodata value, or None.
        gcps: ``(gcps, crs)`` to carry GCP georeferencing instead of a transform.
        classes: class table; writes a colour table, class names (tags) and a QGIS ``.qml`` style.
        descriptions: one description per band.
        tags: dataset tags (GDAL metadata).
        resampling: overview resampling (``nearest``/``mode`` for classes, ``average`` otherwise).
        compress: COG compression.
        blocksize: internal tile size of the COG.
        overwrite: replace an existing ``dst``.
        mask: mark the pixels :meth:`write` is told are invalid as nodata, for outputs whose
            every value is meaningful (probabilities). Unless ``nodata`` is given, integer bands
            reserve their lowest value (a valid pixel holding it is written one step up, e.g. a
            uint8 probability of 0 as 1, i.e. 1/255), float bands NaN. Readers show the invalid
            area as transparent and leave it out of statistics and overviews. (Not a GDAL
            internal mask: QGIS 3.22 lists one as an extra band and counts masked pixels.)

    Raises:
        OutputExistsError: ``dst`` exists and ``overwrite`` is False.
        WriteError: the output cannot be written.
    """

    def __init__(
        self,
        dst: str | os.PathLike[str],
        *,
        height: int,
        width: int,
        count: int,
        dtype: str,
        transform: Affine,
        crs: CRS | None,
        nodata: float | None = None,
        gcps: tuple[Sequence[Any], CRS] | None = None,
        classes: ClassTable | None = None,
        descriptions: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        resampling: Resampling = "nearest",
        compress: str = "deflate",
        blocksize: int = COG_BLOCK,
        overwrite: bool = False,
        mask: bool = False,
    ) -> None:
        self.dst = check_destination(dst, overwrite=overwrite)
        if mask and nodata is None:
            kind = np.dtype(dtype)
            nodata = float("nan") if kind.kind == "f" else int(np.iinfo(kind).min)
        self.profile: dict[str, Any] = {
            "driver": "GTiff",
            "height": height,
            "width": width,
            "count": count,
            "dtype": dtype,
            "crs": crs,
            "transform": transform,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": blocksize,
            "blockysize": blocksize,
            "bigtiff": "IF_SAFER",
            "sparse_ok": True,
        }
        if gcps is not None:  # GCP georeferencing replaces the geotransform
            del self.profile["transform"], self.profile["crs"]
        if height < blocksize or width < blocksize:
            self.profile.update(tiled=False, blockxsize=None, blockysize=None)
            self.profile = {k: v for k, v in self.profile.items() if v is not None}
        self.gcps = gcps
        self.classes = classes
        self.descriptions = descriptions
        self.tags = dict(tags or {})
        self.resampling = resampling
        self.compress = compress
        self.blocksize = blocksize
        self.mask = mask
        # pixels per value, indexed by class id: set before the block exits to add a ``count``
        # column to the attribute table
        self.class_counts: np.ndarray | None = None
        self._tmp = temporary_name(self.dst, "-stream")
        self._publisher: Any = None
        self._tmp_cog = self._tmp
        self._ds: Any = None

    def __enter__(self) -> COGWriter:
        self._publisher = atomic_output(self.dst, verify=verify_cog)
        self._tmp_cog = self._publisher.__enter__()
        try:
            self._ds = rasterio.open(self._tmp, "w", **self.profile)
        except (RasterioError, OSError) as exc:
            message = self._explain(
                exc, "cannot create the output", "check the folder is writable and has space"
            )
            self._abort(exc)
            raise WriteError(message) from None
        except BaseException as exc:  # Ctrl-C while creating: leave nothing behind
            self._abort(exc)
            raise
        try:
            if self.gcps is not None:
                self._ds.gcps = self.gcps
            if self.classes is not None:
                self._ds.write_colormap(1, self.classes.colormap())
                self.tags.update(class_tags(self.classes))
            if self.tags:
                self._ds.update_tags(**self.tags)
            for i, text in enumerate(self.descriptions or (), start=1):
                self._ds.set_band_description(i, text)
        except BaseException as exc:
            self._abort(exc)
            raise
        return self

    def write(self, data: np.ndarray, window: Window, valid: np.ndarray | None = None) -> None:
        """Write a ``(bands, rows, cols)`` array at ``window``; ``valid`` (``(rows, cols)`` bool)
        marks the pixels that hold data for a writer made with ``mask=True`` (the others become
        nodata)."""
        if self.mask:
            data = self._masked(data, valid)
        try:
            self._ds.write(data, window=window)
        except Exception as exc:  # GDAL's CPLE_* errors are not RasterioErrors
            rows = f"rows {window.row_off}..{window.row_off + window.height}"
            raise WriteError(
                self._explain(exc, f"writing {rows} failed", "nothing was written under that name")
            ) from None

    def _masked(self, data: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        """``data`` with invalid pixels set to nodata, and valid ones moved off it."""
        nodata = self.profile["nodata"]
        if data.dtype.kind == "f":
            out = data.astype(data.dtype, copy=True)
        else:
            step = 1 if nodata < np.iinfo(data.dtype).max else -1
            out = np.where(data == nodata, nodata + step, data).astype(data.dtype)
        if valid is not None:
            out[:, ~valid] = nodata
        return out

    def _explain(self, exc: BaseException, what: str, fix: str) -> str:
        known = describe_os_error(self.dst, exc)
        return known or f"{self.dst}: {what} ({gdal_reason(exc)}); {fix}"

    def _abort(self, exc: BaseException) -> None:
        """Remove every temporary file after a failure."""
        with contextlib.suppress(Exception):
            if self._ds is not None:
                self._ds.close()
        self._cleanup()
        if self._publisher is not None:
            with contextlib.suppress(BaseException):
                self._publisher.__exit__(type(exc), exc, exc.__traceback__)
            self._publisher = None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._abort(exc)
            return
        try:
            self._ds.close()
            self._publish()
        except BaseException as error:
            message = None
            if isinstance(error, Exception) and not isinstance(error, GeosegError):
                message = self._explain(
                    error, "finishing the COG failed", "nothing was written under that name"
                )
            self._abort(error)
            if message is not None:
                raise WriteError(message) from None
            raise
        finally:
            self._cleanup()
        publisher, self._publisher = self._publisher, None
        publisher.__exit__(None, None, None)  # verify, flush, rename
        log.info("wrote %s", self.dst)

    def _publish(self) -> None:
        options: dict[str, Any] = {
            "compress": self.compress,
            "blocksize": self.blocksize,
            "overview_resampling": self.resampling.upper(),
            "num_threads": "ALL_CPUS",
            "bigtiff": "IF_SAFER",
        }
        if self.compress.lower() in ("deflate", "zstd", "lzw"):
            options["predictor"] = "NO" if self.classes is not None else "YES"
        try:
            rasterio.shutil.copy(self._tmp, self._tmp_cog, driver="COG", **options)
        except Exception as exc:  # GDAL's CPLE_* errors are not RasterioErrors
            raise WriteError(
                self._explain(
                    exc, "finishing the COG failed", "nothing was written under that name"
                )
            ) from None
        self._cleanup()
        if self.classes is not None:
            write_qml(self.dst.with_suffix(".qml"), self.classes)
            # GDAL keeps a GeoTIFF's attribute table in its PAM side-car; QGIS >= 3.30 shows it as
            # the legend
            with atomic_output(self.dst.with_name(self.dst.name + ".aux.xml")) as tmp:
                tmp.write_text(rat_xml(self.classes, self.class_counts), encoding="utf-8")

    def _cleanup(self) -> None:
        for p in (
            self._tmp,
            self._tmp.with_name(self._tmp.name + ".aux.xml"),
            self._tmp_cog.with_name(self._tmp_cog.name + ".aux.xml"),
        ):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
