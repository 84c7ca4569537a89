"""``geoseg diagnose``: error maps, uncertainty, per-cell metrics, calibration and worst cells."""

from __future__ import annotations

import click

from geoseg.cli.console import progress_bar, say
from geoseg.cli.options import (
    folder_option,
    int_option,
    labelled_data_options,
    overwrite_option,
    pop_labelled_data,
    pop_predict_options,
    predict_options,
)


@click.command(
    short_help="Where a model fails: error maps, uncertainty, per-cell metrics, calibration."
)
@labelled_data_options
@folder_option("-o", "--output", required=True, help="Folder for every output and index.md.")
@int_option("--cell", 256, minimum=8, help="Per-cell metric grid size in pixels.")
@int_option("--worst", 8, minimum=0, help="Panels for this many worst cells.")
@int_option("--bins", 15, minimum=2, help="Confidence bins for the ECE.")
@click.option(
    "--fit-temperature",
    is_flag=True,
    help="Fit a temperature and write OUTPUT/model-calibrated.safetensors.",
)
@predict_options
@overwrite_option
@click.pass_context
def diagnose(
    ctx: click.Context,
    output: str,
    cell: int,
    worst: int,
    bins: int,
    fit_temperature: bool,
    overwrite: bool,
    **params: object,
) -> None:
    """Run CKPT (default: the bundled model) over images with labels and write, into OUTPUT:
    per image an error-map COG (true -> predicted, legend in QGIS), entropy and margin COGs and the
    prediction; per-cell metrics (cells.gpkg, cells.csv); a reliability diagram and ECE; panels of
    the worst cells; metrics.json, confusion.png and index.md linking everything.
    """
    from geoseg.evaluation.diagnose import diagnose as run

    options = pop_predict_options(params)
    model, pairs = pop_labelled_data(params, "diagnose")
    with progress_bar(ctx, "image", total=len(pairs)) as step:
        result = run(
            model,
            pairs,
            output,
            options,
            cell=cell,
            worst=worst,
            bins=bins,
            temperature=fit_temperature,
            overwrite=overwrite,
            progress=step,
        )
    click.echo(result.report.table())
    click.echo(
        f"ECE {result.ece:.4f}"
        + (
            f"; temperature {result.temperature:.3f} -> ECE {result.ece_tempered:.4f}"
            if result.temperature is not None
            else ""
        )
    )
    say(
        ctx,
        f"wrote {result.index} ({len(result.cells)} cells, {len(result.worst)} worst-cell panels)",
    )
