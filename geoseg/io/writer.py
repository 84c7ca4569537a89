"""Atomic, block-by-block writing of large rasters, finished as Cloud-Optimized GeoTIFFs.

The writer streams windows into a tiled GeoTIFF under a hidden temporary name in the destination
folder, then copies it through GDAL's COG driver (overviews included) and renames the result onto
the final name. An interrupted or killed run leaves nothing under the final name; the next run
replaces the leftover temporary files.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from geoseg.classes import ClassTable, class_tags
from geoseg.errors import OutputExistsError, WriteError

__all__ = ["COG_BLOCK", "COGWriter", "check_destination", "write_qml"]

log = logging.getLogger(__name__)

COG_BLOCK = 512  # internal tile edge of the COGs geoseg writes; prediction stripes are a multiple of it

Resampling = Literal["nearest", "mode", "average", "bilinear"]


def check_destination(dst: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Refuse an existing destination unless ``overwrite``; the folder must exist.

    Raises:
        OutputExistsError: the file exists and ``overwrite`` is False.
        WriteError: the destination folder is missing or is not a folder.
    """
    path = Path(dst)
    if path.is_dir():
        raise WriteError(f"{path}: is a directory; expected an output file name such as {path / 'mask.tif'}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists; pass --overwrite (overwrite=True) to replace it, or choose another name")
    if not path.parent.exists():
        raise WriteError(f"{path}: folder {path.parent} does not exist; create it first (mkdir -p {path.parent})")
    return path


def write_qml(path: Path, classes: ClassTable, *, nodata: int | None = 255) -> None:
    """Write a QGIS style (paletted renderer: class names and colours) that QGIS loads by default."""
    entries = "\n".join(
        f'        <paletteEntry value="{c.id}" color="{c.hex()}" alpha="255" label={quoteattr(c.name)}/>' for c in classes
    )
    transparency = (
        f'<rasterTransparency><singleValuePixelList><pixelListEntry min="{nodata}" max="{nodata}" percentTransparent="100"/>'
        "</singleValuePixelList></rasterTransparency>"
        if nodata is not None
        else "<rasterTransparency/>"
    )
    text = f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28.0" styleCategories="AllStyleCategories">
  <pipe>
    <provider><resampling enabled="false" zoomedInResamplingMethod="nearestNeighbour" zoomedOutResamplingMethod="nearestNeighbour"/></provider>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      {transparency}
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
  </pipe>
</qgis>
"""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class COGWriter:
    """Write a large raster window by window, then publish it atomically as a COG.

    Use as a context manager; the COG appears under ``dst`` only when the block exits cleanly::

        with COGWriter(dst, height=h, width=w, count=1, dtype="uint8", transform=t, crs=crs,
                       nodata=255, classes=table) as out:
            out.write(array, window)

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
    ) -> None:
        self.dst = check_destination(dst, overwrite=overwrite)
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
        self._tmp = self.dst.with_name(f".{self.dst.name}.partial.tif")
        self._tmp_cog = self.dst.with_name(f".{self.dst.name}.partial.cog.tif")
        self._ds: Any = None

    def __enter__(self) -> COGWriter:
        self._cleanup()
        try:
            self._ds = rasterio.open(self._tmp, "w", **self.profile)
        except (RasterioError, OSError) as exc:
            raise WriteError(f"{self.dst}: cannot create the output ({exc}); check the folder is writable and has space") from None
        if self.gcps is not None:
            self._ds.gcps = self.gcps
        if self.classes is not None:
            self._ds.write_colormap(1, self.classes.colormap())
            self.tags.update(class_tags(self.classes))
        if self.tags:
            self._ds.update_tags(**self.tags)
        for i, text in enumerate(self.descriptions or (), start=1):
            self._ds.set_band_description(i, text)
        return self

    def write(self, data: np.ndarray, window: Window) -> None:
        """Write a ``(bands, rows, cols)`` array at ``window``."""
        try:
            self._ds.write(data, window=window)
        except (RasterioError, OSError) as exc:
            raise WriteError(f"{self.dst}: writing rows {window.row_off}..{window.row_off + window.height} failed ({exc})") from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            with contextlib.suppress(Exception):
                self._ds.close()
            self._cleanup()
            return
        try:
            self._ds.close()
            self._publish()
        except BaseException:
            self._cleanup()
            raise
        finally:
            self._cleanup()

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
            if self.classes is not None:
                write_qml(self.dst.with_suffix(".qml"), self.classes)
            os.replace(self._tmp_cog, self.dst)
        except (RasterioError, OSError) as exc:
            raise WriteError(f"{self.dst}: finishing the COG failed ({exc}); nothing was written under that name") from None
        log.info("wrote %s", self.dst)

    def _cleanup(self) -> None:
        for p in (self._tmp, self._tmp_cog, self._tmp.with_name(self._tmp.name + ".aux.xml")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
