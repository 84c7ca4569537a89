"""``geoseg evaluate``: score a checkpoint on held-out images."""

from __future__ import annotations

import click

from geoseg.cli.console import progress_bar, say
from geoseg.cli.options import (
    folder_option,
    labelled_data_options,
    pop_labelled_data,
    pop_predict_options,
    predict_options,
)


@click.command(short_help="Score a model on held-out images (IoU, F1, SpaceNet metric).")
@labelled_data_options
@folder_option(
    "-o",
    "--output",
    help="Write metrics.json, confusion.png and quicklooks/ (truth beside prediction) here.",
)
@click.option(
    "--quicklooks/--no-quicklooks",
    default=True,
    show_default=True,
    help="With -o, draw each image with its ground truth beside the prediction.",
)
@predict_options
@click.pass_context
def evaluate(ctx: click.Context, output: str | None, quicklooks: bool, **params: object) -> None:
    """Run CKPT (default: the bundled model) over held-out images and report per-class IoU, F1,
    precision, recall, mIoU, pixel accuracy, a confusion matrix and, for building models, the
    SpaceNet metric.
    """
    from geoseg.evaluation.evaluate import evaluate as run

    options = pop_predict_options(params)
    model, pairs = pop_labelled_data(params, "evaluate on")
    with progress_bar(ctx, "image", total=len(pairs)) as step:
        result = run(model, pairs, options, out_dir=output, quicklooks=quicklooks, progress=step)
    click.echo(result.table())
    if output:
        extra = (
            f" and {len(pairs)} image(s) with truth beside prediction in {output}/quicklooks/"
            if quicklooks
            else ""
        )
        say(ctx, f"wrote {output}/metrics.json, {output}/confusion.png{extra}")
