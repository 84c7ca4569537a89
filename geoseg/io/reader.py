"""Windowed reads that return pixels together with their georeferencing and validity.

``RasterReader`` keeps one dataset handle per thread (GDAL handles are not thread-safe, and GDAL
releases the GIL while it decodes), so windows can be read ahead in background threads.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from geoseg.errors import RasterFormatError, RasterOpenError
from geoseg.io.open import grid_of, open_raster, read_failure
from geoseg.io.windows import clip_window, tile_transform

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "ABSURD",
    "GeoArray",
    "RasterReader",
    "bands_named",
    "coarse_validity",
    "ground_pixel_size",
    "map_ordered",
    "valid_mask",
]

# float values at least this large in magnitude are fill values (3.4e38 and the like), not data
ABSURD = 1e30
# GDAL's complex integer types have no numpy twin: read them as complex floats
_NUMPY_DTYPE = {"complex_int16": "complex64", "complex_int32": "complex128"}


@dataclass
class GeoArray:
    """Pixels that carry their georeferencing.

    Attributes:
        data: ``(bands, rows, cols)`` array.
        valid: ``(rows, cols)`` bool array, True where the pixel holds data.
        transform: affine transform of ``data``'s pixel grid.
        crs: coordinate reference system, or None.
        window: the window of the source raster this was read from, if any.
    """

    data: np.ndarray
    valid: np.ndarray
    transform: Affine
    crs: CRS | None
    window: Window | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return int(self.data.shape[-2]), int(self.data.shape[-1])


def valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Valid pixels of a ``(bands, rows, cols)`` array: not nodata in every band, and finite.

    A pixel is invalid when all of its bands equal ``nodata`` (so a dark pixel with one zero band
    stays valid), or when any band is NaN, +-Inf, or an absurd float (magnitude >= :data:`ABSURD`,
    such as 3.4e38 fill values): one such pixel would otherwise swamp the normalization of every
    tile that touches it.
    """
    valid = np.ones(data.shape[-2:], dtype=bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= ~np.all(data == nodata, axis=0)
    if np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.complexfloating):
        with np.errstate(invalid="ignore", over="ignore"):
            valid &= np.all(np.isfinite(data) & (np.abs(data) < ABSURD), axis=0)
    return valid


def coarse_validity(dataset: Any, cell: int = 16) -> tuple[np.ndarray, Affine]:
    """The share of valid pixels per ``cell`` x ``cell`` block of an open raster, and that grid's
    transform.

    Read through GDAL's dataset mask (nodata in every band, internal mask or alpha) at the coarse
    size, so overviews make it cheap.

    Args:
        dataset: an open rasterio dataset (see :func:`geoseg.io.open_raster`).
        cell: block edge in pixels (>= 1).

    Returns:
        ``(fractions, transform)``: float32 ``(rows, cols)`` in [0, 1],
        ``rows = max(1, height // cell)``.
    """
    rows, cols = max(1, dataset.height // cell), max(1, dataset.width // cell)
    mask = (
        dataset.dataset_mask(out_shape=(rows, cols), resampling=Resampling.average).astype(
            np.float32
        )
        / 255.0
    )
    transform = dataset.transform * Affine.scale(dataset.width / cols, dataset.height / rows)
    return mask, transform


def map_ordered(
    fn: Callable[[T], R], items: Iterable[T], *, workers: int = 2, prefetch: int = 4
) -> Generator[tuple[T, R], None, None]:
    """``(item, fn(item))`` in input order, ``workers`` threads computing up to ``prefetch`` items
    ahead.

    Memory stays bounded by ``prefetch`` results whatever the number of items; ``workers=0``
    computes in the calling thread. Meant for GDAL reads, which release the GIL.
    """
    if workers <= 0:
        for item in items:
            yield item, fn(item)
        return
    pending: deque[tuple[T, Future[R]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="geoseg-read") as pool:
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) > prefetch:
                head, fut = pending.popleft()
                yield head, fut.result()
        while pending:
            head, fut = pending.popleft()
            yield head, fut.result()


def ground_pixel_size(transform: Affine, crs: CRS | str | None, height: int) -> float | None:
    """Ground pixel size in metres (the mean of x and y) of a grid, or None without a CRS.

    A geographic CRS gives metres along the parallel at the grid's centre row.
    """
    if crs is None:
        return None
    ref = CRS.from_user_input(crs)
    size = (abs(transform.a) + abs(transform.e)) / 2
    if ref.is_geographic:
        lat = transform.f + transform.e * height / 2
        return size * 111_320 * max(math.cos(math.radians(lat)), 0.01)
    try:
        factor = ref.linear_units_factor[1]
    except Exception:  # an unusual CRS without linear units
        return None
    return size * float(factor)


def bands_named(dataset: Any, names: Sequence[str], path: str) -> list[int]:
    """1-based indexes of the bands of an open dataset named ``names`` (case-insensitive), by
    description, else by colour interpretation (``red``, ``green``, ``blue``...).

    Raises:
        RasterFormatError: a name no band has, listing the names the raster has.
    """
    described = [(d or "").strip().lower() for d in dataset.descriptions]
    colours = [c.name.lower() for c in dataset.colorinterp]
    out = []
    for name in names:
        key = name.strip().lower()
        for table in (described, colours):
            if key in table:
                out.append(table.index(key) + 1)
                break
        else:
            have = ", ".join(
                f"{i}={d or c}" for i, (d, c) in enumerate(zip(described, colours, strict=True), 1)
            )
            raise RasterFormatError(
                f"{path}: no band is named {name!r}; expected a band description or colour "
                f"interpretation of that name. Its bands are {have}: name one of those, or give "
                "band numbers (e.g. --bands 3,2,1)"
            )
    return out


class RasterReader:
    """Read windows of a raster, boundless at the edges, with a validity mask.

    Args:
        path: local path or ``http(s)://`` URL.
        bands: 1-based band indexes to read, in the order the model wants, or band names
            (matched with the bands' descriptions, then their colour interpretation); default
            all.
        fill: value written into pixels outside the raster.

    Raises:
        RasterOpenError: when the raster cannot be opened.
        RasterFormatError: when a band index is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        bands: Sequence[int] | Sequence[str] | None = None,
        fill: float = 0,
    ) -> None:
        self.path = str(path)
        self.fill = fill
        self._local = threading.local()
        self._handles: list[Any] = []
        self._lock = threading.Lock()
        self._streams: set[Generator[tuple[Any, Any], None, None]] = set()
        ds = self._dataset()
        self.height: int = ds.height
        self.width: int = ds.width
        self.count: int = ds.count
        self.transform: Affine = ds.transform
        self.crs: CRS | None = ds.crs
        self.gcps = ds.gcps if (ds.transform == Affine.identity() and ds.gcps[0]) else None
        self.dtypes: tuple[str, ...] = tuple(ds.dtypes)
        self.descriptions: tuple[str | None, ...] = tuple(ds.descriptions)
        self.block_shape: tuple[int, int] = tuple(ds.block_shapes[0])
        if bands and all(isinstance(b, str) for b in bands):
            bands = bands_named(ds, [str(b) for b in bands], self.path)
        self.bands: tuple[int, ...] = (
            tuple(int(b) for b in bands) if bands else tuple(range(1, ds.count + 1))
        )
        bad = [b for b in self.bands if not 1 <= b <= ds.count]
        if bad:
            raise RasterFormatError(
                f"{self.path}: band(s) {bad} do not exist; the raster has {ds.count} band(s), "
                f"numbered 1..{ds.count}. Pick bands in that range, e.g. --bands "
                f"{','.join(map(str, range(1, min(ds.count, 3) + 1)))}"
            )
        self.nodata: float | None = ds.nodata
        flags = [ds.mask_flag_enums[b - 1] for b in self.bands]
        self._gdal_mask = any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in flags)
        self.dtype = np.result_type(
            *[
                np.dtype(_NUMPY_DTYPE.get(self.dtypes[b - 1], self.dtypes[b - 1]))
                for b in self.bands
            ]
        )

    def _dataset(self) -> Any:
        ds = getattr(self._local, "ds", None)
        if ds is None:
            ds = open_raster(self.path)
            self._local.ds = ds
            with self._lock:
                self._handles.append(ds)
        return ds

    def close(self) -> None:
        """Close every thread's handle, once the reads in flight have finished."""
        for reads in list(self._streams):  # their thread pools wait for running reads
            reads.close()
        self._streams.clear()
        with self._lock:
            for ds in self._handles:
                ds.close()
            self._handles.clear()
        self._local = threading.local()

    def __enter__(self) -> RasterReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, window: Window) -> GeoArray:
        """Read one window, filling pixels outside the raster with ``fill`` (marked invalid).

        Args:
            window: the window in raster pixels; may reach past the raster edge.

        Returns:
            A :class:`GeoArray` of shape ``(len(bands), window.height, window.width)``.

        Raises:
            RasterOpenError: when GDAL cannot decode the window (e.g. a truncated file).
        """
        ds = self._dataset()
        row0, col0 = int(window.row_off), int(window.col_off)
        rows, cols = int(window.height), int(window.width)
        inner = clip_window(window, self.height, self.width)
        r0, c0 = int(inner.row_off), int(inner.col_off)
        r1, c1 = r0 + int(inner.height), c0 + int(inner.width)
        inside = inner.height > 0 and inner.width > 0
        full = inside and (r0, r1, c0, c1) == (row0, row0 + rows, col0, col0 + cols)
        try:
            if full:
                data = ds.read(self.bands, window=inner, out_dtype=self.dtype)
                valid = self._valid(ds, data, inner)
            else:
                data = np.full((len(self.bands), rows, cols), self.fill, dtype=self.dtype)
                valid = np.zeros((rows, cols), dtype=bool)
                if inside:
                    part = ds.read(self.bands, window=inner, out_dtype=self.dtype)
                    sl = (slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0))
                    data[(slice(None), *sl)] = part
                    valid[sl] = self._valid(ds, part, inner)
        except RasterioIOError as exc:
            raise RasterOpenError(
                read_failure(self.path, exc, f"rows {r0}-{r1}, cols {c0}-{c1}")
            ) from None
        return GeoArray(data, valid, tile_transform(window, self.transform), self.crs, window)

    def _valid(self, ds: Any, data: np.ndarray, window: Window) -> np.ndarray:
        valid = valid_mask(data, self.nodata)
        if self._gdal_mask:
            valid &= ds.read_masks(self.bands[0], window=window) > 0
        return valid

    def sample(self, *, windows: int = 5, size: int = 256) -> GeoArray:
        """Pixels from a ``windows`` x ``windows`` grid of windows of ``size`` px spread over the
        raster, side by side in one ``(bands, rows, cols)`` array: a bounded-cost look at the
        values, whatever the raster's size or layout."""
        h, w = min(size, self.height), min(size, self.width)
        rows = sorted({round(i * (self.height - h) / max(windows - 1, 1)) for i in range(windows)})
        cols = sorted({round(j * (self.width - w) / max(windows - 1, 1)) for j in range(windows)})
        parts = [self.read(Window(c, r, w, h)) for r in rows for c in cols]
        data = np.concatenate([p.data for p in parts], axis=2)
        valid = np.concatenate([p.valid for p in parts], axis=1)
        return GeoArray(data, valid, self.transform, self.crs)

    @property
    def grid(self) -> dict[str, Any]:
        """Height, width, transform, CRS (and GCPs if the raster has them instead of a
        transform): the keywords that make an output raster on this raster's grid."""
        grid = grid_of(self)
        if self.gcps is not None:
            grid["gcps"] = self.gcps
        return grid

    @property
    def pixel_size(self) -> float | None:
        """Ground pixel size in metres (the mean of x and y), or None without a CRS or transform."""
        if self.gcps is not None:
            return None
        return ground_pixel_size(self.transform, self.crs, self.height)

    def read_many(
        self, windows: Iterable[Window], *, workers: int = 2, prefetch: int = 4
    ) -> Iterator[GeoArray]:
        """Read windows in order, ``workers`` threads reading up to ``prefetch`` windows ahead.

        Memory stays bounded by ``prefetch`` windows whatever the number of windows. :meth:`close`
        first waits for the reads in flight, so a consumer that stops early (an exception, Ctrl-C)
        never has a handle closed under a reading thread.
        """
        for _, array in self.map(self.read, windows, workers=workers, prefetch=prefetch):
            yield array

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, workers: int = 2, prefetch: int = 4
    ) -> Iterator[tuple[T, R]]:
        """:func:`map_ordered` for functions that read from this raster (``fn`` calls
        :meth:`read`): ``(item, fn(item))`` in order, computed ahead in ``workers`` threads.

        The stream belongs to the reader: :meth:`close` first stops it and waits for the reads in
        flight, so a consumer that stops early (an exception, a signal) never has a handle closed
        under a reading thread.
        """
        stream = map_ordered(fn, items, workers=workers, prefetch=prefetch)
        self._streams.add(stream)
        try:
            yield from stream
        finally:
            stream.close()
            self._streams.discard(stream)
