"""The tile engine: a prediction session, opened once from (raster, model, options).

Every door that runs a model over a raster is a thin client of :class:`PredictionSession`:
``predict_raster`` (COG writers around :meth:`~PredictionSession.rows`), ``predict_block`` and
``predict_classes`` (one region in memory), ``iter_probabilities`` (diagnostics), the Dask block
and many-raster paths, ``explain`` (Grad-CAM as a per-tile function) and the export's parity
tile. The session owns:

- the reader (thread-safe windowed reads, read ahead in background threads);
- the input adapter (:func:`~geoseg.inference.compat.check_input`: the comparison with the
  training data, ``scale``, complex values) and the model's normalization;
- the tile plan and the blending weights;
- the runner (device, precision, frozen or eager network), built on first use.

Tiles are batched through the network (or any per-tile function), blended into a band of rows at
most one tile high, and finished rows come out top to bottom, so memory does not grow with the
raster. Any block predicted alone equals that block of a whole run, because every pixel sums
exactly the same tiles through the same network at the same precision.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch import nn

from geoseg.errors import BandMismatchError, CheckpointError
from geoseg.inference.accumulator import FinishedRows, RowAccumulator
from geoseg.inference.blending import blend_weights
from geoseg.inference.cache import ModelCache, file_digest, module_digest
from geoseg.inference.compat import InputAdapter, check_input
from geoseg.inference.int8 import int8_network, int8_precision
from geoseg.inference.options import PredictOptions
from geoseg.inference.runtime import (
    Runner,
    cached_frozen,
    make_runner,
    recorded_agreement,
    resolve_device,
)
from geoseg.inference.tiles import checked_tiling, finalize, geoarray_of, read_tile, tiling_of
from geoseg.io.reader import GeoArray, RasterReader
from geoseg.io.stac import StacRaster, is_stac, open_stac
from geoseg.io.storage import is_object_url
from geoseg.io.windows import Tile, TilePlan, plan_tiles, tile_transform
from geoseg.io.writer import COG_BLOCK
from geoseg.models.checkpoint import LoadedModel
from geoseg.models.config import ModelConfig, checkpoint_files, read_config
from geoseg.models.resolve import ModelRef, model_loader, model_path, resolve_model
from geoseg.models.variants import MIN_AGREEMENT, Int8Variant

__all__ = [
    "PredictionSession",
    "SessionStats",
    "TileBatch",
    "TileFunction",
    "calibration_temperature",
    "open_session",
]

log = logging.getLogger(__name__)

# bytes of accumulator per column stripe (a stripe is 8704 px wide for 6 classes)
STRIPE_BUDGET = 128 * 2**20
# GDAL block cache while predicting: at least, at most
GDAL_CACHE_LIMITS = (16 * 2**20, 256 * 2**20)


@dataclass(frozen=True)
class TileBatch:
    """The tiles of one forward pass, as the network sees them.

    Attributes:
        x: ``(N, bands, H, W)`` float32, normalized (see :meth:`PredictionSession.read_tile`), on
            CPU.
        valid: ``(N, H, W)`` bool, True where the input holds data.
        windows: each tile's window in the raster grid (it may reach past the raster's edge).
    """

    x: torch.Tensor
    valid: torch.Tensor
    windows: tuple[Window, ...]


class TileFunction(Protocol):
    """What a session may run per batch instead of the network: a :class:`TileBatch` in,
    ``(N, K, H, W)`` float32 maps out, blended like probabilities (Grad-CAM, activations)."""

    def __call__(self, batch: TileBatch) -> torch.Tensor: ...


@dataclass
class SessionStats:
    """What a session has done: tiles through the model, tiles without data, tiles visited."""

    run: int = 0
    skipped: int = 0
    done: int = 0
    total: int = 0


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


def _model_cache(
    model: ModelRef, loaded: LoadedModel | None, temperature: float | None, precision: str
) -> Any:
    """The model cache of a checkpoint file or of a loaded module (they share one entry: a module
    loaded from a checkpoint answers that file's digest), per calibration temperature, and apart
    for the int8 network of each calibration."""
    if loaded is not None:
        digest = module_digest(loaded.model)
    else:
        weights, sidecar = checkpoint_files(str(model))
        digest = file_digest(weights, sidecar)
    if temperature is not None:
        digest = f"{digest}|T={temperature!r}"
    if precision == "int8":
        cfg = loaded.config if loaded is not None else read_config(str(model))
        digest = f"{digest}|int8={Int8Variant.of(cfg).digest}"  # type: ignore[union-attr]
    return ModelCache(digest)


def _is_file_model(path: str | None) -> bool:
    """A model file another runtime runs (``.onnx``), as opposed to a checkpoint."""
    return path is not None and model_loader(os.path.splitext(path)[1]) is not None


def raster_input(
    src: str, options: PredictOptions, config: ModelConfig
) -> tuple[StacRaster | None, str, tuple[int, ...] | tuple[str, ...] | None]:
    """What the reader opens for ``src``, and which of its bands: a raster as it is; a STAC
    item as the VRT of the bands the model needs (named by ``options.bands`` when they are names,
    else by the model's band names), numbered bands then picked from that VRT.

    Returns:
        ``(the STAC raster or None, the path GDAL opens, the bands to read)``.
    """
    if not is_stac(src):
        return None, src, options.bands
    bands = options.bands
    named = bool(bands) and isinstance(bands[0], str)  # type: ignore[index]
    wanted = [str(b) for b in bands] if named and bands else list(config.band_names)
    stac = open_stac(src, wanted, data_type=config.band_dtype)
    return stac, stac.path, None if named else bands


class PredictionSession:
    """A raster opened for prediction with a model and options (see the module).

    Args:
        src: input raster path or URL (``http(s)://``, ``s3://``), or a STAC item's (its
            assets read as one raster: :mod:`geoseg.io.stac`; ``stac`` keeps its identity).
        model: any model reference (:func:`~geoseg.models.resolve.resolve_model`): a checkpoint,
            an ``.onnx`` file, ``quality``/``fast``/``default``, a LoadedModel, a module with
            ``config``, or None (the default model).
        options: how to predict (:class:`PredictOptions`).
        config: the config of a bare module.

    Raises:
        CheckpointError, TilingError, RasterOpenError, BandMismatchError, InputCompatibilityError,
        DeviceError: with what was expected and how to fix it; nothing stays open.
    """

    def __init__(
        self,
        src: str | os.PathLike[str],
        model: ModelRef = None,
        options: PredictOptions | None = None,
        *,
        config: ModelConfig | None = None,
    ) -> None:
        self.src = str(src)
        self.options = opts = options if options is not None else PredictOptions()
        self.device = resolve_device(opts.device)
        self.batch_size = opts.batch_size or (8 if self.device.type == "cuda" else 2)
        self.workers = opts.workers
        self.stats = SessionStats()
        self.progress: Callable[[int, int, float], None] | None = None
        self._runner: Runner | None = None
        self.loaded, self._cache, self._precision = self._load(model, config)
        self.config = cfg = self.loaded.config
        # a graph run by another runtime (onnxruntime) is neither traced nor autocast
        self.outside_torch = bool(getattr(self.loaded.model, "runs_outside_torch", False))
        self.tile_size = opts.tile_size_for(cfg)
        self.tiling = tiling_of(cfg)
        overlap = checked_tiling(  # before the raster is opened
            self.tile_size, cfg.overlap if opts.overlap is None else opts.overlap, cfg.output_stride
        )
        self.stac, path, bands = raster_input(self.src, opts, cfg)
        self.reader = RasterReader(path, bands=bands)
        try:
            self._check_bands()
            adapter = check_input(self.reader, cfg, opts, self.src)
        except BaseException:
            self.reader.close()
            raise
        self.adapter: InputAdapter | None = None if adapter.identity else adapter
        self.plan: TilePlan = plan_tiles(
            self.reader.height, self.reader.width, self.tile_size, overlap, edge=self.tiling.edge
        )
        blend = self.tiling.blend if opts.blend is None else opts.blend
        self.weights = blend_weights(blend, self.tile_size, self.plan.overlap)
        self._weights_t: torch.Tensor | None = None
        temperature = calibration_temperature(cfg)
        self._network = self.loaded.model
        if temperature is not None and not isinstance(self.loaded.model, torch.jit.ScriptModule):
            # calibrated probabilities: softmax(logits / T); the classes do not change
            self._network = Tempered(self.loaded.model, temperature)
        if self._cache is None and not self.outside_torch:
            self._cache = _model_cache(model, self.loaded, temperature, self._precision)

    def _load(
        self, model: ModelRef, config: ModelConfig | None
    ) -> tuple[LoadedModel, ModelCache | None, str]:
        """The model, its cache entry (when known yet) and the precision to run it at.

        A local checkpoint run on CPU starts from the frozen network an earlier run kept in the
        model cache, when there is one: the eager network is then never built (no
        segmentation-models-pytorch import), and ``auto`` is resolved from the cache too.
        """
        opts = self.options
        path = model_path(model) if not isinstance(model, LoadedModel) else None
        if (
            path is not None
            and self.device.type == "cpu"
            and not _is_file_model(path)
            and not is_object_url(path)
        ):
            cfg = read_config(path)
            precision = int8_precision(cfg, self.device, opts.precision)
            cache = _model_cache(path, None, calibration_temperature(cfg), precision)
            tile = opts.tile_size_for(cfg)
            frozen, precision = cached_frozen(
                cache, self.device, precision, (1, cfg.in_channels, tile, tile)
            )
            if frozen is not None:
                return LoadedModel(frozen, cfg), cache, precision
            loaded = resolve_model(path, device="cpu")
            return loaded, None, precision
        device = self.device if _is_file_model(path) else "cpu"
        loaded = resolve_model(path if path is not None else model, config=config, device=device)
        if _is_file_model(path):  # another runtime runs the graph as it was exported
            return loaded, None, opts.precision
        return loaded, None, int8_precision(loaded.config, self.device, opts.precision)

    def _check_bands(self) -> None:
        cfg, reader = self.config, self.reader
        if len(reader.bands) == cfg.in_channels:
            return
        names = f" ({', '.join(cfg.band_names)})" if cfg.band_names else ""
        count = reader.count
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
            f"{self.src}: the model expects {cfg.in_channels} band(s){names} but "
            f"{len(reader.bands)} were selected from a raster of {count}; {fix}"
        )

    # -- what the session holds ------------------------------------------------------------

    @property
    def runner(self) -> Runner:
        """The runner (device, precision, frozen or eager network), built on first use."""
        if self._runner is None:
            network = self._network
            if (
                self._precision == "int8"
                and not self.outside_torch
                and not isinstance(self.loaded.model, torch.jit.ScriptModule)
            ):
                network = self._int8_network()
            self._runner = make_runner(
                network,
                self.device,
                "fp32" if self.outside_torch else self._precision,  # type: ignore[arg-type]
                self.options.tta,
                freeze=False if self.outside_torch or self.device.type != "cpu" else None,
                cache=self._cache,
                recorded=recorded_agreement(self.config.metrics),
            )
            record = getattr(network, "int8", None) if self.outside_torch else None
            if isinstance(record, dict):  # a graph another runtime runs as it was quantized
                self._runner.precision = "int8"
                agreement = (record.get("agreement") or {}).get("value")
                self._runner.reason = (
                    "the ONNX graph is quantized (QDQ); its classes agreed with fp32 on "
                    f"{agreement:.2%} of {record['agreement'].get('on', 'held-out pixels')}"
                    if isinstance(agreement, (int, float))
                    else "the ONNX graph is quantized (QDQ)"
                )
            if self._precision == "int8" and self.options.precision == "auto":
                variant = Int8Variant.of(self.config)
                assert variant is not None and variant.agreement_value is not None
                self._runner.agreement = variant.agreement_value
                self._runner.reason = (
                    f"precision auto: the calibrated int8 variant agreed with fp32 on "
                    f"{variant.agreement_value:.2%} of held-out pixels, {MIN_AGREEMENT:.0%} needed"
                )
        return self._runner

    def _int8_network(self) -> nn.Module:
        """The checkpoint's int8 network (built once per process), tempered like the float one."""
        variant = Int8Variant.of(self.config)
        assert variant is not None
        network = int8_network(self.loaded.model, variant, self.config.in_channels)
        temperature = calibration_temperature(self.config)
        return network if temperature is None else Tempered(network, temperature)

    def network_copy(self) -> nn.Module:
        """A private copy of the eager network on the session's device, in eval mode, for per-tile
        functions that hook into its layers (Grad-CAM): the shared model is never touched.

        Raises:
            CheckpointError: the session runs an exported graph or a frozen trace.
        """
        import copy

        net = self.loaded.model
        if self.outside_torch or isinstance(net, torch.jit.ScriptModule):
            raise CheckpointError(
                "this model has no layers to reach (an exported or frozen graph); expected the "
                ".safetensors checkpoint it came from"
            )
        return copy.deepcopy(net).eval().to(self.device)

    @property
    def window(self) -> Window:
        """The whole raster as a window."""
        return Window(0, 0, self.reader.width, self.reader.height)

    @property
    def megapixels(self) -> float:
        return self.reader.height * self.reader.width / 1e6

    def stripes(self, budget: int | None = None) -> list[Window]:
        """Column stripes whose accumulators fit ``budget`` bytes (one stripe for most rasters)."""
        budget = STRIPE_BUDGET if budget is None else budget
        plan = self.plan
        per_col = plan.tile_size * (self.config.num_classes * 4 + 4 + 1)
        width = max(plan.tile_size, (budget // per_col) // COG_BLOCK * COG_BLOCK)
        if width >= plan.width:
            return [self.window]
        return [
            Window(c, 0, min(width, plan.width - c), plan.height)
            for c in range(0, plan.width, width)
        ]

    def gdal_env(self, region: Window, output_bands: int = 0) -> Any:
        """A ``rasterio.Env`` whose GDAL block cache holds the input blocks one row band of tiles
        of ``region`` touches, plus one row of output blocks: tiles overlap, so each input block
        is decoded once; and no more than that, as GDAL's default (5 % of RAM) would let the cache
        grow with the raster."""
        reader, plan = self.reader, self.plan
        block_h, block_w = reader.block_shape
        rows = plan.tile_size + block_h
        cols = min(reader.width, int(region.width) + plan.tile_size + block_w)
        itemsize = np.dtype(reader.dtype).itemsize
        need = rows * cols * reader.count * itemsize + COG_BLOCK * reader.width * output_bands
        low, high = GDAL_CACHE_LIMITS
        return rasterio.Env(GDAL_CACHEMAX=int(min(max(need * 5 // 4, low), high)))

    # -- tiles ------------------------------------------------------------------------------

    def read_tile(self, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
        """One tile as the network sees it: read, adapted (scale, complex values), normalized,
        padded at the raster's edges (by reflection, or as the model's tiling says).

        Returns:
            ``(x, valid)``: ``(bands, rows, cols)`` float32 and ``(rows, cols)`` bool; None when
            the tile holds no valid pixel.
        """
        return read_tile(
            self.reader, window, self.config.normalization, self.adapter, self.tiling.fill
        )

    def resolve_precision(self) -> str:
        """The precision of this run, ``auto`` resolved on the raster's first tile holding data
        (the same tile whatever region is predicted, so a block alone runs like a whole run)."""
        if self.runner.precision != "auto":
            return self.runner.precision
        for tile in self.plan:
            item = self.read_tile(tile.window)
            if item is not None:
                x, valid = (torch.from_numpy(a[None]) for a in item)
                return self.runner.choose_precision(x, valid)
        self.runner.precision = "fp32"
        return "fp32"

    def _forward(self, batch: TileBatch) -> torch.Tensor:
        x = batch.x.pin_memory() if self.device.type == "cuda" else batch.x
        with torch.inference_mode():
            return self.runner(x)

    def rows(
        self,
        region: Window | None = None,
        fn: TileFunction | None = None,
        channels: int | None = None,
    ) -> Iterator[FinishedRows]:
        """Blend every tile that touches ``region`` (default: the whole raster, one stripe); yield
        finished rows top to bottom.

        Args:
            region: a window of the raster grid.
            fn: what to run per batch instead of the network (see :class:`TileBatch`); it
                returns ``(N, channels, H, W)`` float32 maps.
            channels: the number of maps ``fn`` returns (default: the model's classes).

        Yields:
            :class:`FinishedRows` holding weighted sums (see :func:`finalize` and
            :func:`geoarray_of` for the blended values).
        """
        region = self.window if region is None else region
        if fn is None:
            self.resolve_precision()
            fn, channels = self._forward, self.config.num_classes
        channels = channels or self.config.num_classes
        plan = self.plan
        tiles = list(plan.tiles(region))
        last_in_row = {t.grid_row: t.index for t in tiles}
        acc = RowAccumulator(channels, region, plan.tile_size)
        weights = self.weights
        pending: list[tuple[Tile, tuple[np.ndarray, np.ndarray] | None]] = []

        def flush() -> Iterator[FinishedRows]:
            items = [(t, item) for t, item in pending if item is not None]
            maps = np.empty((0,), np.float32)
            if items:
                batch = TileBatch(
                    torch.from_numpy(np.stack([item[0] for _, item in items])),
                    torch.from_numpy(np.stack([item[1] for _, item in items])),
                    tuple(t.window for t, _ in items),
                )
                out = fn(batch)  # no inference mode here: a per-tile function may need gradients
                with torch.inference_mode():
                    if self._weights_t is None or self._weights_t.device != out.device:
                        self._weights_t = torch.from_numpy(weights).to(out.device)
                    maps = out.detach().float().mul_(self._weights_t).cpu().numpy()
            i = 0
            for tile, item in pending:
                if item is not None:  # a tile without valid pixels was counted when read
                    acc.add(
                        maps[i],
                        weights,
                        item[1],
                        int(tile.window.row_off),
                        int(tile.window.col_off),
                    )
                    self.stats.run += 1
                    i += 1
                    self._advance()
                if last_in_row[tile.grid_row] == tile.index:
                    done = acc.release(plan.rows_final_after(tile.grid_row))
                    if done is not None:
                        yield done
            pending.clear()

        ready = 0  # tiles in `pending` that hold data
        prefetch = self.batch_size * 2 + self.workers
        reads = self.reader.map(
            lambda tile: self.read_tile(tile.window), tiles, workers=self.workers, prefetch=prefetch
        )
        try:
            for tile, item in reads:
                pending.append((tile, item))
                if item is None:  # no valid pixel: nothing to run or blend; said at once, so
                    self.stats.skipped += 1  # progress (and a cancel) keeps up over empty areas
                    self._advance()
                else:
                    ready += 1
                if ready >= self.batch_size:
                    yield from flush()
                    ready = 0
            yield from flush()
        finally:
            reads.close()  # type: ignore[attr-defined]
        rest = acc.release(int(region.row_off + region.height))
        if rest is not None:
            yield rest

    def _advance(self) -> None:
        """One more tile visited: counted, and said to ``progress`` (which may stop the run by
        raising)."""
        self.stats.done += 1
        if self.progress is not None:
            self.progress(self.stats.done, max(self.stats.total, self.stats.done), self.megapixels)

    def count_tiles(self, regions: list[Window]) -> int:
        """Tiles a run over ``regions`` visits (a tile shared by two column stripes counts
        twice); sets the progress total."""
        self.stats.total = sum(len(list(self.plan.tiles(r))) for r in regions)
        return self.stats.total

    def probabilities(self, region: Window | None = None) -> Iterator[GeoArray]:
        """Blended class probabilities ``(classes, rows, cols)`` float32, one finished band of rows
        at a time (the whole raster in column stripes when no ``region`` is given)."""
        for part in [region] if region is not None else self.stripes():
            for rows in self.rows(part):
                yield geoarray_of(rows, self.reader)

    def classes(self, region: Window | None = None) -> GeoArray:
        """Class ids ``(1, rows, cols)`` uint8 (255 where the input has no data) of ``region``
        (default: the whole raster), with validity, transform and CRS."""
        region = self.window if region is None else region
        parts = [finalize(rows) for rows in self.rows(region)]
        ids = np.concatenate([p.classes for p in parts], axis=1)
        valid = np.concatenate([p.valid for p in parts], axis=0)
        return GeoArray(
            ids, valid, tile_transform(region, self.reader.transform), self.reader.crs, region
        )

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the reader (after the reads in flight)."""
        self.reader.close()

    def __enter__(self) -> PredictionSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(
    src: str | os.PathLike[str],
    model: ModelRef = None,
    options: PredictOptions | None = None,
    *,
    config: ModelConfig | None = None,
    **overrides: Any,
) -> PredictionSession:
    """Open a :class:`PredictionSession` (use it as a context manager).

    ``overrides`` change fields of ``options``, as every entry point allows:
    ``open_session("scene.tif", "fast", tile_size=256)``.
    """
    return PredictionSession(src, model, PredictOptions.of(options, **overrides), config=config)
