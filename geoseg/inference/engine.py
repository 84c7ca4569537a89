"""``predict_raster``: stream a raster of any size through a segmentation model into COGs.

Tiles are read ahead in background threads (GDAL releases the GIL), batched through the model,
blended into a band of rows that is at most one tile high, and finished rows are written behind
by another thread. Memory does not grow with the raster's height; very wide rasters are split
into column stripes. Any block of the output can be predicted on its own with identical values
(:func:`predict_block`), because every pixel sums exactly the same tiles.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch import nn

from geoseg.errors import BandMismatchError, NoValidDataWarning, RasterFormatError, TilingError
from geoseg.inference.accumulator import FinishedRows, RowAccumulator
from geoseg.inference.blending import blend_weights
from geoseg.inference.cache import ModelCache, file_digest
from geoseg.inference.compat import InputAdapter, check_input
from geoseg.inference.options import TTA_MODES, Precision, PredictOptions
from geoseg.inference.runtime import Runner, cached_frozen, make_runner, resolve_device
from geoseg.inference.tiles import (
    MASK_NODATA,
    Finished,
    checked_tiling,
    finalize,
    geoarray_of,
    read_tile,
)
from geoseg.io.atomic import check_paths
from geoseg.io.reader import GeoArray, RasterReader, map_ordered
from geoseg.io.windows import Tile, TilePlan, plan_tiles, tile_transform
from geoseg.io.writer import COG_BLOCK, COGWriter, check_destination
from geoseg.models.checkpoint import LoadedModel, load_checkpoint
from geoseg.models.config import ModelConfig, _files, read_config

__all__ = [
    "PredictOptions",
    "PredictionResult",
    "iter_probabilities",
    "predict_block",
    "predict_classes",
    "predict_raster",
    "resolve_model",
]

log = logging.getLogger(__name__)

ModelSource = str | os.PathLike[str] | LoadedModel | nn.Module
STRIPE_BUDGET = (
    128 * 2**20
)  # bytes of accumulator per column stripe (a stripe is 8704 px wide for 6 classes)
CONFIDENCE_NODATA = 0  # confidence where the input has no data; valid pixels are 1..255
GDAL_CACHE_LIMITS = (
    16 * 2**20,
    256 * 2**20,
)  # GDAL block cache while predicting: at least, at most


@dataclass
class PredictionResult:
    """What a prediction produced and how fast.

    Attributes:
        mask: path of the class mask (None for :func:`predict_block`).
        probabilities: path of the probability raster, if asked for.
        confidence: path of the confidence raster, if asked for.
        tiles: tiles in the plan; ``tiles_run`` went through the model, ``tiles_skipped`` held no
            data.
        precision: precision used (``auto`` resolved).
        device: device used.
        seconds: wall time.
        megapixels_per_second: raster megapixels per wall-clock second.
    """

    mask: Path | None
    height: int = 0
    width: int = 0
    probabilities: Path | None = None
    confidence: Path | None = None
    tiles: int = 0
    tiles_run: int = 0
    tiles_skipped: int = 0
    precision: str = "fp32"
    device: str = "cpu"
    seconds: float = 0.0
    megapixels_per_second: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# Model files other than checkpoints, by suffix: a loader ``(path, device=...) -> LoadedModel``, or
# "module:function" imported on first use (exported models are run by the layer above).
MODEL_LOADERS: dict[str, str | Callable[..., LoadedModel]] = {
    ".onnx": "geoseg.export.runner:load_onnx"
}


def resolve_model(
    model: ModelSource, *, config: ModelConfig | None = None, device: torch.device | str = "cpu"
) -> LoadedModel:
    """A :class:`LoadedModel` from a checkpoint path (or an exported ``.onnx`` file), a bundled
    model's name (``quality``, ``fast``), a LoadedModel, or a module plus its config."""
    from geoseg.models.default import named_model

    model = named_model(model)
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        loader = MODEL_LOADERS.get(Path(model).suffix.lower())
        if loader is not None:
            if isinstance(loader, str):
                import importlib

                module, name = loader.split(":")
                loader = getattr(importlib.import_module(module), name)
            return loader(model, device=device)
        return load_checkpoint(model, device=device)
    if config is None:
        raise TilingError(
            "a bare torch module needs config=ModelConfig(...) (classes, bands, normalization)"
        )
    return LoadedModel(model, config)


def calibration_temperature(config: ModelConfig) -> float | None:
    """The temperature a calibrated checkpoint records (``metrics.calibration.temperature``), if
    any."""
    value = (config.metrics.get("calibration") or {}).get("temperature")
    return float(value) if value and float(value) > 0 and float(value) != 1.0 else None


class Tempered(nn.Module):
    """A network whose logits are divided by a calibration temperature."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, float(temperature)
        self.runs_outside_torch = bool(getattr(model, "runs_outside_torch", False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature


@dataclass
class _Job:
    reader: RasterReader
    plan: TilePlan
    runner: Runner
    weights: np.ndarray
    weights_t: torch.Tensor
    config: ModelConfig
    batch_size: int
    workers: int
    adapt: InputAdapter | None = None
    progress: Callable[[int, int, float], None] | None = None
    total: int = 0  # tiles to visit (a tile shared by two column stripes counts twice)
    done: int = 0
    stats: dict[str, int] = field(default_factory=lambda: {"run": 0, "skipped": 0})


def _cached_start(
    model: ModelSource, dev: torch.device, options: PredictOptions
) -> tuple[LoadedModel | None, ModelCache | None, Precision]:
    """For a checkpoint path on CPU: the model cache keyed by the checkpoint's bytes, and, when an
    earlier run recorded that a frozen trace pays here, that frozen module with the checkpoint's
    config, so the eager network need not be built (nor segmentation-models-pytorch imported).

    Returns ``(loaded or None, cache or None, precision)`` with ``auto`` resolved when recorded.
    """
    if (
        not isinstance(model, (str, os.PathLike))
        or dev.type != "cpu"
        or options.tta not in TTA_MODES
    ):
        return None, None, options.precision
    weights, sidecar = _files(Path(model))
    cache = ModelCache(file_digest(weights, sidecar))
    if not cache.enabled:
        return None, cache, options.precision
    cfg = read_config(model)
    tile = int(options.tile_size or cfg.tile_size)
    frozen, precision = cached_frozen(
        cache, dev, options.precision, (1, cfg.in_channels, tile, tile)
    )
    return (
        (LoadedModel(frozen, cfg) if frozen is not None else None),
        cache,
        cast(Precision, precision),
    )


def _setup(
    src: str | os.PathLike[str],
    model: ModelSource,
    options: PredictOptions,
    config: ModelConfig | None,
) -> _Job:
    from geoseg.models.default import named_model

    model = named_model(model)
    dev = resolve_device(options.device)
    batch_size = options.batch_size
    if batch_size is None:  # on CPU larger batches cost memory and gain no throughput
        batch_size = 8 if dev.type == "cuda" else 2
    exported = isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() in MODEL_LOADERS
    cached, cache, precision = (
        (None, None, options.precision) if exported else _cached_start(model, dev, options)
    )
    loaded = cached or resolve_model(model, config=config, device=dev if exported else "cpu")
    cfg = loaded.config
    # a graph run by another runtime (onnxruntime) is neither traced nor autocast
    outside = bool(getattr(loaded.model, "runs_outside_torch", False))
    tile = int(options.tile_size or cfg.tile_size)  # checked before the raster is opened
    ov = checked_tiling(
        tile, cfg.overlap if options.overlap is None else options.overlap, cfg.output_stride
    )
    reader = RasterReader(src, bands=options.bands)
    if len(reader.bands) != cfg.in_channels:
        names = f" ({', '.join(cfg.band_names)})" if cfg.band_names else ""
        count = reader.count
        reader.close()
        if count >= cfg.in_channels:
            hint = ",".join(str(b) for b in range(1, cfg.in_channels + 1))
            fix = f"choose them with --bands {hint} (1-based, in the model's order)"
        else:  # fewer bands than the model takes: repeating one is the only way, and a weak one
            hint = ",".join(str(min(b, count)) for b in range(1, cfg.in_channels + 1))
            fix = (
                f"use imagery with {cfg.in_channels} bands, or repeat bands with --bands {hint} "
                "(1-based; e.g. a grey band as red, green and blue; expect poorer results)"
            )
        raise BandMismatchError(
            f"{src}: the model expects {cfg.in_channels} band(s){names} but {len(reader.bands)} "
            f"were selected from a raster of {count}; {fix}"
        )
    try:
        adapt = check_input(reader, cfg, options, str(src))
    except BaseException:
        reader.close()
        raise
    plan = plan_tiles(reader.height, reader.width, tile, ov)
    weights = blend_weights(options.blend, tile, plan.overlap)
    temperature = calibration_temperature(cfg)
    if temperature is not None:  # calibrated probabilities: softmax(logits / T); classes unchanged
        loaded = LoadedModel(Tempered(loaded.model, temperature), cfg)
    # on CPU a frozen TorchScript copy (batch norms folded) runs where it was measured to pay; the
    # measurement, the frozen module and the precision `auto` chose are kept in the model cache.
    # A graph run by another runtime (onnxruntime) is neither traced nor autocast.
    freeze = False if outside or dev.type != "cpu" else None
    runner = make_runner(
        loaded.model,
        dev,
        "fp32" if outside else precision,
        options.tta,
        freeze=freeze,
        cache=cache,
        tiles=len(plan),
    )
    return _Job(
        reader,
        plan,
        runner,
        weights,
        torch.from_numpy(weights).to(dev),
        cfg,
        batch_size,
        options.workers,
        None if adapt.identity else adapt,
    )


def _stripes(plan: TilePlan, classes: int, budget: int | None = None) -> list[Window]:
    """Column stripes whose accumulators fit ``budget`` bytes (one stripe for most rasters)."""
    budget = STRIPE_BUDGET if budget is None else budget
    per_col = plan.tile_size * (classes * 4 + 4 + 1)
    width = max(plan.tile_size, (budget // per_col) // COG_BLOCK * COG_BLOCK)
    if width >= plan.width:
        return [Window(0, 0, plan.width, plan.height)]
    return [
        Window(c, 0, min(width, plan.width - c), plan.height) for c in range(0, plan.width, width)
    ]


def _gdal_cache_bytes(
    reader: RasterReader, plan: TilePlan, stripe: Window, output_bands: int
) -> int:
    """A GDAL block cache that holds the input blocks one row band of tiles touches, plus one row of
    output blocks: tiles overlap, so each input block is decoded once; and no more than that, as
    GDAL's default (5 % of RAM) would let the cache grow with the raster."""
    block_h, block_w = reader.block_shape
    rows = plan.tile_size + block_h
    cols = min(reader.width, int(stripe.width) + plan.tile_size + block_w)
    itemsize = np.dtype(reader.dtype).itemsize
    need = rows * cols * reader.count * itemsize + COG_BLOCK * reader.width * output_bands
    low, high = GDAL_CACHE_LIMITS
    return int(min(max(need * 5 // 4, low), high))


def _run_region(job: _Job, region: Window) -> Iterator[FinishedRows]:
    """Blend every tile that touches ``region``; yield finished rows top to bottom."""
    plan = job.plan
    tiles = list(plan.tiles(region))
    last_in_row = {t.grid_row: t.index for t in tiles}
    acc = RowAccumulator(job.config.num_classes, region, plan.tile_size)
    norm = job.config.normalization

    def prepare(tile: Tile) -> tuple[np.ndarray, np.ndarray] | None:
        return read_tile(job.reader, tile.window, norm, job.adapt)

    pending: list[tuple[Tile, tuple[np.ndarray, np.ndarray] | None]] = []
    ready = 0  # tiles in `pending` that hold data

    def flush() -> Iterator[FinishedRows]:
        batch = [item for _, item in pending if item is not None]
        probs = np.empty(
            (0,), np.float32
        )  # weighted probabilities of the batch, one per tile with data
        if batch:
            x = torch.from_numpy(np.stack([x for x, _ in batch]))
            if job.runner.device.type == "cuda":
                x = x.pin_memory()
            with torch.inference_mode():
                probs = job.runner(x).mul_(job.weights_t).cpu().numpy()
        i = 0
        for tile, item in pending:
            if item is None:  # no valid pixel: nothing to blend, its pixels stay invalid
                job.stats["skipped"] += 1
            else:
                acc.add(
                    probs[i],
                    job.weights,
                    item[1],
                    int(tile.window.row_off),
                    int(tile.window.col_off),
                )
                job.stats["run"] += 1
                i += 1
            job.done += 1
            if job.progress is not None:
                job.progress(job.done, job.total, job.reader.height * job.reader.width / 1e6)
            if last_in_row[tile.grid_row] == tile.index:
                done = acc.release(plan.rows_final_after(tile.grid_row))
                if done is not None:
                    yield done
        pending.clear()

    prefetch = job.batch_size * 2 + job.workers
    for tile, item in map_ordered(prepare, tiles, workers=job.workers, prefetch=prefetch):
        pending.append((tile, item))
        ready += item is not None
        if ready >= job.batch_size:
            yield from flush()
            ready = 0
    yield from flush()
    rest = acc.release(region.row_off + region.height)
    if rest is not None:
        yield rest


def predict_block(
    src: str | os.PathLike[str],
    model: ModelSource,
    block: Window,
    options: PredictOptions | None = None,
    *,
    config: ModelConfig | None = None,
    **overrides: Any,
) -> GeoArray:
    """Class probabilities of one block of the raster, identical to that block of a full run.

    Args:
        src: input raster path or URL.
        model: checkpoint path, :class:`LoadedModel`, or a module (then pass ``config``).
        block: the output window, in the raster's pixel grid.
        options: how to predict (:class:`PredictOptions`); keyword ``overrides`` change fields of
            it.
        config: model config for a bare module.

    Returns:
        A :class:`GeoArray` with ``(classes, rows, cols)`` float32 probabilities, the validity
        mask, and the block's transform and CRS.
    """
    job = _setup(src, model, PredictOptions.of(options, **overrides), config)
    try:
        parts = [geoarray_of(rows, job.reader) for rows in _run_region(job, block)]
    finally:
        job.reader.close()
    data = np.concatenate([p.data for p in parts], axis=1)
    valid = np.concatenate([p.valid for p in parts], axis=0)
    return GeoArray(data, valid, parts[0].transform, job.reader.crs, block)


def predict_classes(
    src: str | os.PathLike[str],
    model: ModelSource | None = None,
    options: PredictOptions | None = None,
    *,
    block: Window | None = None,
    config: ModelConfig | None = None,
    **overrides: Any,
) -> GeoArray:
    """Class ids of a raster (or of one ``block``) in memory, equal to the mask
    :func:`predict_raster` writes.

    Args:
        src: input raster path or URL.
        model: checkpoint path, :class:`LoadedModel`, or a module (then pass ``config``);
            ``None``: the bundled land-cover model.
        options: how to predict (:class:`PredictOptions`); keyword ``overrides`` change fields of
            it.
        block: the output window (default: the whole raster).
        config: model config for a bare module.

    Returns:
        A :class:`GeoArray` whose ``data`` is ``(1, rows, cols)`` uint8 class ids (255 where the
        input has no data), with the validity mask, transform and CRS.
    """
    if model is None:
        from geoseg.models.default import default_model

        model = default_model()
    job = _setup(src, model, PredictOptions.of(options, **overrides), config)
    region = block if block is not None else Window(0, 0, job.reader.width, job.reader.height)
    try:
        parts = [finalize(rows) for rows in _run_region(job, region)]
    finally:
        job.reader.close()
    ids = np.concatenate([p.classes for p in parts], axis=1)
    valid = np.concatenate([p.valid for p in parts], axis=0)
    return GeoArray(
        ids, valid, tile_transform(region, job.reader.transform), job.reader.crs, region
    )


def output_writers(
    cfg: ModelConfig,
    geo: dict[str, Any],
    dst: str | os.PathLike[str],
    probabilities: str | os.PathLike[str] | None,
    confidence: str | os.PathLike[str] | None,
    *,
    overwrite: bool,
) -> list[tuple[COGWriter, str]]:
    """The COG writers of one prediction, each with the :class:`Finished` attribute it writes."""
    tags = {
        "GEOSEG_MODEL": f"{cfg.architecture}-{cfg.encoder}",
        "GEOSEG_VERSION": cfg.geoseg_version,
    }
    outputs_of: list[tuple[COGWriter, str]] = [
        (
            COGWriter(
                dst,
                count=1,
                dtype="uint8",
                nodata=MASK_NODATA,
                classes=cfg.classes,
                resampling="mode",
                descriptions=["class"],
                tags=tags,
                overwrite=overwrite,
                **geo,
            ),
            "classes",
        )
    ]
    if probabilities is not None:
        outputs_of.append(
            (
                COGWriter(
                    probabilities,
                    count=cfg.num_classes,
                    dtype="uint8",
                    nodata=None,
                    resampling="average",
                    descriptions=cfg.classes.names,
                    tags=tags,
                    overwrite=overwrite,
                    mask=True,
                    **geo,
                ),
                "probabilities",
            )
        )
    if confidence is not None:
        # the winning class's probability is at least 1/classes, so 0 is free to mean "no data": a
        # nodata value QGIS 3.22 reads without complaint (it shows an internal mask as an extra
        # alpha band)
        outputs_of.append(
            (
                COGWriter(
                    confidence,
                    count=1,
                    dtype="uint8",
                    nodata=CONFIDENCE_NODATA,
                    resampling="average",
                    descriptions=["confidence"],
                    tags=tags,
                    overwrite=overwrite,
                    **geo,
                ),
                "confidence",
            )
        )
    return outputs_of


def iter_probabilities(
    src: str | os.PathLike[str],
    model: ModelSource | None = None,
    options: PredictOptions | None = None,
    *,
    config: ModelConfig | None = None,
    **overrides: Any,
) -> Iterator[GeoArray]:
    """Blended class probabilities of a whole raster, one finished band of rows at a time.

    The same tiles, blending and values as :func:`predict_raster`, for code that needs the
    probabilities themselves (diagnostics, calibration) in bounded memory. Very wide rasters come
    in column stripes: each array's ``window`` says where it sits.

    Yields:
        :class:`GeoArray` values with ``(classes, rows, cols)`` float32 probabilities.
    """
    opts = PredictOptions.of(options, **overrides)
    if model is None:
        from geoseg.models.default import default_model

        model = default_model()
    job = _setup(src, model, opts, config)
    try:
        for region in _stripes(job.plan, job.config.num_classes):
            for rows in _run_region(job, region):
                yield geoarray_of(rows, job.reader)
    finally:
        job.reader.close()


def predict_raster(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    model: ModelSource | None = None,
    options: PredictOptions | None = None,
    *,
    config: ModelConfig | None = None,
    probabilities: str | os.PathLike[str] | None = None,
    confidence: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int, float], None] | None = None,
    **overrides: Any,
) -> PredictionResult:
    """Segment a raster of any size into a class-mask COG (and optional probability/confidence
    COGs).

    Args:
        src: input raster path or ``http(s)://`` URL; ``(bands, rows, cols)`` of any dtype.
        dst: output class mask (uint8, nodata 255, colour table and class names).
        model: checkpoint path, :class:`LoadedModel`, or a module (then pass ``config``);
            ``None``: the bundled land-cover model.
        options: how to predict (:class:`PredictOptions`: tile size, overlap, blend, batch,
            device, precision, TTA, bands, workers); keyword ``overrides`` change fields of it,
            e.g. ``predict_raster(src, dst, model, tile_size=256, device="cpu")``.
        config: model config for a bare module.
        probabilities: optional path for per-class probabilities (uint8, 0-255).
        confidence: optional path for the winning class's probability (uint8, 0-255).
        overwrite: replace existing outputs.
        progress: called after each tile with ``(tiles done, tiles in all, raster megapixels)``.

    Returns:
        A :class:`PredictionResult` with paths and figures.

    Raises:
        RasterOpenError, BandMismatchError, TilingError, CheckpointError, OutputExistsError,
        WriteError, DeviceError: with what was expected and how to fix it.
    """
    start = time.perf_counter()
    model_path = model if isinstance(model, (str, os.PathLike)) else None
    check_paths(
        {"SRC": src, "--model": model_path},
        {"DST": dst, "--probabilities": probabilities, "--confidence": confidence},
    )
    outputs = [Path(p) for p in (dst, probabilities, confidence) if p is not None]
    for p in outputs:
        if p.suffix.lower() not in (".tif", ".tiff"):
            raise RasterFormatError(
                f"{p}: predict writes Cloud-Optimized GeoTIFFs; expected a .tif or .tiff name, got "
                f"{p.suffix or 'none'} (for a picture use --quicklook {p.with_suffix('.png').name})"
            )
        check_destination(p, overwrite=overwrite)
    opts = PredictOptions.of(options, **overrides)
    if model is None:
        from geoseg.models.default import default_model

        model = default_model()
    if opts.resample_to_model:
        from geoseg.inference.resample import predict_resampled

        return predict_resampled(
            src,
            dst,
            resolve_model(model, config=config),
            opts,
            probabilities=probabilities,
            confidence=confidence,
            overwrite=overwrite,
            progress=progress,
        )
    job = _setup(src, model, opts, config)
    reader, cfg = job.reader, job.config
    stripes = _stripes(job.plan, cfg.num_classes)
    job.progress = progress
    job.total = sum(len(list(job.plan.tiles(region))) for region in stripes)
    outputs_of = output_writers(
        cfg, reader.grid, dst, probabilities, confidence, overwrite=overwrite
    )

    def write(out: Finished) -> None:
        for writer, name in outputs_of:
            writer.write(getattr(out, name), out.window, out.valid)

    # ExitStack unwinds in reverse: the reader closes, then each COG is published (or removed
    # on error), then GDAL's cache setting is restored.
    with ExitStack() as stack:
        bands_out = (
            1 + (cfg.num_classes if probabilities is not None else 0) + (confidence is not None)
        )
        stack.enter_context(
            rasterio.Env(GDAL_CACHEMAX=_gdal_cache_bytes(reader, job.plan, stripes[0], bands_out))
        )
        for writer, _ in outputs_of:
            stack.enter_context(writer)
        stack.callback(reader.close)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoseg-write") as write_pool:
            in_flight: list[Future[None]] = []
            for region in stripes:
                for rows in _run_region(job, region):
                    # reduce to uint8 here, so only small arrays wait for the writer thread
                    out = finalize(
                        rows,
                        probabilities=probabilities is not None,
                        confidence=confidence is not None,
                    )
                    del rows
                    in_flight.append(write_pool.submit(write, out))
                    while len(in_flight) > 2:
                        in_flight.pop(0).result()
            for f in in_flight:
                f.result()
    seconds = time.perf_counter() - start
    if job.stats["run"] == 0:
        import warnings

        warnings.warn(
            f"{src}: no tile held a valid pixel; the mask is all nodata ({MASK_NODATA})",
            NoValidDataWarning,
            stacklevel=2,
        )
    return PredictionResult(
        mask=Path(dst),
        height=reader.height,
        width=reader.width,
        probabilities=Path(probabilities) if probabilities else None,
        confidence=Path(confidence) if confidence else None,
        tiles=len(job.plan),
        tiles_run=job.stats["run"],
        tiles_skipped=job.stats["skipped"],
        precision=job.runner.precision,
        device=str(job.runner.device),
        seconds=seconds,
        megapixels_per_second=reader.height * reader.width / 1e6 / seconds,
        extra={
            "agreement": job.runner.agreement,
            "stride": job.plan.stride,
            "overlap": job.plan.overlap,
        },
    )
