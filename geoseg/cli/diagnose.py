"""``geoseg diagnose``: error maps, uncertainty, per-cell metrics, calibration and worst cells."""

from __future__ import annotations

import click

from geoseg.cli.options import is_quiet, overwrite_option, pop_predict_options, predict_options


@click.command(short_help="Where a model fails: error maps, uncertainty, per-cell metrics, calibration.")
@click.argument("checkpoint", required=False, metavar="[CKPT]")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("-c", "--config", "config", help="Training config naming the dataset and its split (or a bundled name).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "val"]), help="Which held-out split.")
@click.option("--images", type=click.Path(file_okay=False), help="Folder of images (instead of --config).")
@click.option("--labels", type=click.Path(file_okay=False), help="Folder of label rasters named like the images.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder for every output and index.md.")
@click.option("--cell", type=click.IntRange(min=8), default=256, show_default=True, help="Per-cell metric grid size in pixels.")
@click.option("--worst", type=click.IntRange(min=0), default=8, show_default=True, help="Panels for this many worst cells.")
@click.option("--bins", type=click.IntRange(min=2), default=15, show_default=True, help="Confidence bins for the ECE.")
@click.option("--fit-temperature", is_flag=True, help="Fit a temperature and write OUTPUT/model-calibrated.safetensors.")
@predict_options
@overwrite_option
@click.pass_context
def diagnose(ctx: click.Context, checkpoint: str | None, overrides: tuple[str, ...], config: str | None, split: str,
             images: str | None, labels: str | None, output: str, cell: int, worst: int, bins: int, fit_temperature: bool,
             overwrite: bool, **params: object) -> None:
    """Run CKPT (default: the bundled model) over images with labels and write, into OUTPUT:
    per image an error-map COG (true -> predicted, legend in QGIS), entropy and margin COGs and the
    prediction; per-cell metrics (cells.gpkg, cells.csv); a reliability diagram and ECE; panels of
    the worst cells; metrics.json, confusion.png and index.md linking everything.
    """
    from geoseg.errors import ConfigError
    from geoseg.evaluation.diagnose import diagnose as run
    from geoseg.evaluation.evaluate import pairs_from_config, pairs_from_dirs
    from geoseg.models.default import default_model

    options = pop_predict_options(params)
    if checkpoint is not None and "=" in checkpoint:
        overrides, checkpoint = (checkpoint, *overrides), None
    if (images is None) != (labels is None):
        raise click.UsageError("--images and --labels go together")
    if images is not None:
        pairs = pairs_from_dirs(images, labels)  # type: ignore[arg-type]
    elif config is not None:
        from geoseg.training.config import load_config, resolve_config

        pairs = pairs_from_config(load_config(resolve_config(config), list(overrides)), split)
    else:
        raise ConfigError("nothing to diagnose: give --config CONFIG (with data.root=...) or --images DIR --labels DIR")
    from tqdm import tqdm

    bar = tqdm(total=len(pairs), unit="image", disable=is_quiet(ctx), leave=False)
    result = run(checkpoint or str(default_model()), pairs, output, options, cell=cell, worst=worst, bins=bins,
                 temperature=fit_temperature, overwrite=overwrite, progress=lambda done, total: bar.update(done - bar.n))
    bar.close()
    click.echo(result.report.table())
    click.echo(f"ECE {result.ece:.4f}" + (f"; temperature {result.temperature:.3f} -> ECE {result.ece_tempered:.4f}"
                                          if result.temperature is not None else ""))
    if not is_quiet(ctx):
        click.echo(f"wrote {result.index} ({len(result.cells)} cells, {len(result.worst)} worst-cell panels)")
