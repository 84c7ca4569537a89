"""``geoseg explain``: Grad-CAM / Grad-CAM++ heat-maps or layer activations of a model over a
raster."""

from __future__ import annotations

from pathlib import Path

import click

from geoseg.cli.console import say
from geoseg.cli.options import (
    choice_option,
    file_option,
    int_option,
    model_option,
    overwrite_option,
    path_option,
    pop_predict_options,
    predict_options,
)


def parse_window(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    """``"COL,ROW,WIDTH,HEIGHT"`` in pixels -> a rasterio Window."""
    if value is None:
        return None
    try:
        col, row, width, height = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected COL,ROW,WIDTH,HEIGHT in pixels such as 0,0,1024,1024, got {value!r}"
        ) from None
    if width < 1 or height < 1 or col < 0 or row < 0:
        raise click.BadParameter(f"expected offsets >= 0 and sizes >= 1, got {value!r}")
    from rasterio.windows import Window

    return Window(col, row, width, height)


@click.command(short_help="Grad-CAM heat-maps or layer activations of a model over a raster.")
@click.argument("src", metavar="SCENE")
@click.argument("dst", type=click.Path(dir_okay=False), metavar="OUT.tif")
@click.option(
    "--class", "target", metavar="NAME|ID", help="Class whose score is explained (Grad-CAM)."
)
@choice_option("--method", ["gradcam", "gradcam++", "activations"], "gradcam")
@click.option(
    "--layer",
    metavar="NAME",
    help="Preset (geoseg models CKPT --layers) or module name [default: the middle decoder block].",
)
@click.option(
    "--window",
    callback=parse_window,
    metavar="COL,ROW,W,H",
    help="Only this pixel window of SCENE.",
)
@path_option("--aoi", help="Polygons: explain the class score inside them only.")
@file_option(
    "--overlay",
    help="Picture (PNG) [default: OUT.png]; heat-map over the image, or the activation grid.",
)
@int_option("--channels", 64, minimum=1, help="Activation maps to keep.")
@model_option("Checkpoint, or a bundled model: quality (the default) or fast.")
@predict_options
@overwrite_option
@click.pass_context
def explain(
    ctx: click.Context,
    src: str,
    dst: str,
    target: str | None,
    method: str,
    layer: str | None,
    window: object,
    aoi: str | None,
    overlay: str | None,
    channels: int,
    model_path: str | None,
    overwrite: bool,
    **params: object,
) -> None:
    """Write what the model looks at in SCENE as the float32 COG OUT.tif, on SCENE's grid.

    gradcam / gradcam++: one band, the chosen class's score (summed over each tile, or over the
    --aoi polygons) attributed to the pixels through --layer, blended across tiles as predict
    blends probabilities. activations: the layer's first --channels feature maps, one band each.
    """
    from geoseg.explain.stream import explain_raster

    if method != "activations" and target is None:
        raise click.UsageError(
            "--class is required for gradcam and gradcam++ (e.g. --class building)"
        )
    if window is not None and aoi is not None:
        raise click.UsageError("--window and --aoi exclude each other; pass one")
    options = pop_predict_options(params)
    picture = overlay or str(Path(dst).with_suffix(".png"))
    result = explain_raster(
        src,
        dst,
        model_path,
        options,
        target=target,
        method=method,
        layer=layer,
        window=window,
        aoi=aoi,
        overlay=picture,
        channels=channels,
        overwrite=overwrite,
    )
    w = result.window
    what = f"{result.method} of {result.class_name!r}" if result.class_name else "activations"
    say(
        ctx,
        f"{result.path}: {what} at {result.layer}, {int(w.width)} x {int(w.height)} px, "
        f"{result.tiles_run} tiles in {result.seconds:.1f} s",
    )
    if result.overlay is not None:
        say(ctx, f"{result.overlay}: picture")
