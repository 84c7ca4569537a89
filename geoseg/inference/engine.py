"""The prediction doors of the Python API, each a thin client of the tile engine
(:class:`~geoseg.inference.session.PredictionSession`).

- :func:`predict_raster`: a raster of any size into COGs, rows written behind by a thread;
- :func:`predict_block`: the probabilities of one window, identical to that window of a full run;
- :func:`predict_classes`: class ids in memory;
- :func:`iter_probabilities`: blended probabilities of a whole raster, a band of rows at a time.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.errors import NoValidDataWarning, RasterFormatError
from geoseg.inference.options import PredictOptions
from geoseg.inference.outputs import CONFIDENCE_NODATA, output_writers
from geoseg.inference.session import PredictionSession, open_session
from geoseg.inference.tiles import MASK_NODATA, Finished, finalize, geoarray_of
from geoseg.io.atomic import check_paths, publish_together, temporary_name
from geoseg.io.reader import GeoArray
from geoseg.io.writer import check_destination
from geoseg.models.config import ModelConfig
from geoseg.models.resolve import ModelRef, resolve_model
from geoseg.provenance import Provenance

__all__ = [
    "CONFIDENCE_NODATA",
    "PredictOptions",
    "PredictionResult",
    "iter_probabilities",
    "output_writers",
    "predict_block",
    "predict_classes",
    "predict_raster",
    "resolve_model",
]

log = logging.getLogger(__name__)

ModelSource = ModelRef  # the name this module used before the resolver moved to geoseg.models


@dataclass
class PredictionResult:
    """What a prediction produced and how fast.

    Attributes:
        mask: path of the class mask.
        probabilities: path of the probability raster, if asked for.
        confidence: path of the confidence raster, if asked for.
        tiles: tiles in the plan; ``tiles_run`` went through the model, ``tiles_skipped`` held no
            data.
        precision: precision used (``auto`` resolved).
        precision_note: the precision, with why ``auto`` chose it.
        network: ``frozen`` or ``eager`` and where it came from.
        device: device used.
        seconds: wall time.
        megapixels_per_second: raster megapixels per wall-clock second.
        provenance: what the outputs record about how they were made.
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
    precision_note: str = ""
    network: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    provenance: Provenance | None = None


def predict_block(
    src: str | os.PathLike[str],
    model: ModelRef,
    block: Any,
    options: PredictOptions | None = None,
    *,
    config: ModelConfig | None = None,
    **overrides: Any,
) -> GeoArray:
    """Class probabilities of one block of the raster, identical to that block of a full run.

    Args:
        src: input raster path or URL.
        model: any model reference (a checkpoint, ``.onnx``, ``quality``/``fast``, a
            LoadedModel, a module with ``config``); ``None``: the default model.
        block: the output window (a rasterio ``Window``), in the raster's pixel grid.
        options: how to predict (:class:`PredictOptions`); keyword ``overrides`` change fields of
            it.
        config: model config for a bare module.

    Returns:
        A :class:`GeoArray` with ``(classes, rows, cols)`` float32 probabilities, the validity
        mask, and the block's transform and CRS.
    """
    with open_session(src, model, options, config=config, **overrides) as session:
        parts = [geoarray_of(rows, session.reader) for rows in session.rows(block)]
        crs = session.reader.crs
    data = np.concatenate([p.data for p in parts], axis=1)
    valid = np.concatenate([p.valid for p in parts], axis=0)
    return GeoArray(data, valid, parts[0].transform, crs, block)


def predict_classes(
    src: str | os.PathLike[str],
    model: ModelRef = None,
    options: PredictOptions | None = None,
    *,
    block: Any = None,
    config: ModelConfig | None = None,
    **overrides: Any,
) -> GeoArray:
    """Class ids of a raster (or of one ``block``) in memory, equal to the mask
    :func:`predict_raster` writes.

    Args:
        src: input raster path or URL.
        model: any model reference; ``None``: the default model.
        options: how to predict (:class:`PredictOptions`); keyword ``overrides`` change fields of
            it.
        block: the output window (default: the whole raster).
        config: model config for a bare module.

    Returns:
        A :class:`GeoArray` whose ``data`` is ``(1, rows, cols)`` uint8 class ids (255 where the
        input has no data), with the validity mask, transform and CRS.
    """
    with open_session(src, model, options, config=config, **overrides) as session:
        return session.classes(block)


def iter_probabilities(
    src: str | os.PathLike[str],
    model: ModelRef = None,
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
    with open_session(src, model, options, config=config, **overrides) as session:
        yield from session.probabilities()


def _check_outputs(
    src: Any, model: ModelRef, outputs: dict[str, Any], *, overwrite: bool
) -> list[Path]:
    """Refuse outputs that would replace an input, are not GeoTIFF names, or exist."""
    check_paths(
        {"SRC": src, "--model": model if isinstance(model, (str, os.PathLike)) else None}, outputs
    )
    paths = [Path(p) for p in outputs.values() if p is not None]
    for p in paths:
        if p.suffix.lower() not in (".tif", ".tiff"):
            raise RasterFormatError(
                f"{p}: predict writes Cloud-Optimized GeoTIFFs; expected a .tif or .tiff name, got "
                f"{p.suffix or 'none'} (for a picture use --quicklook {p.with_suffix('.png').name})"
            )
        check_destination(p, overwrite=overwrite)
    return paths


def write_session(
    session: PredictionSession,
    dst: str | os.PathLike[str],
    *,
    probabilities: str | os.PathLike[str] | None = None,
    confidence: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    grid: dict[str, Any] | None = None,
    provenance: Provenance | None = None,
) -> None:
    """Run a session over its whole raster into the output COGs (the writing half of
    :func:`predict_raster`): finished rows are reduced to uint8 here and written behind by one
    thread. Every output is published only when complete, tagged with ``provenance``."""
    cfg, reader = session.config, session.reader

    def write(out: Finished) -> None:
        for writer, name in writers:
            writer.write(getattr(out, name), out.window, out.valid)

    # ExitStack unwinds in reverse: the writer thread finishes, each COG is published (or removed
    # on error), GDAL's cache setting is restored, and last the session closes (its read-ahead
    # threads stopped before any handle closes).
    with ExitStack() as stack:
        stack.callback(session.close)
        stripes = session.stripes()
        session.count_tiles(stripes)
        writers = output_writers(
            cfg,
            grid or reader.grid,
            dst,
            probabilities,
            confidence,
            overwrite=overwrite,
            provenance=provenance,
        )
        bands = 1 + (cfg.num_classes if probabilities is not None else 0) + (confidence is not None)
        stack.enter_context(session.gdal_env(stripes[0], bands))
        for writer, _ in writers:
            stack.enter_context(writer)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoseg-write") as pool:
            in_flight: list[Future[None]] = []
            for region in stripes:
                for rows in session.rows(region):
                    # reduce to uint8 here, so only small arrays wait for the writer thread
                    out = finalize(
                        rows,
                        probabilities=probabilities is not None,
                        confidence=confidence is not None,
                    )
                    del rows
                    in_flight.append(pool.submit(write, out))
                    while len(in_flight) > 2:
                        in_flight.pop(0).result()
            for f in in_flight:
                f.result()


def predict_raster(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    model: ModelRef = None,
    options: PredictOptions | None = None,
    *,
    config: ModelConfig | None = None,
    probabilities: str | os.PathLike[str] | None = None,
    confidence: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int, float], None] | None = None,
    provenance: Provenance | None = None,
    **overrides: Any,
) -> PredictionResult:
    """Segment a raster of any size into a class-mask COG (and optional probability/confidence
    COGs).

    Args:
        src: input raster path or ``http(s)://``/``s3://`` URL; ``(bands, rows, cols)`` of any
            dtype.
        dst: output class mask (uint8, nodata 255, colour table and class names).
        model: any model reference: a checkpoint path, an ``.onnx`` file, ``quality``/``fast``,
            a LoadedModel, or a module (then pass ``config``); ``None``: the default model.
        options: how to predict (:class:`PredictOptions`: tile size, overlap, blend, batch,
            device, precision, TTA, bands, workers, scale, resample_to_model, strict); keyword
            ``overrides`` change fields of it, e.g.
            ``predict_raster(src, dst, "fast", tile_size=256, device="cpu")``.
        config: model config for a bare module.
        probabilities: optional path for per-class probabilities (uint8, 0-255).
        confidence: optional path for the winning class's probability (uint8, 0-255).
        overwrite: replace existing outputs.
        progress: called after each tile with ``(tiles done, tiles in all, raster megapixels)``.
        provenance: what every output records (:class:`~geoseg.provenance.Provenance`); default:
            this request's (geoseg version, model name and weights digest, the options that
            change pixels, ``src`` and its STAC item id, the time), built here.

    Returns:
        A :class:`PredictionResult` with paths and figures (``provenance`` among them).

    Raises:
        RasterOpenError, BandMismatchError, TilingError, CheckpointError, OutputExistsError,
        WriteError, DeviceError: with what was expected and how to fix it.
    """
    start = time.perf_counter()
    _check_outputs(
        src,
        model,
        {"DST": dst, "--probabilities": probabilities, "--confidence": confidence},
        overwrite=overwrite,
    )
    opts = PredictOptions.of(options, **overrides)
    if opts.resample_to_model:
        return _predict_resampled(
            src,
            dst,
            model,
            opts,
            config,
            probabilities,
            confidence,
            overwrite,
            progress,
            start,
            provenance,
        )
    session = open_session(src, model, opts, config=config)
    if provenance is None:
        provenance = _provenance_of(session, model, opts)
    session.progress = progress
    with publish_together():  # the mask and its companions appear together, or none does
        write_session(
            session,
            dst,
            probabilities=probabilities,
            confidence=confidence,
            overwrite=overwrite,
            provenance=provenance,
        )
    result = _result(session, dst, probabilities, confidence, start)
    result.provenance = provenance
    return result


def _provenance_of(session: PredictionSession, model: ModelRef, opts: PredictOptions) -> Any:
    """The request's provenance, built once at this door (a failure closes the session)."""
    from geoseg.inference.provenance import request_provenance

    stac = session.stac
    try:
        return request_provenance(
            session.src,
            model,
            opts,
            config=session.config,
            item=stac.item_id if stac is not None else None,
        )
    except BaseException:
        session.close()
        raise


def _result(
    session: PredictionSession,
    dst: Any,
    probabilities: Any,
    confidence: Any,
    start: float,
) -> PredictionResult:
    seconds = time.perf_counter() - start
    if session.stats.run == 0:
        warnings.warn(
            f"{session.src}: no tile held a valid pixel; the mask is all nodata ({MASK_NODATA})",
            NoValidDataWarning,
            stacklevel=3,
        )
    runner = session.runner
    return PredictionResult(
        mask=Path(dst),
        height=session.reader.height,
        width=session.reader.width,
        probabilities=Path(probabilities) if probabilities else None,
        confidence=Path(confidence) if confidence else None,
        tiles=len(session.plan),
        tiles_run=session.stats.run,
        tiles_skipped=session.stats.skipped,
        precision=runner.precision,
        device=str(runner.device),
        seconds=seconds,
        megapixels_per_second=session.megapixels / seconds,
        precision_note=runner.precision_note(),
        network=runner.freeze_note,
        extra={
            "agreement": runner.agreement,
            "stride": session.plan.stride,
            "overlap": session.plan.overlap,
        },
    )


def _predict_resampled(
    src: Any,
    dst: Any,
    model: ModelRef,
    opts: PredictOptions,
    config: ModelConfig | None,
    probabilities: Any,
    confidence: Any,
    overwrite: bool,
    progress: Any,
    start: float,
    provenance: Provenance | None,
) -> PredictionResult:
    """``resample_to_model``: the input warped to the model's pixel size, predicted there by the
    same engine, each output warped back onto the input's exact grid."""
    from geoseg.inference.provenance import request_provenance
    from geoseg.inference.resample import resampling_for, warp_back, warp_input
    from geoseg.inference.session import raster_input

    loaded = resolve_model(model, config=config)
    if provenance is None:
        provenance = request_provenance(src, model, opts, config=loaded.config)
    plain = opts.replace(resample_to_model=False)
    _, raster, bands = raster_input(str(src), opts, loaded.config)
    if bands != opts.bands:  # a STAC item: the VRT holds the model's bands already
        plain = plain.replace(bands=bands)
    plan = resampling_for(raster, loaded.config, opts)
    if plan is None:  # already at the model's pixel size
        return predict_raster(
            raster,
            dst,
            loaded,
            plain,
            probabilities=probabilities,
            confidence=confidence,
            overwrite=overwrite,
            progress=progress,
            provenance=provenance,
        )
    work = temporary_name(Path(dst), "-resample")
    work.mkdir()
    try:
        fine = warp_input(raster, plan, work / "input.tif")
        parts = {"classes": work / "classes.tif"}
        if probabilities is not None:
            parts["probabilities"] = work / "probabilities.tif"
        if confidence is not None:
            parts["confidence"] = work / "confidence.tif"
        session = open_session(fine, loaded, plain)
        session.progress = progress
        write_session(
            session,
            parts["classes"],
            probabilities=parts.get("probabilities"),
            confidence=parts.get("confidence"),
            overwrite=True,
        )
        writers = output_writers(
            loaded.config,
            plan.grid,
            dst,
            probabilities,
            confidence,
            overwrite=overwrite,
            provenance=provenance,
        )
        with publish_together():
            warp_back(parts, writers, plan.grid)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = _result(session, dst, probabilities, confidence, start)
    result.height, result.width = plan.grid["height"], plan.grid["width"]
    result.megapixels_per_second = result.height * result.width / 1e6 / result.seconds
    result.extra["resampled_to"] = plan.gsd
    result.provenance = provenance
    return result
