"""One huge raster as blocks: predicted on the workers, assembled into one COG by one writer.

Every block is predicted with :mod:`geoseg.inference`'s own tile engine over the halo of tiles it
needs, so each output pixel sums exactly the tiles of a single-process run, through the same
network, at the same precision (``auto`` is resolved once, here, on the first tile, as a
single-process run does, and passed to every block). Workers send back finished uint8 arrays;
the client writes them into the usual atomic COG writer as they arrive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio.windows import Window

from geoseg.distributed.inputs import OutputSet
from geoseg.distributed.worker import task_environment
from geoseg.inference.options import PredictOptions
from geoseg.io.writer import COG_BLOCK
from geoseg.models.resolve import model_config, shared_model
from geoseg.provenance import Provenance

__all__ = ["BlockOutput", "RasterDone", "block_grid", "predict_blocks", "resolve_precision"]

log = logging.getLogger(__name__)

DEFAULT_BLOCK = 4096  # block edge in pixels: 16 Mpx of uint8 classes travel back per block


@dataclass
class RasterDone:
    """One input's outcome.

    Attributes:
        outputs: the output set (paths or ``s3://`` URLs).
        skipped: its outputs were already there (a resumed run).
        height, width: raster size in pixels (0 when skipped).
        tiles_run, tiles_skipped: tiles through the model, tiles without data.
        precision: precision used.
        seconds: wall time of its task (or, for blocks, of the whole assembly).
    """

    outputs: OutputSet
    skipped: bool = False
    height: int = 0
    width: int = 0
    tiles_run: int = 0
    tiles_skipped: int = 0
    precision: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class BlockOutput:
    """Finished uint8 outputs of one block: ``classes`` ``(1, rows, cols)``, optional
    ``probabilities`` ``(classes, rows, cols)`` and ``confidence`` ``(1, rows, cols)``, and
    ``valid`` ``(rows, cols)`` (the pixels with data: the internal mask of the probabilities)."""

    window: Window
    classes: np.ndarray
    probabilities: np.ndarray | None
    confidence: np.ndarray | None
    tiles_run: int
    tiles_skipped: int
    valid: np.ndarray | None = None


def block_grid(height: int, width: int, block_size: int = DEFAULT_BLOCK) -> list[Window]:
    """Windows of ``block_size`` (rounded down to the COG's 512-px internal tiles when larger)
    covering ``(height, width)`` in raster order."""
    size = block_size // COG_BLOCK * COG_BLOCK if block_size >= COG_BLOCK else max(16, block_size)
    return [
        Window(c, r, min(size, width - c), min(size, height - r))
        for r in range(0, height, size)
        for c in range(0, width, size)
    ]


def resolve_precision(src: str, model: Any, options: PredictOptions) -> str:
    """The precision a single-process run of ``src`` would choose: ``options.precision`` unless it
    is ``auto``, which the engine decides on the raster's first tile holding data."""
    if options.precision != "auto":
        return options.precision
    from geoseg.inference.session import open_session

    with open_session(src, shared_model(model), options) as session:
        return session.resolve_precision()


def predict_block_outputs(
    src: str,
    model: Any,
    options: PredictOptions,
    window: Window,
    probabilities: bool,
    confidence: bool,
    threads: int | None = None,
) -> BlockOutput:
    """Predict one block on a worker and reduce it to the uint8 outputs (a Dask task)."""
    from geoseg.inference.session import open_session
    from geoseg.inference.tiles import finalize

    with task_environment(threads), open_session(src, shared_model(model), options) as session:
        bands = 1 + (session.config.num_classes if probabilities else 0) + confidence
        with session.gdal_env(window, bands):
            parts = [
                finalize(rows, probabilities=probabilities, confidence=confidence)
                for rows in session.rows(window)
            ]

    def stack(name: str) -> np.ndarray | None:
        arrays = [getattr(p, name) for p in parts]
        return None if arrays[0] is None else np.concatenate(arrays, axis=1)

    classes = stack("classes")
    assert classes is not None
    return BlockOutput(
        window,
        classes,
        stack("probabilities"),
        stack("confidence"),
        session.stats.run,
        session.stats.skipped,
        np.concatenate([p.valid for p in parts], axis=0),
    )


def predict_blocks(
    outputs: OutputSet,
    model: Any,
    options: PredictOptions,
    *,
    client: Any,
    overwrite: bool = False,
    block_size: int = DEFAULT_BLOCK,
    retries: int = 2,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    provenance: Provenance | None = None,
) -> RasterDone:
    """Predict one raster as blocks on a Dask cluster into its output set.

    Args:
        outputs: input and output paths (local or ``s3://``).
        model: checkpoint path/URL, None (bundled model), or a LoadedModel (or a Dask future of
            one).
        options: prediction options; ``precision="auto"`` is resolved here once.
        client: a connected ``distributed.Client``.
        overwrite: replace existing outputs.
        block_size: block edge in pixels (rounded to 512).
        retries: times a failed block is retried (a lost worker's blocks are rerun anyway).
        threads: torch threads per task (None: the worker's setting).
        progress: called with ``(blocks done, blocks in all)``.
        provenance: what the outputs record (default: this request's, built here).

    Returns:
        A :class:`RasterDone`.
    """
    from distributed import as_completed

    from geoseg.inference.outputs import output_writers
    from geoseg.inference.session import raster_input
    from geoseg.io.reader import RasterReader
    from geoseg.io.storage import check_output, published

    start = time.perf_counter()
    for path in outputs.paths:
        check_output(path, overwrite=overwrite)
    local_model = model if not hasattr(model, "key") else model.result()
    cfg = model_config(local_model)
    precision = resolve_precision(outputs.src, local_model, options)
    opts = options.replace(precision=precision)
    if provenance is None:
        from geoseg.inference.provenance import request_provenance

        provenance = request_provenance(outputs.src, local_model, options, config=cfg)
    _, path, bands = raster_input(outputs.src, options, cfg)  # a STAC item: its VRT
    with RasterReader(path, bands=bands) as reader:
        geo = reader.grid
    windows = block_grid(geo["height"], geo["width"], block_size)
    want_p, want_c = outputs.probabilities is not None, outputs.confidence is not None
    futures = [
        client.submit(
            predict_block_outputs,
            outputs.src,
            model,
            opts,
            w,
            want_p,
            want_c,
            threads,
            retries=retries,
            pure=False,
        )
        for w in windows
    ]
    stats = {"run": 0, "skipped": 0}
    with ExitStack() as stack:
        # the very writers of a prediction in one process, under temporary names until the end
        mask = stack.enter_context(published(outputs.mask))
        extra = [
            None if path is None else stack.enter_context(published(path))
            for path in (outputs.probabilities, outputs.confidence)
        ]
        writers = output_writers(cfg, geo, mask, *extra, overwrite=True, provenance=provenance)
        for writer, _ in writers:
            stack.enter_context(writer)
        stack.callback(lambda: client.cancel(futures))
        for done, future in enumerate(as_completed(futures), start=1):
            block: BlockOutput = future.result()
            future.release()
            for writer, name in writers:
                writer.write(getattr(block, name), block.window, block.valid)
            stats["run"] += block.tiles_run
            stats["skipped"] += block.tiles_skipped
            if progress is not None:
                progress(done, len(windows))
    seconds = time.perf_counter() - start
    log.info("%s: %d blocks in %.1f s", outputs.mask, len(windows), seconds)
    return RasterDone(
        outputs,
        False,
        geo["height"],
        geo["width"],
        stats["run"],
        stats["skipped"],
        precision,
        seconds,
        {"blocks": len(windows)},
    )
