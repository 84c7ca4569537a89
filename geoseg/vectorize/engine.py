"""``vectorize_raster``: a class mask of any size to polygons, block by block, on all cores.

Blocks (aligned to the mask's internal tiles) are polygonized by a pool of worker threads (the
boundary tracer, GDAL reads and shapely's array operations release the GIL) or processes, in
raster order. Polygons that touch no block seam are finished in the worker and written at once;
pieces on seams wait in a :class:`SeamMerger` until their row of blocks is done, then merge. Memory
holds the blocks in flight and the seam pieces of one row of blocks, whatever the mask's size.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.errors import RasterioError
from rasterio.windows import Window

from geoseg.classes import ClassTable
from geoseg.errors import NegativeClassWarning, RasterFormatError, RasterOpenError
from geoseg.io.atomic import check_paths
from geoseg.io.open import open_raster, read_failure
from geoseg.io.windows import clip_window
from geoseg.io.writer import check_destination
from geoseg.provenance import Provenance
from geoseg.vectorize.finish import Cleanup, FeatureBatch, finish, metric_for
from geoseg.vectorize.options import VectorizeOptions
from geoseg.vectorize.polygonize import Edges, Pieces, polygonize_block, sieve_block
from geoseg.vectorize.seams import SeamMerger
from geoseg.vectorize.sinks import format_of, write_features
from geoseg.vectorize.source import (
    MaskSource,
    block_windows,
    check_confidence_values,
    open_mask,
)

__all__ = ["VectorizeResult", "vectorize_raster"]

log = logging.getLogger(__name__)

BUILDING_NAMES = ("building", "buildings", "bldg")


@dataclass
class VectorizeResult:
    """What a vectorization wrote and how fast."""

    path: Path
    features: int
    layers: list[str]
    blocks: int
    seconds: float
    crs: str | None  # of the written file
    classes: dict[int, str] = field(default_factory=dict)

    @property
    def features_per_second(self) -> float:
        return self.features / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class _Options:
    connectivity: int
    sieve: int | None
    simplify_px: float | None
    exclude: frozenset[int]
    cleanup: Cleanup


def vector_provenance(mask: str | os.PathLike[str], options: dict[str, Any]) -> Provenance:
    """The provenance of polygons made from ``mask`` with the vectorize ``options``: the mask's
    own (a geoseg prediction's model, options and input), its options extended with
    ``vectorize``, and the time of vectorizing; a mask without provenance is the input."""
    from geoseg.io.info import raster_provenance
    from geoseg.provenance import utc_now

    prov = raster_provenance(mask)
    if prov is None:
        return Provenance(None, None, {"vectorize": options}, (str(mask),))
    return prov.replace(options={**prov.options, "vectorize": options}, created=utc_now())


def _read_block(
    source: MaskSource, window: Window, halo: int
) -> tuple[np.ndarray, np.ndarray | None, int, int]:
    """The block (grown by ``halo`` pixels inside the raster), its confidence, and the halo's
    offsets."""
    grown = clip_window(window, source.height, source.width, grow=halo)
    r0, c0 = int(grown.row_off), int(grown.col_off)
    r1, c1 = r0 + int(grown.height), c0 + int(grown.width)
    try:
        with open_raster(source.path) as ds:
            data = ds.read(1, window=grown)
    except RasterioError as exc:
        raise RasterOpenError(
            read_failure(source.path, exc, f"rows {r0}-{r1}, cols {c0}-{c1}")
        ) from None
    conf = None
    if source.confidence is not None:
        inner = Window(
            int(window.col_off), int(window.row_off), int(window.width), int(window.height)
        )
        try:
            with open_raster(source.confidence) as cds:
                arr = cds.read(window=inner)
                nodata = cds.nodata
        except RasterioError as exc:
            where = f"rows {inner.row_off}-{inner.row_off + inner.height}, cols "
            where += f"{inner.col_off}-{inner.col_off + inner.width}"
            raise RasterOpenError(
                f"--confidence {read_failure(source.confidence, exc, where)}"
            ) from None
        check_confidence_values(source.confidence, arr, nodata)
        scale = 255.0 if arr.dtype == np.uint8 else 1.0
        conf = (arr.max(axis=0) if arr.shape[0] > 1 else arr[0]).astype(np.float64) / scale
    return data, conf, int(window.row_off) - r0, int(window.col_off) - c0


def _block_job(
    args: tuple[MaskSource, _Options, Window],
) -> tuple[FeatureBatch | None, Pieces, Edges, tuple[int, int]]:
    """Polygonize one block: finished polygons (map coordinates), the pieces on seams (pixel
    space) with their indexes along the block's edges, and (pixels, lowest id) of negative class
    ids, which make no polygon."""
    source, opt, window = args
    halo = 2 * opt.sieve + 2 if opt.sieve else 0
    data, conf, dr, dc = _read_block(source, window, halo)
    if opt.sieve:
        data = sieve_block(data, opt.sieve, connectivity=opt.connectivity, nodata=source.nodata)
    rows, cols = int(window.height), int(window.width)
    data = np.ascontiguousarray(data[dr : dr + rows, dc : dc + cols])
    negative = (0, 0)
    if data.dtype.kind == "i":
        below = (data < 0) if source.nodata is None else (data < 0) & (data != source.nodata)
        if below.any():
            negative = (int(below.sum()), int(data[below].min()))
    row_off, col_off = int(window.row_off), int(window.col_off)
    seams = (
        row_off > 0,
        row_off + rows < source.height,
        col_off > 0,
        col_off + cols < source.width,
    )
    pieces, edges = polygonize_block(
        data,
        row_off=row_off,
        col_off=col_off,
        connectivity=opt.connectivity,
        nodata=source.nodata,
        exclude=opt.exclude,
        simplify_px=opt.simplify_px,
        confidence=conf,
        seams=seams,
    )
    on_seam = np.zeros(len(pieces), bool)
    for side, inside in zip(("top", "bottom", "left", "right"), seams, strict=True):
        if inside:
            on_seam[edges[side][edges[side] >= 0]] = True
    seam_ids = np.flatnonzero(on_seam)
    renumber = np.full(len(pieces) + 1, -1, np.int64)
    renumber[seam_ids] = np.arange(len(seam_ids))
    done = finish(
        pieces.take(np.flatnonzero(~on_seam)),
        source,
        opt.cleanup,
        metric_for(source.crs),
        window,
        pieces.take(seam_ids),
    )
    return (
        None if done is None else done.packed(),
        pieces.take(seam_ids),
        {k: renumber[v] for k, v in edges.items()},
        negative,
    )


def _submitted(executor: Executor | None, jobs: list[Any], ahead: int) -> Iterator[Any]:
    """Results of ``_block_job`` over ``jobs`` in order, the first ``ahead`` submitted at once
    (before the caller iterates) and then one more per result taken."""
    if executor is None:
        return (_block_job(job) for job in jobs)
    pending = deque(executor.submit(_block_job, job) for job in jobs[:ahead])
    rest = iter(jobs[ahead:])

    def gen() -> Iterator[Any]:
        while pending:
            fut = pending.popleft()
            nxt = next(rest, None)
            if nxt is not None:
                pending.append(executor.submit(_block_job, nxt))
            yield fut.result()

    return gen()


def _warm_up() -> None:
    from geoseg.vectorize._trace import trace_block

    trace_block(np.zeros((2, 2), np.uint8), np.ones((2, 2), bool))


def _mp_context() -> multiprocessing.context.BaseContext:
    """fork where it is safe (Linux, no other Python thread): fast to start, and scripts without
    a ``__main__`` guard still work; spawn otherwise."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _class_ids(items: Sequence[int | str] | None, classes: ClassTable, what: str) -> frozenset[int]:
    """Class ids from ids or names (names looked up in the class table)."""
    out = set()
    by_name = {c.name.lower(): c.id for c in classes}
    for item in items or ():
        if isinstance(item, (int, np.integer)) or str(item).isdigit():
            out.add(int(item))
        elif str(item).lower() in by_name:
            out.add(by_name[str(item).lower()])
        else:
            raise RasterFormatError(
                f"{what}: no class named {item!r}; the mask's classes are "
                f"{', '.join(f'{c.id}={c.name}' for c in classes) or 'unnamed ids'}"
            )
    return frozenset(out)


def _pixels(value: float | str | None, pixel_size: float, what: str) -> float | None:
    """A tolerance in pixels from map units (a number) or ``"<n>px"``."""
    if value is None:
        return None
    text = str(value).strip().lower()
    try:
        pixels = float(text[:-2]) if text.endswith("px") else float(text) / pixel_size
    except ValueError:
        pixels = math.nan
    if not pixels >= 0 or math.isinf(pixels):  # NaN fails the comparison
        raise RasterFormatError(
            f"{what}: expected a number >= 0 in map units or pixels like '1.5px', got {value!r}"
        )
    return pixels


def _executor(pool: str | Executor, n_workers: int) -> tuple[Executor | None, int]:
    """Where the blocks run: the caller's executor, threads, processes, or this thread (None);
    and how many workers that is."""
    if isinstance(pool, Executor):
        return pool, max(n_workers, 1)
    if pool not in ("thread", "process"):
        raise RasterFormatError(f"pool must be 'thread', 'process' or an Executor, got {pool!r}")
    if n_workers <= 1:
        return None, n_workers
    if pool == "thread":
        _warm_up()  # compile (or load) the tracer once, before threads race to do it
        return ThreadPoolExecutor(n_workers, thread_name_prefix="geoseg-vectorize"), n_workers
    context = _mp_context()
    if context.get_start_method() == "fork":
        _warm_up()  # forked workers share the compiled polygonizer instead of each loading it
    return ProcessPoolExecutor(n_workers, mp_context=context), n_workers


def _plan(mask: Any, source: Any, opts: VectorizeOptions) -> _Options:
    """What every block needs to know, with class names resolved against the mask's table."""
    if opts.exclude is None:
        excluded = frozenset(c.id for c in source.classes if c.name.lower() == "background")
    else:
        excluded = _class_ids(opts.exclude, source.classes, "exclude")
    if opts.regularize is True:
        squared = frozenset(c.id for c in source.classes if c.name.lower() in BUILDING_NAMES)
        if not squared:
            raise RasterFormatError(
                f"{mask}: --regularize needs a class named building(s); name it with --classes "
                "or pass the class id, e.g. --regularize-class 1"
            )
    else:
        squared = _class_ids(opts.regularize or (), source.classes, "regularize")
    return _Options(
        opts.connectivity,
        opts.sieve,
        _pixels(opts.simplify, source.pixel_size, "simplify"),
        excluded,
        Cleanup(min_area=opts.min_area, fill_holes=opts.fill_holes, regularize=squared),
    )


def vectorize_raster(
    mask: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    options: VectorizeOptions | Mapping[str, Any] | None = None,
    *,
    classes: ClassTable | None = None,
    confidence: str | os.PathLike[str] | None = None,
    pool: str | Executor = "thread",
    overwrite: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
    **overrides: Any,
) -> VectorizeResult:
    """Turn a class mask into polygons with class names, areas in metres and the mask's CRS.

    Args:
        mask: single-band integer class mask (e.g. from ``geoseg predict``).
        dst: ``.gpkg``, ``.geojson``, ``.fgb`` or ``.parquet`` (GeoParquet).
        options: how (:class:`~geoseg.vectorize.options.VectorizeOptions`: layout,
            connectivity, sieve, min_area, fill_holes, simplify, regularize, exclude, keep_crs,
            layer, block_size, workers); keyword ``overrides`` change fields of it, e.g.
            ``vectorize_raster(mask, dst, min_area=10, simplify="1px")``.
        classes: class table to use instead of the mask's (names, colours).
        confidence: a ``--confidence``/``--probabilities`` raster of the same prediction, for
            ``mean_confidence``.
        pool: ``"thread"`` (shared memory, the default), ``"process"`` (separate interpreters),
            or an ``Executor`` you own (e.g. a Dask client's ``get_executor()``: blocks run on a
            cluster, seams still merge here in order, so the polygons are the same).
        overwrite: replace an existing ``dst``.
        progress: called with ``(blocks done, blocks in all, features so far)``.

    Raises:
        RasterOpenError, RasterFormatError, OutputExistsError, WriteError.
    """
    start = time.perf_counter()
    opts = VectorizeOptions.of(options, **overrides)
    check_paths({"MASK": mask, "--confidence": confidence}, {"DST": dst})
    check_destination(dst, overwrite=overwrite)
    format_of(dst)
    source = open_mask(mask, classes=classes, confidence=confidence)
    opt = _plan(mask, source, opts)
    connectivity, workers = opts.connectivity, opts.workers
    grid = block_windows(source, opts.block_size)
    total = sum(len(row) for row in grid)
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    n_workers = min(n_workers, total)
    merger = SeamMerger(connectivity=connectivity, multipolygons=connectivity == 8)
    metric = metric_for(source.crs)
    state = {"blocks": 0, "features": 0, "negative": 0, "lowest": 0}

    cells = [(r, c) for r, row in enumerate(grid) for c in range(len(row))]
    jobs = [(source, opt, grid[r][c]) for r, c in cells]
    owned = not isinstance(pool, Executor)
    executor, n_workers = _executor(pool, n_workers)
    # the first blocks start now, while this process loads the vector writers
    results = _submitted(executor, jobs, 2 * n_workers)

    def batches() -> Iterator[FeatureBatch]:
        for (r, c), (done, seam, edges, negative) in zip(cells, results, strict=True):
            state["negative"] += negative[0]
            state["lowest"] = min(state["lowest"], negative[1])
            if done is not None:
                state["features"] += len(done)
                yield done
            merger.add((r, c), seam, edges)
            if c == len(grid[r]) - 1:
                merged = merger.release(r, last=r == len(grid) - 1)
                if merged is not None:
                    out = finish(merged, source, opt.cleanup, metric)
                    if out is not None:
                        state["features"] += len(out)
                        yield out
            state["blocks"] += 1
            if progress is not None:
                progress(state["blocks"], total, state["features"])

    geometry_type = "MultiPolygon" if connectivity == 8 else "Polygon"
    made = vector_provenance(
        mask,
        {
            **opts.record(),
            "regularize": sorted(opt.cleanup.regularize),
            "exclude": sorted(opt.exclude),
        },
    )
    try:
        count, layers = write_features(
            dst,
            batches(),
            crs=source.crs,
            classes=source.classes,
            geometry_type=geometry_type,
            layer=opts.layer,
            layout=opts.layout,
            keep_crs=opts.keep_crs,
            confidence=confidence is not None,
            overwrite=overwrite,
            metadata=made.to_tags(),
        )
    finally:
        if executor is not None and owned:
            executor.shutdown(cancel_futures=True)
    if state["negative"]:
        warnings.warn(
            f"{mask}: {state['negative']} pixel(s) hold negative class ids (down to "
            f"{state['lowest']}), which make no polygons: class ids start at 0. Remap them (e.g. "
            "gdal_calc.py) or make that value the mask's nodata (gdal_edit.py -a_nodata)",
            NegativeClassWarning,
            stacklevel=2,
        )
    seconds = time.perf_counter() - start
    log.info("%s: %d polygons from %d blocks in %.1f s", dst, count, total, seconds)
    written = None if source.crs is None else source.crs.to_string()
    if format_of(dst) == "GeoJSON" and not opts.keep_crs:
        written = "EPSG:4326"  # RFC 7946: reprojected on writing
    return VectorizeResult(
        Path(dst), count, layers, total, seconds, written, {c.id: c.name for c in source.classes}
    )
