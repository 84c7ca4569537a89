"""``explain_raster``: Grad-CAM, Grad-CAM++ or activations over a raster, tile by tile, into a COG.

The tiles, their read-ahead, the blend weights and the row accumulator are those of ``predict``
(same tile plan, same kernel), so a heat-map is as seamless as a prediction and memory stays one
tile-high band of rows whatever the raster's height. Outputs are float32 COGs on the input's grid
(or on the window's part of it), NaN where the input has no data.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from geoseg.errors import BandMismatchError, ExplainError, GeosegWarning
from geoseg.explain.cam import METHODS, CamComputer, activation_maps
from geoseg.explain.layers import resolve_layer
from geoseg.inference.accumulator import FinishedRows, RowAccumulator
from geoseg.inference.blending import blend_weights
from geoseg.inference.engine import ModelSource, resolve_model
from geoseg.inference.options import PredictOptions
from geoseg.inference.runtime import resolve_device
from geoseg.inference.tiles import checked_tiling, read_tile
from geoseg.io.atomic import check_paths
from geoseg.io.reader import RasterReader, map_ordered
from geoseg.io.windows import Tile, TilePlan, plan_tiles, tile_transform
from geoseg.io.writer import COGWriter, check_destination
from geoseg.models.checkpoint import LoadedModel

__all__ = ["ExplainResult", "explain_raster"]

log = logging.getLogger(__name__)

# A per-batch map: (x (N, bands, H, W), target masks (N, H, W)) -> (N, K, H, W) float32
TileFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MaskFunction = Callable[[Window], np.ndarray]


@dataclass
class ExplainResult:
    """What ``explain_raster`` wrote.

    Attributes:
        path: the float32 COG (1 band for Grad-CAM, K bands for activations).
        overlay: the PNG picture, if written.
        method: ``gradcam``, ``gradcam++`` or ``activations``.
        layer: the layer explained (preset or module name).
        class_name: the class explained (None for activations).
        window: the part of the raster explained (its grid is the output's).
        tiles_run: tiles that went through the network.
        seconds: wall time.
    """

    path: Path
    overlay: Path | None
    method: str
    layer: str
    class_name: str | None
    window: Window
    tiles_run: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _class_index(loaded: LoadedModel, name: str | int | None) -> tuple[int, str]:
    names = loaded.config.classes.names
    ids = [c.id for c in loaded.config.classes]
    if name is None:
        raise ExplainError(
            f"Grad-CAM needs a class; expected --class with one of {', '.join(names)}"
        )
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit()):
        idx = int(name)
        if idx in ids:
            return ids.index(idx), names[ids.index(idx)]
    elif name in names:
        return names.index(name), name
    elif name.lower() in [n.lower() for n in names]:
        i = [n.lower() for n in names].index(name.lower())
        return i, names[i]
    raise ExplainError(f"unknown class {name!r}; expected one of {', '.join(names)} (or its id)")


def _window_in(window: Window | None, height: int, width: int) -> Window:
    if window is None:
        return Window(0, 0, width, height)
    w = window.round_offsets().round_lengths() if hasattr(window, "round_offsets") else window
    c0, r0 = int(w.col_off), int(w.row_off)
    c1, r1 = min(c0 + int(w.width), width), min(r0 + int(w.height), height)
    if c0 < 0 or r0 < 0 or c1 <= c0 or r1 <= r0:
        raise ExplainError(
            f"window {tuple(map(int, (w.col_off, w.row_off, w.width, w.height)))} (col, row, "
            f"width, height) does not overlap the {width} x {height} px raster; expected offsets "
            "inside it"
        )
    return Window(c0, r0, c1 - c0, r1 - r0)


def stream_tiles(
    reader: RasterReader,
    plan: TilePlan,
    region: Window,
    loaded: LoadedModel,
    fn: TileFunction,
    channels: int,
    weights: np.ndarray,
    *,
    batch_size: int,
    workers: int,
    mask_of: MaskFunction | None = None,
    stats: dict[str, int] | None = None,
) -> Iterator[FinishedRows]:
    """Run ``fn`` over every tile touching ``region`` in batches and blend its ``channels`` maps
    with ``weights``; yield finished rows top to bottom (weighted sums, as predict's
    accumulator)."""
    tiles = list(plan.tiles(region))
    last_in_row = {t.grid_row: t.index for t in tiles}
    acc = RowAccumulator(channels, region, plan.tile_size)
    norm = loaded.config.normalization
    w_t = torch.from_numpy(weights)

    def prepare(tile: Tile) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        got = read_tile(reader, tile.window, norm)
        if got is None:
            return None
        target = got[1] if mask_of is None else got[1] & mask_of(tile.window)
        return got[0], got[1], target

    pending: list[tuple[Tile, tuple[np.ndarray, np.ndarray, np.ndarray] | None]] = []

    def flush() -> Iterator[FinishedRows]:
        batch = [item for _, item in pending if item is not None]
        maps: np.ndarray | None = None
        if batch:
            x = torch.from_numpy(np.stack([b[0] for b in batch]))
            masks = torch.from_numpy(np.stack([b[2] for b in batch]))
            maps = (fn(x, masks).float().cpu() * w_t).numpy()
        i = 0
        for tile, item in pending:
            if item is not None:
                acc.add(
                    maps[i],  # type: ignore[index]
                    weights,
                    item[1],
                    int(tile.window.row_off),
                    int(tile.window.col_off),
                )
                i += 1
                if stats is not None:
                    stats["run"] = stats.get("run", 0) + 1
            if last_in_row[tile.grid_row] == tile.index:
                done = acc.release(plan.rows_final_after(tile.grid_row))
                if done is not None:
                    yield done
        pending.clear()

    ready = 0
    for tile, item in map_ordered(
        prepare, tiles, workers=workers, prefetch=batch_size * 2 + workers
    ):
        pending.append((tile, item))
        ready += item is not None
        if ready >= batch_size:
            yield from flush()
            ready = 0
    yield from flush()
    rest = acc.release(int(region.row_off + region.height))
    if rest is not None:
        yield rest


def blended(rows: FinishedRows) -> np.ndarray:
    """Blended maps ``(channels, rows, cols)`` float32 of finished rows, NaN where no valid
    pixel."""
    ok = rows.valid & (rows.weight > 0)
    out = rows.probs / np.where(ok, rows.weight, 1.0)[None]
    out[:, ~ok] = np.nan
    return out.astype(np.float32, copy=False)


def explain_raster(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    model: ModelSource | None = None,
    options: PredictOptions | None = None,
    *,
    target: str | int | None = None,
    method: str = "gradcam",
    layer: str | None = None,
    window: Window | None = None,
    aoi: str | os.PathLike[str] | None = None,
    overlay: str | os.PathLike[str] | None = None,
    channels: int = 64,
    config: Any = None,
    overwrite: bool = False,
    **overrides: Any,
) -> ExplainResult:
    """Explain a segmentation model over a raster: a Grad-CAM heat-map or a layer's activations.

    Args:
        src: input raster ``(bands, rows, cols)``.
        dst: output float32 COG: one band for ``gradcam``/``gradcam++`` (class-score units, >= 0),
            ``channels`` bands for ``activations`` (the layer's first feature maps).
        model: checkpoint path, :class:`LoadedModel` or module (with ``config``); None: bundled.
        options: tile size, overlap, blend, batch size, device, bands, workers
            (:class:`PredictOptions`; precision is always fp32 and TTA is not applied).
        target: class name or id whose score is explained (Grad-CAM).
        method: ``gradcam``, ``gradcam++`` or ``activations``.
        layer: a preset (``geoseg models CKPT --layers``) or a module name; default: the
            middle decoder block.
        window: only this part of the raster; the output is that window's part of the input grid.
        aoi: polygons (any OGR format): the Grad-CAM target sums the class score inside them only,
            and the output covers their bounding window.
        overlay: optional PNG: the image with the heat-map (or the activations grid) drawn on it.
        channels: at most this many activation maps.
        overwrite: replace existing outputs.

    Returns:
        An :class:`ExplainResult`.

    Raises:
        ExplainError: unknown class, method or layer, an exported model (no gradients), a window
            or AOI outside the raster; BandMismatchError, TilingError: as for predict.
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    check_paths(
        {
            "SCENE": src,
            "--model": model if isinstance(model, (str, os.PathLike)) else None,
            "--aoi": aoi,
        },
        {"OUT": dst, "--overlay": overlay},
    )  # an input is never replaced, even with overwrite
    for p in [dst, overlay]:
        if p is not None:
            check_destination(p, overwrite=overwrite)
    opts = PredictOptions.of(options, **overrides)
    if model is None:
        from geoseg.models.default import default_model

        model = default_model()
    loaded = resolve_model(model, config=config)
    if getattr(loaded.model, "runs_outside_torch", False):
        raise ExplainError(
            "an exported .onnx model has no gradients or layers to explain; expected the "
            ".safetensors checkpoint it came from"
        )
    cfg = loaded.config
    class_index, class_name = (
        (None, None) if method == "activations" else _class_index(loaded, target)
    )
    device = resolve_device(opts.device)
    net = loaded.model.eval().to(device)
    probe = max(64, 2 * cfg.output_stride)
    layer_name, module = resolve_layer(net.cpu(), layer, cfg.in_channels, size=probe)
    net.to(device)
    if opts.tta != "none" or opts.precision not in ("auto", "fp32"):
        warnings.warn(
            f"explain runs in fp32 without test-time augmentation: tta={opts.tta!r} and "
            f"precision={opts.precision!r} are ignored; drop them",
            GeosegWarning,
            stacklevel=2,
        )
    with RasterReader(src, bands=opts.bands) as reader:
        if len(reader.bands) != cfg.in_channels:
            raise BandMismatchError(
                f"{src}: the model expects {cfg.in_channels} band(s) but {len(reader.bands)} were "
                "selected; choose them with --bands (1-based, in the model's order)"
            )
        tile = int(opts.tile_size or cfg.tile_size)
        overlap = checked_tiling(
            tile, cfg.overlap if opts.overlap is None else opts.overlap, cfg.output_stride
        )
        plan = plan_tiles(reader.height, reader.width, tile, overlap)
        weights = blend_weights(opts.blend, tile, plan.overlap)
        mask_of: MaskFunction | None = None
        region = _window_in(window, reader.height, reader.width)
        if aoi is not None:
            from geoseg.explain.aoi import AreaOfInterest

            area = AreaOfInterest.read(
                aoi, reader.transform, reader.crs, reader.height, reader.width
            )
            region = (
                _window_in(area.window, reader.height, reader.width) if window is None else region
            )
            mask_of = area.mask
        fn: TileFunction
        computer: CamComputer | None = None
        if method == "activations":
            sl = slice(0, channels)
            k = min(channels, _layer_channels(net, module, cfg.in_channels, probe, device))

            def fn(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
                return activation_maps(net, module, x.to(device), sl)

            descriptions = [f"{layer_name}[{i}]" for i in range(k)]
        else:
            computer = CamComputer(net, module, int(class_index), method, device)  # type: ignore[arg-type]
            fn, k = computer, 1
            descriptions = [f"{method} {class_name} @ {layer_name}"]
        batch = opts.batch_size or (8 if device.type == "cuda" else 2)
        stats: dict[str, int] = {}
        tags = {
            "GEOSEG_METHOD": method,
            "GEOSEG_LAYER": layer_name,
            "GEOSEG_CLASS": class_name or "",
            "GEOSEG_MODEL": f"{cfg.architecture}-{cfg.encoder}",
        }
        try:
            with COGWriter(
                dst,
                height=int(region.height),
                width=int(region.width),
                count=k,
                dtype="float32",
                nodata=float("nan"),
                transform=tile_transform(region, reader.transform),
                crs=reader.crs,
                descriptions=descriptions,
                resampling="average",
                tags=tags,
                overwrite=overwrite,
            ) as out:
                for rows in stream_tiles(
                    reader,
                    plan,
                    region,
                    loaded,
                    fn,
                    k,
                    weights,
                    batch_size=batch,
                    workers=opts.workers,
                    mask_of=mask_of,
                    stats=stats,
                ):
                    w = rows.window
                    out.write(
                        blended(rows),
                        Window(
                            int(w.col_off - region.col_off),
                            int(w.row_off - region.row_off),
                            w.width,
                            w.height,
                        ),
                    )
        finally:
            if computer is not None:
                computer.close()
    drawn: Path | None = None
    if overlay is not None:
        from geoseg.io.overlay import write_activation_grid, write_heat_overlay

        if method == "activations":
            drawn = write_activation_grid(
                dst, overlay, title=f"{layer_name}: first {k} feature maps"
            )
        else:
            drawn = write_heat_overlay(
                src,
                dst,
                overlay,
                window=region,
                bands=opts.bands,
                title=f"{method}: {class_name} @ {layer_name}",
            )
    return ExplainResult(
        Path(dst),
        drawn,
        method,
        layer_name,
        class_name,
        region,
        stats.get("run", 0),
        time.perf_counter() - start,
    )


def _layer_channels(
    net: torch.nn.Module, module: torch.nn.Module, in_channels: int, size: int, device: torch.device
) -> int:
    x = torch.zeros(1, in_channels, size, size, device=device)
    return int(activation_maps(net, module, x, slice(None), upsample=False).shape[1])
