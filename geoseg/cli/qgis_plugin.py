"""``geoseg qgis-plugin``: install the QGIS Processing provider, or build its zip."""

from __future__ import annotations

import json

import click

from geoseg.cli.console import say
from geoseg.cli.options import overwrite_option


@click.group("qgis-plugin", short_help="Install the QGIS Processing provider or build its zip.")
def qgis_plugin() -> None:
    """The geoseg provider for QGIS's Processing toolbox (algorithms predict, vectorize, explain,
    diagnose): QGIS runs this geoseg in a subprocess, so QGIS's own Python needs no torch."""


@qgis_plugin.command(short_help="Copy the plugin into a QGIS profile.")
@click.option(
    "--plugins-dir",
    type=click.Path(file_okay=False),
    help="QGIS's Python plugin folder [default: the default profile's].",
)
@overwrite_option
@click.pass_context
def install(ctx: click.Context, plugins_dir: str | None, overwrite: bool) -> None:
    """Install the plugin for QGIS, recording this Python environment as the geoseg to run.

    Then enable it in QGIS (Plugins > Manage and Install Plugins > Installed > geoseg), or for
    qgis_process: qgis_process plugins enable geoseg_processing.
    """
    from geoseg.qgis import install_plugin

    target = install_plugin(plugins_dir, overwrite=overwrite)
    say(ctx, f"{target}: installed; enable 'geoseg' in QGIS (Plugins > Manage and Install Plugins)")


@qgis_plugin.command("zip", short_help="Build the plugin zip (Install from ZIP in QGIS).")
@click.argument("dst", type=click.Path(dir_okay=False), metavar="OUT.zip")
@overwrite_option
@click.pass_context
def build(ctx: click.Context, dst: str, overwrite: bool) -> None:
    """Write the plugin as OUT.zip, recording this Python environment as the geoseg to run."""
    from geoseg.qgis import build_zip

    say(ctx, f"{build_zip(dst, overwrite=overwrite)}: QGIS plugin zip")


@qgis_plugin.command(short_help="Print geoseg's choice lists as JSON (read by the plugin).")
def choices() -> None:
    """Print the bundled models, TTA modes, precisions and explain methods as JSON."""
    from geoseg.qgis import choices as lists

    click.echo(json.dumps(lists()))
