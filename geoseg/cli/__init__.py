"""The ``geoseg`` command line: a click group, one module per command.

Command modules import only click at import time, so ``geoseg --help`` stays fast and torch-free;
each command imports the library it needs when it runs.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from typing import Any

import click

from geoseg._version import __version__
from geoseg.errors import GeosegError, GeosegWarning

__all__ = ["cli", "main"]

_COMMANDS = {
    "app": ("geoseg.cli.app", "app"),
    "dataset": ("geoseg.cli.dataset", "dataset"),
    "diagnose": ("geoseg.cli.diagnose", "diagnose"),
    "evaluate": ("geoseg.cli.evaluate", "evaluate"),
    "explain": ("geoseg.cli.explain", "explain"),
    "export": ("geoseg.cli.export", "export"),
    "info": ("geoseg.cli.info", "info"),
    "models": ("geoseg.cli.models", "models"),
    "predict": ("geoseg.cli.predict", "predict"),
    "qgis-plugin": ("geoseg.cli.qgis_plugin", "qgis_plugin"),
    "quantize": ("geoseg.cli.quantize", "quantize"),
    "train": ("geoseg.cli.train", "train"),
    "vectorize": ("geoseg.cli.vectorize", "vectorize"),
}


class GeosegGroup(click.Group):
    """Loads command modules on demand and turns geoseg errors into one-line messages."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        import importlib

        module, attr = _COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context) -> Any:
        from geoseg.cli.native import captured_native_stderr

        verbose = (ctx.params.get("verbose") or 0) > 0
        words = [*getattr(ctx, "_protected_args", []), *ctx.args]
        # the app runs for hours and its native output matters as it happens
        capture = not verbose and (words[:1] != ["app"])
        native = None
        try:
            with captured_native_stderr(capture) as native:
                result = super().invoke(ctx)
            if native.lines and not ctx.params.get("quiet"):
                sys.stderr.write(native.text if native.text.endswith("\n") else native.text + "\n")
            return result
        except click.UsageError as exc:
            if verbose:
                raise
            # one line, like every other refusal (click's own display takes four)
            where = exc.ctx.command_path if exc.ctx is not None else "geoseg"
            click.secho(f"Error: {exc.format_message()} (see {where} --help)", err=True, fg="red")
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except GeosegError as exc:
            # what GDAL or libtiff printed on the way is dropped: the message says what happened
            if verbose:
                traceback.print_exc()
            click.secho(f"Error: {exc}", err=True, fg="red")
            sys.exit(1)
        except BrokenPipeError:
            # the reader of stdout went away (geoseg models | head): stop quietly, like cat does
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except KeyboardInterrupt as exc:
            click.secho(
                f"Interrupted: {str(exc) or _UNFINISHED}",
                err=True,
                fg="yellow",
            )
            sys.exit(130)
        except Exception as exc:
            if verbose:
                raise
            message = _write_failure(exc)
            if message is not None:
                click.secho(f"Error: {message}", err=True, fg="red")
                sys.exit(1)
            if native is not None and native.lines:  # the only clue may be what GDAL printed
                sys.stderr.write("\n".join(native.lines[-20:]) + "\n")
            click.secho(
                f"Error: unexpected {type(exc).__name__}: {exc}. Run again with -v for the full "
                "traceback and report it if the input looks valid.",
                err=True,
                fg="red",
            )
            sys.exit(2)


def _write_failure(exc: BaseException) -> str | None:
    """One line for a write that failed where geoseg's own writers could not see it (a library's
    file, a folder made for a run): a full disk, a read-only folder, a missing permission."""
    import errno

    if not isinstance(exc, OSError) or exc.errno == errno.ENOENT:  # a missing input is no write
        return None
    from geoseg.io.atomic import describe_os_error

    where = exc.filename2 or exc.filename
    return describe_os_error(where, exc) if where else None


def _show_warning(
    message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    if issubclass(category, GeosegWarning):
        click.secho(f"Warning: {message}", err=True, fg="yellow")
    else:
        logging.getLogger("py.warnings").debug(
            "%s:%s: %s: %s", filename, lineno, category.__name__, message
        )


@click.group(cls=GeosegGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geoseg")
@click.option(
    "-v", "--verbose", count=True, help="More log output (-vv for debug); show tracebacks."
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Segment satellite and aerial imagery into GIS-ready rasters and polygons."""
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("geoseg").setLevel(level)
    warnings.showwarning = _show_warning
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
    ctx.obj["verbose"] = verbose


_UNFINISHED = (
    "no output was left half-written: the outputs of one run appear together or not at all (with "
    "several inputs, those finished before the interrupt are complete); run the command again to "
    "finish"
)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"terminated; {_UNFINISHED}")


def main() -> None:
    """Console-script entry point."""
    import signal

    signal.signal(
        signal.SIGTERM, _terminate
    )  # `kill` cleans up like Ctrl-C: temporary files are removed
    cli(prog_name="geoseg")
