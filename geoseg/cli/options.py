"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

overwrite_option = click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")


def parse_bands(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """``"3,2,1"`` -> ``(3, 2, 1)``: 1-based band indexes in the order the model wants."""
    if value is None:
        return None
    try:
        bands = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated band numbers such as 3,2,1, got {value!r}") from None
    if not bands or any(b < 1 for b in bands):
        raise click.BadParameter(f"band numbers start at 1, got {value!r}; e.g. --bands 1,2,3")
    return bands


bands_option = click.option(
    "--bands", callback=parse_bands, metavar="B1,B2,..", help="1-based input bands, in the model's order (e.g. 3,2,1)."
)


def is_quiet(ctx: click.Context) -> bool:
    """Whether the group's -q was given."""
    root = ctx.find_root()
    return bool((root.obj or {}).get("quiet"))
