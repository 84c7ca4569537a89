"""The option factories and apply_options, through a throwaway command."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from geoseg.cli.options import apply_options, int_option, text_option


def _command() -> click.Command:
    def run(**params: object) -> None:
        click.echo(repr(sorted(params.items())))

    options = [
        int_option("--cell", 256, minimum=8, help="Grid size."),
        int_option("--workers", minimum=0, help="Threads."),
        text_option("--device", "auto", help="Where."),
    ]
    return click.command()(apply_options(run, options))


def test_options_keep_their_order_and_show_defaults() -> None:
    command = _command()
    assert [p.name for p in command.params] == ["cell", "workers", "device"]
    help_text = CliRunner().invoke(command, ["--help"]).output
    assert "[default: 256; x>=8]" in help_text and "[default: auto]" in help_text
    assert "[x>=0]" in help_text and "default: None" not in help_text


def test_int_option_refuses_values_below_its_minimum() -> None:
    result = CliRunner().invoke(_command(), ["--cell", "4"])
    assert result.exit_code == 2 and "4 is not in the range x>=8" in result.output
    ok = CliRunner().invoke(_command(), ["--workers", "0"])
    assert ok.exit_code == 0 and "('cell', 256), ('device', 'auto'), ('workers', 0)" in ok.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "a.tif", "b.tif", "--tile-size", "0"], "Invalid value for '--tile-size'"),
        (["predict"], "Missing argument"),
        (["vectorize", "m.tif", "o.gpkg", "--bogus"], "No such option '--bogus'"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], message: str) -> None:
    from geoseg.cli import cli

    result = CliRunner().invoke(cli, args, prog_name="geoseg")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and message in lines[0]
    assert f"(see geoseg {args[0]} --help)" in lines[0]


def test_the_precision_choices_shown_are_the_library_s() -> None:
    from geoseg.app.ui import PRECISION_CHOICES
    from geoseg.cli.options import PRECISION_METAVAR
    from geoseg.inference.options import PRECISIONS

    assert PRECISION_METAVAR == "|".join(PRECISIONS) == "auto|fp32|bf16|fp16|int8"
    assert list(PRECISIONS) == PRECISION_CHOICES
