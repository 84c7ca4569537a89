"""``geoseg evaluate``: score a checkpoint on held-out images."""

from __future__ import annotations

import click

from geoseg.cli.options import is_quiet, pop_predict_options, predict_options


@click.command(short_help="Score a model on held-out images (IoU, F1, SpaceNet metric).")
@click.argument("checkpoint", required=False, metavar="[CKPT]")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("-c", "--config", "config", help="Training config naming the dataset and its split (or a bundled name).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "val"]), help="Which held-out split.")
@click.option("--images", type=click.Path(file_okay=False), help="Folder of images (instead of --config).")
@click.option("--labels", type=click.Path(file_okay=False), help="Folder of label rasters named like the images.")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Write metrics.json and confusion.png here.")
@predict_options
@click.pass_context
def evaluate(ctx: click.Context, checkpoint: str | None, overrides: tuple[str, ...], config: str | None, split: str,
             images: str | None, labels: str | None, output: str | None, **params: object) -> None:
    """Run CKPT (default: the bundled model) over held-out images and report per-class IoU, F1,
    precision, recall, mIoU, pixel accuracy, a confusion matrix and, for building models, the
    SpaceNet metric.
    """
    from geoseg.errors import ConfigError
    from geoseg.evaluation.evaluate import evaluate as run
    from geoseg.evaluation.evaluate import pairs_from_config, pairs_from_dirs
    from geoseg.models.default import default_model

    options = pop_predict_options(params)
    if checkpoint is not None and "=" in checkpoint:
        overrides, checkpoint = (checkpoint, *overrides), None
    if (images is None) != (labels is None):
        raise click.UsageError("--images and --labels go together")
    if images is not None and labels is not None:
        pairs = pairs_from_dirs(images, labels)
    elif config is not None:
        from geoseg.training.config import load_config, resolve_config

        pairs = pairs_from_config(load_config(resolve_config(config), list(overrides)), split)
    else:
        raise ConfigError("nothing to evaluate on: give --config CONFIG (with data.root=...) or --images DIR --labels DIR")
    model = checkpoint or str(default_model())
    from tqdm import tqdm

    bar = tqdm(total=len(pairs), unit="image", disable=is_quiet(ctx), leave=False)
    result = run(model, pairs, options, out_dir=output,
                 progress=lambda done, total: bar.update(done - bar.n))
    bar.close()
    click.echo(result.table())
    if output and not is_quiet(ctx):
        click.echo(f"wrote {output}/metrics.json and {output}/confusion.png")
