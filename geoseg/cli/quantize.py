"""``geoseg quantize``: calibrate a checkpoint's int8 variant (fast CPU prediction), checked
against fp32."""

from __future__ import annotations

import click

from geoseg.cli.console import progress_bar, say
from geoseg.cli.options import (
    bands_option,
    folder_option,
    int_option,
    overwrite_option,
    path_option,
)


@click.command(short_help="Calibrate an int8 variant of a checkpoint for fast CPU prediction.")
@click.argument("checkpoint", metavar="CKPT")
@click.argument("dst", type=click.Path(dir_okay=False), metavar="OUT.safetensors")
@click.argument("more", nargs=-1, metavar="[IMAGES|KEY=VALUE]...")
@path_option(
    "--calibration",
    multiple=True,
    help="Images like the training data: a file, a folder or a quoted glob; repeat it, or list "
    "more images after OUT.",
)
@path_option(
    "--heldout",
    multiple=True,
    help="Images that never calibrate: the agreement with fp32 is measured on them (repeatable).",
)
@folder_option(
    "--labels",
    help="With --heldout: label rasters named like the held-out images; records the mIoU of "
    "fp32 and int8.",
)
@click.option(
    "-c",
    "--config",
    help="Training config (or a bundled name) with data.root=...: its training images calibrate, "
    "its test split (with labels) is held out.",
)
@int_option("--tiles", 64, minimum=1, help="Calibration tiles at most, spread over the images.")
@click.option(
    "--float",
    "float_layers",
    multiple=True,
    metavar="LAYER",
    help="Keep this layer in float and skip the search for such layers (repeatable).",
)
@int_option("--tile-size", minimum=1, help="Tile edge in pixels [default: the model's].")
@bands_option
@click.option(
    "--scale",
    metavar="LOW,HIGH|auto",
    help="Map input values LOW..HIGH onto the model's training range, as geoseg predict does.",
)
@overwrite_option
@click.pass_context
def quantize(
    ctx: click.Context,
    checkpoint: str,
    dst: str,
    more: tuple[str, ...],
    calibration: tuple[str, ...],
    heldout: tuple[str, ...],
    labels: str | None,
    config: str | None,
    tiles: int,
    float_layers: tuple[str, ...],
    tile_size: int | None,
    bands: tuple[int, ...] | None,
    scale: str | None,
    overwrite: bool,
) -> None:
    """Calibrate CKPT's int8 variant on images like its training data and write it to OUT.

    CKPT is a .safetensors checkpoint or a bundled model (quality, fast). OUT is CKPT with the
    variant in its config: the scales of its quantizers, the images that calibrated it, and how
    closely its classes agree with fp32 on held-out images (and their mIoU with --labels).
    geoseg predict --model OUT --precision int8 runs it; --precision auto picks it on a CPU when
    that agreement is at least 99 %.
    """
    from geoseg.datasets.kinds import EvalPair
    from geoseg.errors import ConfigError
    from geoseg.export.quantize import heldout_pairs, quantize_checkpoint, training_split
    from geoseg.inference.options import PredictOptions
    from geoseg.models.default import named_model

    overrides = [m for m in more if "=" in m]
    images = [*calibration, *(m for m in more if "=" not in m)]
    pairs: list[EvalPair] = []
    if config is not None:
        cal, pairs = training_split(config, overrides)
        images = images or cal
    elif overrides:
        raise click.UsageError(f"{overrides[0]}: KEY=VALUE settings go with --config")
    if labels is not None and not heldout:
        raise click.UsageError("--labels goes with --heldout")
    if heldout:
        pairs = list(heldout_pairs(heldout, labels))
    if not images:
        raise ConfigError(
            "nothing to calibrate on: give --calibration IMAGES (files, folders or quoted globs) "
            "or --config CONFIG data.root=..."
        )
    options = PredictOptions.parse({"tile_size": tile_size, "bands": bands, "scale": scale})
    with progress_bar(ctx, "step", postfix=lambda done, total, stage: stage) as step:
        result = quantize_checkpoint(
            str(named_model(checkpoint)),
            dst,
            images,
            heldout=pairs,
            options=options,
            max_tiles=tiles,
            float_layers=float_layers or None,
            overwrite=overwrite,
            progress=lambda stage, done, total: step(done, total, stage),
        )
    say(ctx, f"{result.path}: int8 variant; {result.variant.summary()}")
    value = result.variant.agreement_value
    if value is not None and value < 0.99:
        say(
            ctx,
            "--precision auto will not use it (99 % agreement needed); --precision int8 still can",
        )
