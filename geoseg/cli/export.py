"""``geoseg export``: write a model as ONNX (dynamic and fixed-tile for QGIS Deepness) or
TorchScript."""

from __future__ import annotations

from pathlib import Path

import click

from geoseg.cli.console import say
from geoseg.cli.options import bands_option, int_option, overwrite_option, path_option


@click.command(
    short_help="Export a model to ONNX (onnxruntime, Netron, QGIS Deepness) or TorchScript."
)
@click.argument("model", metavar="MODEL")
@click.argument("dst", type=click.Path(dir_okay=False), metavar="OUT.onnx|OUT.pt")
@click.option(
    "--deepness/--no-deepness",
    default=True,
    show_default=True,
    help="With .onnx, also write OUT.deepness.onnx: a fixed square tile for QGIS Deepness.",
)
@int_option(
    "--tile-size",
    minimum=1,
    help="Fixed tile edge of the Deepness variant and of the check [default: the model's].",
)
@int_option("--opset", 17, minimum=17, help="ONNX opset (>= 17).")
@path_option(
    "--check-raster",
    help="Raster whose fullest tile drives the parity check [default: the sample scene, else "
    "synthetic].",
)
@click.option(
    "--resolution",
    "resolution_cm",
    type=float,
    help="Ground resolution in cm/px that QGIS Deepness processes at [default: the model's GSD; "
    "required when the model records none, as the bundled ones (e.g. 50 for 0.5 m imagery)].",
)
@click.option(
    "--int8",
    is_flag=True,
    help="Write int8 ONNX (QDQ), calibrated on --calibration images; refused below 99 % "
    "agreement with fp32.",
)
@path_option(
    "--calibration",
    multiple=True,
    help="With --int8: images like the training data (a file, a folder or a quoted glob; "
    "repeatable).",
)
@path_option(
    "--heldout",
    multiple=True,
    help="With --int8: images that never calibrate, on which the agreement is measured "
    "(repeatable) [default: calibration tiles that did not calibrate].",
)
@int_option("--tiles", minimum=1, help="With --int8: calibration tiles at most [default: 32].")
@bands_option
@click.option(
    "--scale",
    metavar="LOW,HIGH|auto",
    help="With --int8: map the images' values LOW..HIGH onto the model's training range, as "
    "geoseg predict does.",
)
@overwrite_option
@click.pass_context
def export(
    ctx: click.Context,
    model: str,
    dst: str,
    deepness: bool,
    tile_size: int | None,
    opset: int,
    check_raster: str | None,
    resolution_cm: float | None,
    int8: bool,
    calibration: tuple[str, ...],
    heldout: tuple[str, ...],
    tiles: int | None,
    bands: tuple[int, ...] | None,
    scale: str | None,
    overwrite: bool,
) -> None:
    """Export MODEL (a .safetensors checkpoint, "default" for the default bundled model, or a
    bundled model's name: quality, fast) to DST.

    A .onnx DST gets dynamic batch, height and width and the geoseg config; with --deepness
    OUT.deepness.onnx carries the metadata QGIS Deepness reads (model type, classes, resolution,
    tile, overlap, standardization, no threshold and no small-segment filter) and a geoseg config
    with Deepness's tiling, so that geoseg predict on it runs as the plugin. Each is checked with
    onnx.checker and against PyTorch in onnxruntime. Open it in Netron (pip install netron;
    netron OUT.onnx) to see the graph. A .pt DST is a frozen
    TorchScript archive.

    With --int8 each ONNX file is quantized (int8 weights, uint8 activations, QDQ) on tiles of
    the --calibration images, keeping in float the layers MODEL's int8 variant keeps (geoseg
    quantize); its classes are compared with fp32 on held-out tiles and the file is refused below
    99 % agreement.
    """
    from geoseg.errors import ExportError
    from geoseg.models.default import default_model, named_model

    model = str(default_model()) if model == "default" else str(named_model(model))
    if check_raster is None:
        from geoseg.export.onnx import sample_scene

        scene = sample_scene()
        check_raster = str(scene) if scene is not None else None
    suffix = Path(dst).suffix.lower()
    if (calibration or heldout or tiles is not None or bands or scale) and not int8:
        raise click.UsageError(
            "--calibration, --heldout, --tiles, --bands and --scale go with --int8"
        )
    if int8 and suffix != ".onnx":
        raise click.UsageError(f"{dst}: --int8 writes ONNX; expected OUT.onnx")
    if int8 and not calibration:
        raise click.UsageError(
            "--int8 needs --calibration IMAGES: images like the model's training data"
        )
    if suffix == ".pt":
        from geoseg.export.torchscript import export_torchscript

        parity = export_torchscript(
            model, dst, tile_size=tile_size, check_raster=check_raster, overwrite=overwrite
        )
        say(
            ctx,
            f"{dst}: TorchScript; argmax agreement {parity.agreement:.4%}, max |prob diff| "
            f"{parity.max_abs_diff:.2e} on {parity.source}",
        )
        return
    if suffix != ".onnx":
        raise ExportError(
            f"{dst}: unknown export format {suffix or '(none)'}; expected OUT.onnx or OUT.pt"
        )
    from geoseg.export.onnx import export_onnx
    from geoseg.export.onnx_int8 import Int8Export
    from geoseg.inference.options import PredictOptions

    fixed = Path(dst).with_suffix(".deepness.onnx") if deepness else None
    result = export_onnx(
        model,
        dst,
        fixed=fixed,
        tile_size=tile_size,
        opset=opset,
        check_raster=check_raster,
        resolution_cm=resolution_cm,
        int8=(
            Int8Export(
                calibration,
                heldout,
                tiles or 32,
                PredictOptions.parse({"bands": bands, "scale": scale}),
            )
            if int8
            else None
        ),
        overwrite=overwrite,
    )
    for path, parity in result.parity.items():
        if path in result.int8:
            say(
                ctx,
                f"{path}: int8 ONNX (QDQ, {result.int8[path]['float_nodes']} node(s) kept in "
                "float); classes equal to fp32 on "
                f"{parity.agreement:.2%} of {result.int8[path]['agreement']['pixels']:,} valid "
                f"pixels of {parity.source}",
            )
            continue
        kind = (
            f"fixed {result.tile_size} px tiles (QGIS Deepness)"
            if fixed is not None and path == str(fixed)
            else "dynamic batch/height/width"
        )
        say(
            ctx,
            f"{path}: ONNX opset {result.opset}, {kind}; argmax agreement "
            f"{parity.agreement:.4%}, max |prob diff| {parity.max_abs_diff:.2e} on "
            f"{parity.source}",
        )
    say(ctx, f"run it with: geoseg predict SCENE OUT.tif --model {dst}")
