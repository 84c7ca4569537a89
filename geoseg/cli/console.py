"""What commands show on the terminal besides their results: a progress bar and summary lines,
both silenced by the group's -q."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from geoseg.cli.options import is_quiet


def say(ctx: click.Context, message: str) -> None:
    """Print ``message`` on stdout unless -q was given."""
    if not is_quiet(ctx):
        click.echo(message)


@contextmanager
def progress_bar(
    ctx: click.Context,
    unit: str,
    *,
    total: int | None = None,
    postfix: Callable[..., str] | None = None,
    delay: float = 0.5,
) -> Iterator[Callable[..., None]]:
    """A bar counting ``unit``s on stderr (none with -q), closed however the block ends.

    Yields the ``progress(done, total, *extra)`` callback to hand the library: it moves the bar to
    ``done`` of ``total`` and, given ``postfix``, shows ``postfix(done, total, *extra)`` beside it.
    The bar appears only once the block has run ``delay`` seconds, so a quick refusal or an early
    warning is not printed after an empty bar.
    """
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        unit=unit,
        disable=is_quiet(ctx),
        dynamic_ncols=True,
        leave=False,
        delay=delay,
    )

    def step(done: int, of: int, *extra: Any) -> None:
        bar.total = of
        bar.update(done - bar.n)
        if postfix is not None:
            bar.set_postfix_str(postfix(done, of, *extra))

    try:
        yield step
    finally:
        bar.close()


def quiet_dask(ctx: click.Context) -> None:
    """Dask's own INFO records (workers starting, connections) only with -v."""
    import logging

    try:
        import distributed  # noqa: F401  (its import sets its loggers' levels; set ours after)
    except ImportError:
        return
    verbose = (ctx.find_root().obj or {}).get("verbose", 0)
    logging.getLogger("distributed").setLevel(logging.INFO if verbose else logging.WARNING)
