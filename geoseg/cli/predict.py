"""``geoseg predict``: segment a raster into a class-mask COG."""

from __future__ import annotations

import click

from geoseg.cli.options import bands_option, is_quiet, overwrite_option
from geoseg.cli.vectorize import vector_kwargs, vector_options


def _overlap(ctx: click.Context, param: click.Parameter, value: str | None) -> float | int | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"expected pixels (e.g. 128) or a fraction (e.g. 0.25), got {value!r}") from None
    return number if 0 < number < 1 else int(number)


@click.command(short_help="Segment a raster into a class-mask COG.")
@click.argument("src", metavar="SRC")
@click.argument("dst", type=click.Path(dir_okay=False), metavar="DST")
@click.option("--model", "model_path", type=click.Path(), help="Checkpoint (.safetensors file or folder) [default: the bundled Dubai land-cover model].")
@click.option("--tile-size", type=click.IntRange(min=1), help="Tile edge in pixels [default: the model's].")
@click.option("--overlap", callback=_overlap, help="Overlap in pixels or as a fraction of the tile [default: the model's].")
@click.option("--blend", default="gaussian", show_default=True,
              type=click.Choice(["gaussian", "cosine", "linear", "mean", "crop"]), help="Weight kernel for overlaps.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Tiles per forward pass [default: 2 on CPU, 8 on CUDA].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              help="auto: the fastest precision whose classes agree with fp32 on >= 99.5% of pixels.")
@click.option("--tta", default="none", show_default=True, type=click.Choice(["none", "flip", "d4"]), help="Test-time augmentation.")
@bands_option
@click.option("--probabilities", type=click.Path(dir_okay=False), help="Also write per-class probabilities (uint8 0-255) here.")
@click.option("--confidence", type=click.Path(dir_okay=False), help="Also write the winning class's probability (uint8) here.")
@click.option("--vector", type=click.Path(dir_okay=False), help="Also vectorize the mask into this .gpkg/.geojson/.fgb/.parquet.")
@click.option("--quicklook", type=click.Path(dir_okay=False), help="Also write a PNG: the image with the classes overlaid and a legend.")
@vector_options
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0), help="Threads reading tiles ahead.")
@overwrite_option
@click.pass_context
def predict(ctx: click.Context, src: str, dst: str, model_path: str | None, tile_size: int | None, overlap: float | int | None,
            blend: str, batch_size: int | None, device: str, precision: str, tta: str, bands: tuple[int, ...] | None,
            probabilities: str | None, confidence: str | None, vector: str | None, quicklook: str | None, workers: int, overwrite: bool,
            **vector_params: object) -> None:
    """Segment SRC (a GeoTIFF/COG path or http(s):// URL) into the class mask DST.

    DST is a Cloud-Optimized GeoTIFF on the same grid as SRC: uint8 class ids, 255 where SRC has
    no data, with the model's class names and colours (QGIS opens it styled).
    """
    import time

    from tqdm import tqdm

    from geoseg.inference import predict_raster

    bar = tqdm(unit="tile", disable=is_quiet(ctx), dynamic_ncols=True, leave=False)
    start = time.perf_counter()

    def step(done: int, total: int, megapixels: float) -> None:
        bar.total = total
        bar.update(done - bar.n)
        bar.set_postfix_str(f"{done / total * megapixels / max(time.perf_counter() - start, 1e-9):.2f} Mpx/s")

    if model_path is None:
        from geoseg.models.default import default_model

        model_path = str(default_model())
    if quicklook is not None:
        from geoseg.io.writer import check_destination

        check_destination(quicklook, overwrite=overwrite)
    if vector is not None:
        from geoseg.io.writer import check_destination
        from geoseg.vectorize.sinks import format_of

        check_destination(vector, overwrite=overwrite)  # fail before the model runs, not after
        format_of(vector)
    try:
        result = predict_raster(src, dst, model_path, tile_size=tile_size, overlap=overlap, blend=blend,
                                batch_size=batch_size, device=device, precision=precision, tta=tta, bands=bands,  # type: ignore[arg-type]
                                probabilities=probabilities, confidence=confidence, overwrite=overwrite,
                                workers=workers, progress=step)
    finally:
        bar.close()
    if not is_quiet(ctx):
        agree = result.extra.get("agreement")
        click.echo(
            f"{result.mask}: {result.width} x {result.height} px in {result.seconds:.1f} s ({result.megapixels_per_second:.2f} Mpx/s), "
            f"{result.tiles_run} tiles run, {result.tiles_skipped} without data skipped, {result.precision} on {result.device}"
            + (f" (argmax agreement with fp32 {agree:.2%})" if agree is not None else "")
        )
    if quicklook is not None:
        from geoseg.io.quicklook import write_quicklook

        write_quicklook(src, result.mask, quicklook)  # type: ignore[arg-type]
        if not is_quiet(ctx):
            click.echo(f"{quicklook}: quicklook")
    if vector is not None:
        from geoseg.vectorize import vectorize_raster

        vres = vectorize_raster(result.mask, vector, confidence=confidence or probabilities, overwrite=overwrite,  # type: ignore[arg-type]
                                **vector_kwargs(vector_params))
        if not is_quiet(ctx):
            click.echo(f"{vres.path}: {vres.features} polygons ({vres.seconds:.1f} s)")
