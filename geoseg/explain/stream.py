"""``explain_raster``: Grad-CAM, Grad-CAM++ or activations over a raster, tile by tile, into a COG.

Explaining is a client of the tile engine (:class:`~geoseg.inference.PredictionSession`): the same
reads, input adaptation, normalization, tile plan, blend weights and row accumulator as
``predict``, with Grad-CAM (or the activations) as the per-tile function, so a heat-map explains
exactly the tiles a prediction sees, is as seamless, and memory stays one tile-high band of rows
whatever the raster's height. Outputs are float32 COGs on the input's grid
(or on the window's part of it), NaN where the input has no data.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from geoseg.errors import ExplainError, NoValidDataWarning
from geoseg.explain.cam import METHODS, CamComputer, activation_maps
from geoseg.explain.layers import resolve_layer
from geoseg.inference.accumulator import FinishedRows
from geoseg.inference.options import PredictOptions
from geoseg.inference.session import PredictionSession, TileBatch, TileFunction, open_session
from geoseg.io.atomic import check_paths, pending_path, publish_together
from geoseg.io.windows import tile_transform
from geoseg.io.writer import COGWriter, check_destination
from geoseg.models.checkpoint import LoadedModel
from geoseg.models.resolve import ModelRef, resolve_model

__all__ = ["ExplainResult", "explain_raster"]

log = logging.getLogger(__name__)

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


def blended(rows: FinishedRows) -> np.ndarray:
    """Blended maps ``(channels, rows, cols)`` float32 of finished rows, NaN where no valid
    pixel."""
    ok = rows.valid & (rows.weight > 0)
    out = rows.probs / np.where(ok, rows.weight, 1.0)[None]
    out[:, ~ok] = np.nan
    return out.astype(np.float32, copy=False)


def _refuse_ignored(opts: PredictOptions) -> None:
    """explain honours every prediction option that shapes its tiles and inputs (tile size,
    overlap, blend, batch, device, bands, workers, scale, strict) and refuses the others."""
    if opts.tta != "none":
        raise ExplainError(
            f"explain runs without test-time augmentation, got --tta {opts.tta}; drop --tta "
            "(each heat-map explains one pass of the network)"
        )
    if opts.precision not in ("auto", "fp32"):
        raise ExplainError(
            f"explain computes gradients in fp32, got --precision {opts.precision}; drop "
            "--precision or use fp32"
        )
    if opts.resample_to_model:
        raise ExplainError(
            "explain writes its maps on the scene's own grid and cannot --resample-to-model; "
            "resample the scene first (gdalwarp -tr GSD GSD) and explain that"
        )


def _tile_function(
    method: str,
    net: torch.nn.Module,
    module: torch.nn.Module,
    class_index: int | None,
    channels: int,
    in_channels: int,
    probe: int,
    device: torch.device,
    mask_of: MaskFunction | None,
) -> tuple[TileFunction, int, CamComputer | None]:
    """The per-tile function of ``method`` for the session, its map count, and the Grad-CAM
    computer to close afterwards (None for activations)."""
    if method == "activations":
        sl = slice(0, channels)
        k = min(channels, _layer_channels(net, module, in_channels, probe, device))

        def activations(batch: TileBatch) -> torch.Tensor:
            return activation_maps(net, module, batch.x.to(device), sl)

        return activations, k, None
    computer = CamComputer(net, module, int(class_index), method, device)  # type: ignore[arg-type]

    def cam(batch: TileBatch) -> torch.Tensor:
        target = batch.valid
        if mask_of is not None:
            target = target & torch.from_numpy(np.stack([mask_of(w) for w in batch.windows]))
        return computer(batch.x, target)

    return cam, 1, computer


def explain_raster(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    model: ModelRef = None,
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

    The tiles are those of ``predict`` with the same options: the same reads, input adaptation
    (``scale``, complex values), normalization, tile plan and blending (one tile engine,
    :class:`~geoseg.inference.PredictionSession`); only the per-tile function differs.

    Args:
        src: input raster ``(bands, rows, cols)``.
        dst: output float32 COG: one band for ``gradcam``/``gradcam++`` (class-score units, >= 0),
            ``channels`` bands for ``activations`` (the layer's first feature maps).
        model: any model reference with layers (a checkpoint or a bundled name, a LoadedModel, a
            module with ``config``); None: the default model.
        options: tile size, overlap, blend, batch size, device, bands, workers, scale, strict
            (:class:`PredictOptions`); test-time augmentation, reduced precision and
            ``resample_to_model`` are refused.
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
        ExplainError: unknown class, method or layer, an exported model (no gradients), a refused
            option, a window or AOI outside the raster; BandMismatchError, TilingError,
            InputCompatibilityError: as for predict.
    """
    start = time.perf_counter()
    opts = _checked_request(src, dst, model, aoi, overlay, method, overwrite, options, overrides)
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
    # the map and its picture appear together, or neither does
    with publish_together():
        with open_session(src, loaded, opts) as session:
            net = session.network_copy()
            probe = max(64, 2 * cfg.output_stride)
            layer_name, module = resolve_layer(net, layer, cfg.in_channels, size=probe)
            region, mask_of = _explained_area(session, window, aoi)
            fn, k, computer = _tile_function(
                method,
                net,
                module,
                class_index,
                channels,
                cfg.in_channels,
                probe,
                session.device,
                mask_of,
            )
            if method == "activations":
                descriptions = [f"{layer_name}[{i}]" for i in range(k)]
            else:
                descriptions = [f"{method} {class_name} @ {layer_name}"]
            tags = {
                "GEOSEG_METHOD": method,
                "GEOSEG_LAYER": layer_name,
                "GEOSEG_CLASS": class_name or "",
                "GEOSEG_MODEL": f"{cfg.architecture}-{cfg.encoder}",
            }
            try:
                _write_maps(session, region, fn, k, dst, descriptions, tags, overwrite)
            finally:
                if computer is not None:
                    computer.close()
            tiles_run = session.stats.run
        if tiles_run == 0:
            warnings.warn(
                f"{src}: no tile of the explained area holds a valid pixel; {dst} is all "
                "nodata (NaN)",
                NoValidDataWarning,
                stacklevel=2,
            )
        drawn: Path | None = None
        if overlay is not None:
            from geoseg.io.overlay import write_activation_grid, write_heat_overlay

            if method == "activations":
                drawn = write_activation_grid(
                    pending_path(dst), overlay, title=f"{layer_name}: first {k} feature maps"
                )
            else:
                drawn = write_heat_overlay(
                    src,
                    pending_path(dst),
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
        tiles_run,
        time.perf_counter() - start,
    )


def _checked_request(
    src: Any,
    dst: Any,
    model: Any,
    aoi: Any,
    overlay: Any,
    method: str,
    overwrite: bool,
    options: PredictOptions | None,
    overrides: dict[str, Any],
) -> PredictOptions:
    """The options of an explain request, once the method, the paths and the options passed."""
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
    _refuse_ignored(opts)
    return opts


def _explained_area(
    session: PredictionSession, window: Window | None, aoi: Any
) -> tuple[Window, MaskFunction | None]:
    """The part of the raster explained (the window, else the AOI's bounding window, else all)
    and the AOI's mask function, if any."""
    reader = session.reader
    region = _window_in(window, reader.height, reader.width)
    if aoi is None:
        return region, None
    from geoseg.explain.aoi import AreaOfInterest

    area = AreaOfInterest.read(aoi, reader.transform, reader.crs, reader.height, reader.width)
    if window is None:
        region = _window_in(area.window, reader.height, reader.width)
    return region, area.mask


def _write_maps(
    session: PredictionSession,
    region: Window,
    fn: TileFunction,
    count: int,
    dst: Any,
    descriptions: list[str],
    tags: dict[str, str],
    overwrite: bool,
) -> None:
    """Blend ``fn``'s maps over ``region`` into the float32 COG ``dst`` (NaN where no data)."""
    reader = session.reader
    with COGWriter(
        dst,
        height=int(region.height),
        width=int(region.width),
        count=count,
        dtype="float32",
        nodata=float("nan"),
        transform=tile_transform(region, reader.transform),
        crs=reader.crs,
        descriptions=descriptions,
        resampling="average",
        tags=tags,
        overwrite=overwrite,
    ) as out:
        for rows in session.rows(region, fn=fn, channels=count):
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


def _layer_channels(
    net: torch.nn.Module, module: torch.nn.Module, in_channels: int, size: int, device: torch.device
) -> int:
    x = torch.zeros(1, in_channels, size, size, device=device)
    return int(activation_maps(net, module, x, slice(None), upsample=False).shape[1])
