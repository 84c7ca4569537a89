"""``geoseg predict`` over many inputs, over ``s3://``, or on a Dask cluster (``--scheduler``)."""

from __future__ import annotations

from typing import Any

import click

from geoseg.cli.console import progress_bar, quiet_dask, say
from geoseg.cli.options import F, apply_options, int_option, pop_predict_options

_PATTERN = ("*", "?", "[")

_scale_options = [
    click.option(
        "--scheduler",
        metavar="local[:N]|tcp://HOST:PORT",
        help="Run on Dask: a local cluster of N worker processes, or a running scheduler.",
    ),
    int_option(
        "--retries",
        2,
        minimum=0,
        help="With --scheduler: times a failed task is retried (a lost worker's tasks rerun "
        "anyway).",
    ),
]


def scale_options(f: F) -> F:
    """``--scheduler`` and ``--retries``."""
    return apply_options(f, _scale_options)


def _is_folder(dst: str) -> bool:
    import os

    return dst.endswith("/") or os.path.isdir(dst) or not os.path.splitext(dst.rstrip("/"))[1]


def is_many(sources: list[str], dst: str, params: dict[str, Any]) -> bool:
    """Whether this run goes through the scale-out path: several inputs, a pattern, folder or
    @list input, an output folder, s3:// paths, or a scheduler."""
    import os

    one = sources[0]
    pattern = one.startswith("@") or any(ch in one for ch in _PATTERN) or os.path.isdir(one)
    return bool(
        len(sources) > 1
        or pattern
        or params.get("scheduler")
        or _is_folder(dst)
        or one.startswith("s3://")
        or dst.startswith("s3://")
    )


def run_many(
    ctx: click.Context,
    sources: list[str],
    dst: str,
    model: str | None,
    probabilities: str | None,
    confidence: str | None,
    vector: str | None,
    quicklook: str | None,
    overwrite: bool,
    params: dict[str, Any],
    stac: bool = False,
) -> None:
    """Run the scale-out path and print one line per run."""
    from geoseg.cli.vectorize import vector_options_of
    from geoseg.distributed.inputs import OutputSet, expand_inputs
    from geoseg.distributed.many import predict_many
    from geoseg.errors import WriteError
    from geoseg.io.storage import check_output

    scheduler, retries = params.pop("scheduler"), params.pop("retries")
    if scheduler:
        quiet_dask(ctx)
    options = pop_predict_options(params)
    vopts = vector_options_of(params)
    if quicklook is not None:
        raise click.UsageError(
            "--quicklook writes one PNG for one input; run it without --scheduler or several inputs"
        )
    inputs: list[Any] = list(sources)
    outdir: str | None = dst
    if not _is_folder(dst):  # one input, one named output (on s3:// or through a cluster)
        src = expand_inputs(sources)
        if len(src) != 1:
            raise WriteError(
                f"{dst}: expected an output folder for {len(src)} inputs; name a folder (ending "
                "in /)"
            )
        inputs, outdir = [OutputSet(src[0], dst, probabilities, confidence, vector)], None
        for path in inputs[0].paths:
            check_output(path, overwrite=overwrite)
        if stac:
            from geoseg.io.stac_items import item_path

            check_output(item_path(dst), overwrite=overwrite)
        overwrite = True
    with progress_bar(ctx, "raster") as step:
        result = predict_many(
            inputs,
            outdir,
            model,
            options,
            scheduler=scheduler,
            probabilities=probabilities is not None,
            confidence=confidence is not None,
            vector=vector,
            vector_options=vopts,
            overwrite=overwrite,
            retries=retries,
            progress=step,
        )
    where = f" on {result.workers} Dask worker(s)" if scheduler else ""
    say(
        ctx,
        f"{dst}: {result.predicted} raster(s) predicted, {result.skipped} already done, in "
        f"{result.seconds:.1f} s ({result.megapixels_per_second:.2f} Mpx/s){where}",
    )
    if result.catalog is not None:
        say(ctx, f"{result.catalog}: STAC catalog of {len(result.done)} item(s)")
    elif stac and outdir is None:
        from geoseg.io.stac_items import write_item

        done = inputs[0]
        assets = {"classes": done.mask, "probabilities": done.probabilities}
        assets |= {"confidence": done.confidence, "polygons": done.vector}
        item = write_item({k: v for k, v in assets.items() if v is not None})
        say(ctx, f"{item}: STAC item")
