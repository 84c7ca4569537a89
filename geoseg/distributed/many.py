"""``predict_many``: many rasters into one output folder, in this process or on a Dask cluster.

Each input gets one output set (class mask, and optionally probabilities, confidence and
polygons). Inputs whose outputs all exist are skipped, so an interrupted run resumes where it
stopped. On a cluster, many rasters run as one task each; a single raster runs as blocks
(:mod:`geoseg.distributed.blocks`). Workers load the model once each and keep it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoseg.distributed.blocks import DEFAULT_BLOCK, RasterDone, predict_blocks
from geoseg.distributed.inputs import OutputSet, check_output_sets, expand_inputs, output_set
from geoseg.distributed.worker import task_environment
from geoseg.inference.options import PredictOptions
from geoseg.io.storage import exists, is_object_url
from geoseg.provenance import Provenance
from geoseg.vectorize.options import VectorizeOptions

__all__ = ["ManyResult", "predict_many", "predict_one"]

log = logging.getLogger(__name__)


@dataclass
class ManyResult:
    """What :func:`predict_many` did.

    Attributes:
        done: one :class:`RasterDone` per input, in input order (skipped ones included).
        seconds: wall time.
        workers: Dask workers used (0: in this process).
        catalog: the STAC catalog written beside the outputs, if any.
    """

    done: list[RasterDone] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 0
    catalog: str | None = None

    @property
    def predicted(self) -> int:
        return sum(not d.skipped for d in self.done)

    @property
    def skipped(self) -> int:
        return sum(d.skipped for d in self.done)

    @property
    def megapixels_per_second(self) -> float:
        return (
            sum(d.height * d.width for d in self.done if not d.skipped) / 1e6 / self.seconds
            if self.seconds
            else 0.0
        )


def predict_one(
    outputs: OutputSet,
    model: Any,
    options: PredictOptions,
    vector_options: VectorizeOptions | Mapping[str, Any] | None = None,
    threads: int | None = None,
    provenance: Provenance | None = None,
) -> RasterDone:
    """Predict one input into its output set, replacing leftovers of an interrupted run (a task).

    Outputs bound for ``s3://`` are built in a temporary folder and uploaded when complete, the
    class mask last. ``provenance`` is what they record (default: built here).
    """
    from geoseg.inference.engine import predict_raster
    from geoseg.io.atomic import pending_path, publish_together
    from geoseg.io.storage import published
    from geoseg.models.resolve import shared_model

    start = time.perf_counter()
    # local outputs appear together or not at all; object-storage outputs are uploaded when
    # complete, the class mask last
    together = not any(is_object_url(p) for p in outputs.paths)
    with (
        task_environment(threads),
        publish_together() if together else contextlib.nullcontext(),
        ExitStack() as stack,
    ):
        loaded = shared_model(model)
        mask = stack.enter_context(published(outputs.mask))
        probs = (
            stack.enter_context(published(outputs.probabilities)) if outputs.probabilities else None
        )
        conf = stack.enter_context(published(outputs.confidence)) if outputs.confidence else None
        result = predict_raster(
            outputs.src,
            mask,
            loaded,
            options,
            probabilities=probs,
            confidence=conf,
            overwrite=True,
            provenance=provenance,
        )
        if outputs.vector is not None:
            from geoseg.vectorize import vectorize_raster

            vector = stack.enter_context(published(outputs.vector))
            vopts = VectorizeOptions.of(vector_options)
            if vopts.workers is None:  # a task takes the threads it was given, not every core
                vopts = vopts.replace(workers=threads or 1)
            scores = conf or probs
            vectorize_raster(
                pending_path(mask),
                vector,
                vopts,
                confidence=pending_path(scores) if scores else None,
                overwrite=True,
            )
    return RasterDone(
        outputs,
        False,
        result.height,
        result.width,
        result.tiles_run,
        result.tiles_skipped,
        result.precision,
        time.perf_counter() - start,
    )


def _output_sets(
    inputs: Iterable[str | os.PathLike[str] | OutputSet],
    outdir: str | os.PathLike[str] | None,
    probabilities: bool,
    confidence: bool,
    vector: str | None,
) -> list[OutputSet]:
    """The output set of every input: as given, or named in ``outdir``."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    named = [i for i in items if isinstance(i, OutputSet)]
    if named and len(named) == len(items):
        return named
    if named or outdir is None:
        raise TypeError("give inputs and an output folder, or output sets alone")
    sources = expand_inputs(i for i in items if not isinstance(i, OutputSet))
    if not is_object_url(outdir):
        Path(outdir).mkdir(parents=True, exist_ok=True)
    return [
        output_set(s, outdir, probabilities=probabilities, confidence=confidence, vector=vector)
        for s in sources
    ]


def _vectorize_on_cluster(
    outputs: OutputSet,
    client: Any,
    vector_options: VectorizeOptions | Mapping[str, Any] | None,
    retries: int,
) -> None:
    from geoseg.distributed.cluster import total_threads
    from geoseg.io.storage import published
    from geoseg.vectorize import vectorize_raster

    assert outputs.vector is not None
    with published(outputs.vector) as vector:
        vectorize_raster(
            outputs.mask,
            vector,
            VectorizeOptions.of(vector_options).replace(workers=total_threads(client)),
            confidence=outputs.confidence or outputs.probabilities,
            overwrite=True,
            pool=client.get_executor(retries=retries, pure=False),
        )


def predict_many(
    inputs: Iterable[str | os.PathLike[str] | OutputSet],
    outdir: str | os.PathLike[str] | None,
    model: Any = None,
    options: PredictOptions | None = None,
    *,
    scheduler: Any = None,
    probabilities: bool = False,
    confidence: bool = False,
    vector: str | None = None,
    vector_options: VectorizeOptions | Mapping[str, Any] | None = None,
    overwrite: bool = False,
    blocks: bool | None = None,
    block_size: int = DEFAULT_BLOCK,
    retries: int = 2,
    progress: Callable[[int, int], None] | None = None,
    stac: bool = True,
    **overrides: Any,
) -> ManyResult:
    """Segment many rasters into ``outdir``, one output set each, skipping those already done.

    An input is done when its outputs exist and the provenance its class mask records is this
    request's (the same model weights, pixel-changing options and input): outputs that another
    request made are redone. Beside the outputs go a STAC Item per input and a ``catalog.json``
    linking them (:mod:`geoseg.io.stac_items`).

    Args:
        inputs: paths, URLs (``http(s)://``, ``s3://``), globs, folders, ``@list.txt`` files,
            STAC items, ItemCollections and static catalogs (each item an input); or
            :class:`~geoseg.distributed.OutputSet` values, inputs with their outputs named.
        outdir: output folder or ``s3://bucket/prefix``; a local one is created. Outputs are
            ``<stem>_classes.tif`` (and ``_probabilities.tif``, ``_confidence.tif``,
            ``_polygons<vector>``). None when every input is an output set.
        model: checkpoint path or ``s3://`` URL, a LoadedModel, or None (the bundled model).
        options: :class:`~geoseg.inference.PredictOptions`; keyword ``overrides`` change fields.
        scheduler: None (this process), ``"local"``, ``"local:N"``, ``"tcp://host:port"``, or a
            ``distributed.Client``.
        probabilities, confidence: also write those rasters.
        vector: also write polygons in this format (``".gpkg"``, ``".fgb"``, ``".parquet"``...).
        vector_options: how polygons are made (:class:`~geoseg.vectorize.VectorizeOptions`, or
            a mapping of its fields)
            (``simplify``, ``min_area``...).
        overwrite: redo inputs whose outputs exist instead of skipping them.
        blocks: on a cluster, split each raster into blocks across the workers (default: when a
            single raster is to be done) instead of running each raster as one task.
        block_size: block edge in pixels for ``blocks``.
        retries: times a failed task is retried (a lost worker's tasks are rerun in any case).
        progress: called with ``(done, total)`` in rasters (or blocks, for one raster in blocks).
        stac: write a STAC Item beside each input's outputs, and ``catalog.json`` in ``outdir``
            (with an output folder).

    Returns:
        A :class:`ManyResult`.

    Raises:
        RasterOpenError: an input names nothing. WriteError: two inputs share output names.
        SchedulerError: the scheduler is unreachable. Any error of a task, as raised there.
    """
    opts = PredictOptions.of(options, **overrides)
    start = time.perf_counter()
    if isinstance(scheduler, str):
        from geoseg.distributed.cluster import parse_scheduler

        parse_scheduler(scheduler)  # a bad value fails now, even when every input is done
    sets = _output_sets(inputs, outdir, probabilities, confidence, vector)
    check_output_sets(sets)
    requests = _requests(sets, model, opts)
    result = ManyResult()
    by_src: dict[str, RasterDone] = {}
    todo: list[OutputSet] = []
    for s in sets:
        if not overwrite and _done(s, requests[s.src]):
            by_src[s.src] = RasterDone(s, skipped=True)
            log.info("%s: outputs exist and record this request, skipped", s.src)
        else:
            todo.append(s)
    count = [len(sets) - len(todo)]

    def finished(item: RasterDone | None = None, *, say: bool = True) -> None:
        if item is not None:
            by_src[item.outputs.src] = item
            count[0] += 1
        if progress is not None and say:
            progress(count[0], len(sets))

    finished()
    if scheduler is None:
        for s in todo:
            finished(predict_one(s, model, opts, vector_options, None, requests[s.src]))
    elif todo:
        result.workers = _on_cluster(
            todo,
            model,
            opts,
            scheduler,
            requests,
            finished,
            vector_options=vector_options,
            blocks=blocks if blocks is not None else len(todo) == 1,
            block_size=block_size,
            retries=retries,
            progress=progress if len(todo) == 1 else None,
        )
    result.done = [by_src[s.src] for s in sets]
    if stac and outdir is not None:
        result.catalog = _write_stac(result.done, outdir)
    result.seconds = time.perf_counter() - start
    return result


def _on_cluster(
    todo: list[OutputSet],
    model: Any,
    options: PredictOptions,
    scheduler: Any,
    requests: dict[str, Any],
    finished: Callable[..., None],
    *,
    vector_options: VectorizeOptions | Mapping[str, Any] | None,
    blocks: bool,
    block_size: int,
    retries: int,
    progress: Callable[[int, int], None] | None,
) -> int:
    """Predict ``todo`` on a Dask cluster: each raster in blocks across the workers, or each as
    one task; ``finished`` is called with each outcome. Returns the number of workers."""
    from distributed import as_completed

    from geoseg.distributed.cluster import open_client

    with open_client(scheduler) as (client, spec):
        workers = len(client.scheduler_info().get("workers", {}))
        threads = spec.threads if spec.local else None
        shared = model
        if model is not None and not isinstance(model, (str, os.PathLike)):
            shared = client.scatter(model, broadcast=True)
        if blocks:
            for s in todo:
                done = predict_blocks(
                    s,
                    shared,
                    options,
                    client=client,
                    overwrite=True,
                    block_size=block_size,
                    retries=retries,
                    threads=threads,
                    progress=progress,  # one raster: its blocks are the progress
                    provenance=requests[s.src],
                )
                if s.vector is not None:
                    _vectorize_on_cluster(s, client, vector_options, retries)
                finished(done, say=progress is None)  # a raster's blocks said its progress
            return workers
        futures = [
            client.submit(
                predict_one,
                s,
                shared,
                options,
                vector_options,
                threads,
                requests[s.src],
                retries=retries,
                pure=False,
            )
            for s in todo
        ]
        try:
            for future in as_completed(futures):
                finished(future.result())
        finally:
            client.cancel(futures)
    return workers


def _requests(sets: list[OutputSet], model: Any, options: PredictOptions) -> dict[str, Any]:
    """The provenance of each input's request, the model identified once for all."""
    from geoseg.inference.provenance import request_provenance
    from geoseg.models.identity import model_identity
    from geoseg.models.resolve import model_config
    from geoseg.provenance import utc_now

    if not sets:
        return {}
    identity, config, now = model_identity(model), model_config(model), utc_now()
    return {
        s.src: request_provenance(
            s.src, model, options, config=config, identity=identity, created=now
        )
        for s in sets
    }


def _done(outputs: OutputSet, request: Provenance) -> bool:
    """Whether an input's outputs all exist and its class mask records ``request``."""
    from geoseg.io.info import raster_provenance

    if not all(exists(p) for p in outputs.paths):
        return False
    recorded = raster_provenance(outputs.mask)
    if request.same_request(recorded):
        return True
    log.info(
        "%s: its outputs were made by %s, not this request; redone",
        outputs.src,
        "another request" if recorded is not None else "an unknown request (no provenance)",
    )
    return False


def _write_stac(done: list[RasterDone], outdir: str | os.PathLike[str]) -> str:
    """A STAC Item beside each input's outputs (kept when the input was skipped and its Item is
    there), and ``catalog.json`` in ``outdir`` linking them all."""
    from geoseg.io.stac_items import item_path, write_catalog, write_item
    from geoseg.io.storage import join

    catalog = join(outdir, "catalog.json")
    items = []
    for d in done:
        o = d.outputs
        path = item_path(o.mask)
        if not d.skipped or not exists(path):
            assets = {
                "classes": o.mask,
                "probabilities": o.probabilities,
                "confidence": o.confidence,
                "polygons": o.vector,
            }
            write_item({k: v for k, v in assets.items() if v is not None}, path, catalog=catalog)
        items.append(path)
    return write_catalog(items, catalog)
