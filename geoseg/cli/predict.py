"""``geoseg predict``: segment a raster into a class-mask COG."""

from __future__ import annotations

from typing import Any

import click

from geoseg.cli.console import progress_bar, say
from geoseg.cli.options import (
    file_option,
    model_option,
    overwrite_option,
    pop_predict_options,
    predict_options,
)
from geoseg.cli.scale import is_many, run_many, scale_options
from geoseg.cli.vectorize import vector_options, vector_options_of


@click.command(short_help="Segment a raster into a class-mask COG.")
@click.argument("paths", nargs=-1, required=True, metavar="SRC... DST")
@model_option(
    "Checkpoint (.safetensors file or folder), a model exported to .onnx (run by onnxruntime), or "
    "a bundled model by name: quality (the default) or fast."
)
@predict_options
@file_option(
    "--probabilities",
    help="Also write per-class probabilities here (uint8, 255 = 1; nodata 0 where SRC has none).",
)
@file_option("--confidence", help="Also write the winning class's probability (uint8) here.")
@file_option("--vector", help="Also vectorize the mask into this .gpkg/.geojson/.fgb/.parquet.")
@file_option(
    "--quicklook", help="Also write a PNG: the image with the classes overlaid and a legend."
)
@click.option(
    "--stac",
    is_flag=True,
    help="Also write a STAC Item beside DST (DST.stac.json): footprint, projection, classes, "
    "provenance, a link to the source item. A run over several inputs always writes them, "
    "with catalog.json.",
)
@vector_options
@scale_options
@overwrite_option
@click.pass_context
def predict(
    ctx: click.Context,
    paths: tuple[str, ...],
    model_path: str | None,
    probabilities: str | None,
    confidence: str | None,
    vector: str | None,
    quicklook: str | None,
    stac: bool,
    overwrite: bool,
    **params: object,
) -> None:
    """Segment SRC (a GeoTIFF/COG path, http(s):// or s3:// URL, or a STAC item) into the class
    mask DST.

    DST is a Cloud-Optimized GeoTIFF on the same grid as SRC: uint8 class ids, 255 where SRC has
    no data, with the model's class names and colours (QGIS opens it styled). Its tags record how
    it was made (geoseg info shows them).

    A STAC item (ITEM.json, or an item URL) is read as the assets holding the model's bands
    (red, green, blue for the bundled models; --bands red,green,nir names others).

    With several SRC (paths, URLs, globs, folders, @list.txt, STAC item collections and catalogs)
    DST is an output folder (or s3://bucket/prefix/) that gets SRC_classes.tif per input and a
    STAC catalog; inputs whose outputs record the same request are skipped. --scheduler local:N
    or tcp://host:port runs on Dask (one raster: blocks across the workers).
    """
    if len(paths) < 2:
        raise click.UsageError(
            "expected SRC DST, or several inputs and an output folder: SRC... DIR"
        )
    *sources, dst = paths
    if is_many(sources, dst, params):
        run_many(
            ctx,
            sources,
            dst,
            model_path,
            probabilities,
            confidence,
            vector,
            quicklook,
            overwrite,
            params,
            stac,
        )
        return
    src = sources[0]
    import time

    from geoseg.inference import predict_raster
    from geoseg.io.atomic import check_paths, pending_path, publish_together

    options = pop_predict_options(params)
    vopts = vector_options_of(params)  # refused now, before the model runs

    check_paths(
        {"SRC": src, "--model": model_path},  # before anything runs, whatever --overwrite says
        {
            "DST": dst,
            "--probabilities": probabilities,
            "--confidence": confidence,
            "--vector": vector,
            "--quicklook": quicklook,
            "--stac": _item_path(dst) if stac else None,
        },
    )
    for extra in (quicklook, _item_path(dst) if stac else None):
        if extra is not None:
            from geoseg.io.writer import check_destination

            check_destination(extra, overwrite=overwrite)
    if vector is not None:
        from geoseg.io.writer import check_destination
        from geoseg.vectorize.sinks import format_of

        check_destination(vector, overwrite=overwrite)  # fail before the model runs, not after
        format_of(vector)
    start = time.perf_counter()

    def speed(done: int, total: int, megapixels: float) -> str:
        return f"{done / total * megapixels / max(time.perf_counter() - start, 1e-9):.2f} Mpx/s"

    # every output of the run (mask, probabilities, confidence, quicklook, polygons) appears
    # together at the end, or none does; later steps read the mask where it waits
    with publish_together():
        with progress_bar(ctx, "tile", postfix=speed) as step:
            result = predict_raster(
                src,
                dst,
                model_path,
                options,
                probabilities=probabilities,
                confidence=confidence,
                overwrite=overwrite,
                progress=step,
            )
        say(
            ctx,
            f"{result.mask}: {result.width} x {result.height} px in {result.seconds:.1f} s "
            f"({result.megapixels_per_second:.2f} Mpx/s), {result.tiles_run} tiles run, "
            f"{result.tiles_skipped} without data skipped, {result.precision_note} on "
            f"{result.device}",
        )
        mask = pending_path(dst)
        scores = confidence or probabilities
        if quicklook is not None:
            from geoseg.io.quicklook import write_quicklook

            write_quicklook(_image_of(src, model_path, options), mask, quicklook)
            say(ctx, f"{quicklook}: quicklook")
        if vector is not None:
            from geoseg.vectorize import vectorize_raster

            vres = vectorize_raster(
                mask,
                vector,
                vopts,
                confidence=pending_path(scores) if scores else None,
                overwrite=overwrite,
            )
            say(ctx, f"{vres.path}: {vres.features} polygons ({vres.seconds:.1f} s)")
        if stac:
            from geoseg.io.stac_items import write_item

            assets = {"classes": dst, "probabilities": probabilities, "confidence": confidence}
            assets["polygons"] = vector
            item = write_item(
                {k: v for k, v in assets.items() if v is not None}, provenance=result.provenance
            )
            say(ctx, f"{item}: STAC item")


def _item_path(dst: str) -> str:
    from geoseg.io.stac_items import item_path

    return item_path(dst)


def _image_of(src: str, model: str | None, options: Any) -> str:
    """The raster a quicklook draws: ``src``, or a STAC item's bands the model read."""
    from geoseg.io.stac import is_stac

    if not is_stac(src):
        return src
    from geoseg.inference.session import raster_input
    from geoseg.models.resolve import model_config

    return raster_input(src, options, model_config(model))[1]
