"""``geoseg app``: serve the web app (Gradio) on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from geoseg.cli.options import device_option, float_option, folder_option, int_option, text_option


def _parse_auth(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    pairs = []
    for text in value:
        user, sep, password = text.partition(":")
        if not sep or not user or not password:
            raise click.BadParameter(
                "expected USER:PASSWORD, e.g. --auth alice:s3cret (or set GEOSEG_APP_AUTH)"
            )
        pairs.append((user, password))
    return tuple(pairs)


@click.command(short_help="Serve the web app: upload an image, get a map back.")
@folder_option(
    "--models",
    "models_dir",
    path_type=Path,
    help="Folder of .safetensors checkpoints to offer besides the bundled model.",
)
@text_option(
    "--host", "127.0.0.1", help="Address to listen on; 0.0.0.0 exposes the app to the network."
)
@int_option("--port", 7860, minimum=0, maximum=65535, help="TCP port (0: any free port).")
@float_option("--max-size-mb", 200.0, minimum=0, min_open=True, help="Largest upload accepted.")
@float_option(
    "--max-megapixels",
    100.0,
    minimum=0,
    min_open=True,
    help="Largest image accepted (width x height, millions of pixels), upload or URL; bigger ones "
    "are refused before any tile runs.",
)
@click.option(
    "--auth",
    multiple=True,
    callback=_parse_auth,
    metavar="USER:PASSWORD",
    envvar="GEOSEG_APP_AUTH",
    help="Require this login (repeatable); GEOSEG_APP_AUTH keeps it off the command line.",
)
@int_option("--concurrency", 1, minimum=1, help="Predictions running at once; others queue.")
@int_option("--queue-size", 16, minimum=1, help="Requests that may wait in the queue.")
@float_option(
    "--keep-minutes",
    60.0,
    minimum=0,
    min_open=True,
    help="Remove each request's upload and results this long after it ran.",
)
@click.option("--no-urls", is_flag=True, help="Accept uploads only, not http(s):// URLs.")
@click.option(
    "--allow-private-urls",
    is_flag=True,
    help="Also read URLs on loopback, private and link-local addresses (an internal server); by "
    "default only public internet addresses are read.",
)
@click.option("--no-bundled", is_flag=True, help="Offer only the checkpoints in --models.")
@device_option
def app(
    models_dir: Path | None,
    host: str,
    port: int,
    max_size_mb: float,
    max_megapixels: float,
    auth: tuple[tuple[str, str], ...],
    concurrency: int,
    queue_size: int,
    keep_minutes: float,
    no_urls: bool,
    allow_private_urls: bool,
    no_bundled: bool,
    device: str,
) -> None:
    """Serve the geoseg web app (needs the `app` extra: pip install 'geoseg[app]').

    It listens on 127.0.0.1 by default; the page and its API (gradio_client, endpoint /segment)
    run the same prediction as `geoseg predict --vector --quicklook`. Ctrl-C or SIGTERM stops
    the running predictions and removes every request's files before it exits.
    """
    from geoseg.app.config import AppConfig

    try:
        from geoseg.app.ui import import_gradio, launch_app

        import_gradio()
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    config = AppConfig(
        models_dir=models_dir,
        include_bundled=not no_bundled,
        host=host,
        port=port,
        max_size_mb=max_size_mb,
        max_megapixels=max_megapixels,
        auth=auth,
        concurrency=concurrency,
        queue_size=queue_size,
        keep_minutes=keep_minutes,
        allow_urls=not no_urls,
        allow_private_urls=allow_private_urls,
        device=device,
    )
    launch_app(config)
