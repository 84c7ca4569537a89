"""``geoseg dataset check|stats``: inspect a dataset folder before training on it."""

from __future__ import annotations

import json

import click

from geoseg.cli.console import say
from geoseg.cli.options import choice_option, file_option, text_option


class KindChoice(click.ParamType):
    """A registered dataset kind, looked up when the command runs (so kinds registered later
    count)."""

    name = "kind"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        from geoseg.datasets.kinds import DATASET_KINDS, kind_names

        if value not in DATASET_KINDS:
            self.fail(
                f"{value!r} is not a dataset kind; expected one of {', '.join(kind_names())}",
                param,
                ctx,
            )
        return str(value)


_kind = click.option(
    "--kind",
    required=True,
    type=KindChoice(),
    help="Dataset layout: geotiff, spacenet6, dubai, or a kind registered with "
    "geoseg.datasets.register_dataset_kind.",
)
_images = text_option("--images", "images/*.tif", help="Image glob under PATH (geotiff).")
_product = text_option(
    "--product",
    "SAR-Intensity",
    help="SpaceNet 6 product(s), e.g. SAR-Intensity or SAR-Intensity+PS-RGB.",
)


@click.group(short_help="Check a dataset or compute its band statistics.")
def dataset() -> None:
    """Inspect datasets: `check` reports what is there, `stats` computes per-band statistics."""


@dataset.command(
    short_help="Report files, CRS/resolution mismatches, nodata and class frequencies."
)
@click.argument("path", type=click.Path())
@_kind
@_images
@text_option("--labels", "labels/*.tif", help="Label glob under PATH (geotiff).")
@_product
@choice_option(
    "--on-error",
    ["stop", "skip"],
    "stop",
    help="On an unreadable file: stop, or list it and carry on.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def check(
    ctx: click.Context,
    path: str,
    kind: str,
    images: str,
    labels: str,
    product: str,
    on_error: str,
    as_json: bool,
) -> None:
    """Read every file of the dataset at PATH once and report what training would meet."""
    from geoseg.datasets.kinds import check_dataset

    report = check_dataset(
        path,
        kind,
        images=images,
        labels=labels,
        product=product,
        on_error="skip" if on_error == "skip" else "stop",
    )
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else "\n".join(report.lines()))
    if report.unreadable or report.problems:
        ctx.exit(1 if report.unreadable else 0)


@dataset.command(short_help="Per-band mean, std and 2/98 percentiles (nodata excluded).")
@click.argument("path", type=click.Path())
@_kind
@_images
@_product
@click.option(
    "--sar-db/--no-sar-db",
    default=None,
    help="Convert to dB first [default: yes for SAR-Intensity].",
)
@file_option("-o", "--output", help="Write the statistics as JSON here.")
@click.pass_context
def stats(
    ctx: click.Context,
    path: str,
    kind: str,
    images: str,
    product: str,
    sar_db: bool | None,
    output: str | None,
) -> None:
    """Streaming per-band statistics over every valid pixel of the dataset at PATH."""
    from geoseg.datasets.kinds import dataset_stats

    result = dataset_stats(path, kind, images=images, product=product, sar_db=sar_db)
    text = json.dumps(result.to_dict(), indent=2)
    if output:
        from pathlib import Path

        Path(output).write_text(text + "\n", encoding="utf-8")
        say(ctx, f"wrote {output}")
    else:
        click.echo(text)
