"""The Gradio page and its HTTP API (``/segment``), built over :mod:`geoseg.app.handlers`.

Gradio is imported here only, when the app is built; install it with ``pip install 'geoseg[app]'``.
The app stops cleanly: :func:`close_app` (and the end of a blocking :func:`launch_app`, on Ctrl-C
or SIGTERM) stops the running predictions, waits for them, and removes every request folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import warnings
from types import SimpleNamespace
from typing import Any

from geoseg.app.catalog import ModelCatalog
from geoseg.app.config import AppConfig, ExposedWithoutAuthWarning
from geoseg.app.deps import import_gradio
from geoseg.app.handlers import Handlers
from geoseg.app.views import confidence_scale_html
from geoseg.app.workspace import Workspace, sweep_orphans
from geoseg.inference.options import PRECISIONS, TTA_MODES

__all__ = [
    "API_NAME",
    "TABLE_HEADERS",
    "build_app",
    "close_app",
    "import_gradio",
    "launch_app",
    "warn_if_exposed",
]

log = logging.getLogger(__name__)

API_NAME = "segment"
TABLE_HEADERS = ["class", "pixels", "area m²", "area ha", "share %"]
# the choice lists of the library itself, so the page cannot drift from the CLI and the docs
TTA_CHOICES = list(TTA_MODES)
PRECISION_CHOICES = list(PRECISIONS)


def build_app(
    config: AppConfig | None = None,
    *,
    catalog: ModelCatalog | None = None,
    workspace: Workspace | None = None,
    own_process: bool = False,
) -> Any:
    """The Gradio ``Blocks`` of the app, queued with ``config.concurrency`` predictions at a time.

    Args:
        config: settings (defaults: bundled model, 127.0.0.1, 200 MB uploads).
        catalog: models to offer (default: from ``config``).
        workspace: where request folders live (default: a new private temp folder, swept, after
            removing the folders of app processes that ended).
        own_process: the app is this process's only one: Gradio's cache (uploads, copies of
            results) moves into the workspace, so it is removed with it, unless
            ``GRADIO_TEMP_DIR`` names a place.

    Returns:
        A ``gradio.Blocks``; its ``workspace``, ``catalog`` and ``handlers`` attributes are the
        ones in use. Stop it with :func:`close_app`.
    """
    gr = import_gradio()
    config = config or AppConfig()
    catalog = catalog or ModelCatalog(config.models_dir, include_bundled=config.include_bundled)
    if workspace is None:
        sweep_orphans(config.workdir)
        workspace = Workspace(config.keep_minutes * 60, config.workdir)
        workspace.start_sweeper()
    handlers = Handlers(config, catalog, workspace)
    names = catalog.names()
    first = catalog.default_name()
    info, tile0, overlap0 = (
        handlers.describe(first) if first else ("**No model found.**", None, None)
    )
    keep = int(config.keep_minutes * 60)
    cache = None
    if own_process and not os.environ.get("GRADIO_TEMP_DIR"):
        # Gradio's copies of uploads and results go under the workspace root, and with it.
        # Gradio reads this variable whenever it checks a path, so it stays set until close_app:
        # one app per process
        cache = workspace.root / "gradio"
        os.environ["GRADIO_TEMP_DIR"] = str(cache)

    with gr.Blocks(
        title="geoseg", analytics_enabled=False, delete_cache=(max(60, keep // 10), keep)
    ) as demo:
        gr.Markdown(
            "# geoseg: segment an image into a land-cover map\n"
            "Upload a GeoTIFF/COG, JPG or PNG (or paste the URL of a COG), pick a model and press "
            "**Segment**."
        )
        with gr.Row():
            with gr.Column(scale=1):
                page = _form(gr, config, names, first, info, tile0, overlap0)
            with gr.Column(scale=2):
                page.update(_results(gr))
        _wire(gr, demo, SimpleNamespace(**page), handlers, catalog, config)
    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    demo.workspace = workspace
    demo.catalog = catalog
    demo.handlers = handlers
    demo.gradio_cache = cache
    return demo


def _form(
    gr: Any,
    config: AppConfig,
    names: list[str],
    first: str | None,
    info: str,
    tile0: Any,
    overlap0: Any,
) -> dict[str, Any]:
    """The left column: the image or URL, the model, the prediction settings, the buttons and
    the one status line; its components by name."""
    c: dict[str, Any] = {}
    c["upload"] = gr.File(
        label=f"Image (GeoTIFF/COG, JPG, PNG; up to {config.max_size_mb:g} MB, "
        f"{config.max_megapixels:g} megapixels)",
        type="filepath",
        elem_id="geoseg-upload",
    )
    c["url"] = gr.Textbox(
        label="…or the http(s):// URL of a COG", visible=config.allow_urls, elem_id="geoseg-url"
    )
    # custom values reach the handler, which refuses unknown names in one line
    c["model"] = gr.Dropdown(
        names, value=first, label="Model", elem_id="geoseg-model", allow_custom_value=True
    )
    c["model_info"] = gr.Markdown(info, elem_id="geoseg-model-info")
    with gr.Accordion("Prediction settings", open=False):
        c["tile"] = gr.Number(
            tile0, label="Tile size (px; blank: the model's)", precision=0, elem_id="geoseg-tile"
        )
        c["overlap"] = gr.Number(
            overlap0, label="Overlap (px, or a fraction such as 0.25)", elem_id="geoseg-overlap"
        )
        c["tta"] = gr.Radio(TTA_CHOICES, value="none", label="Test-time augmentation")
        c["precision"] = gr.Dropdown(PRECISION_CHOICES, value="auto", label="Precision")
        c["bands"] = gr.Textbox(
            label="Bands in the model's order (e.g. 3,2,1; blank: all)", elem_id="geoseg-bands"
        )
        c["scale"] = gr.Textbox(
            "",
            label=(
                "Value range LOW,HIGH mapped onto the model's (e.g. 0,10000; auto: a 2-98 % "
                "stretch; blank: as is)"
            ),
            elem_id="geoseg-scale",
        )
    with gr.Row():
        c["run"] = gr.Button("Segment", variant="primary", elem_id="geoseg-run")
        c["cancel"] = gr.Button(
            "Cancel", variant="stop", interactive=False, elem_id="geoseg-cancel"
        )
    # the one place that shows a run's progress
    c["status"] = gr.Markdown(elem_id="geoseg-status", min_height=64)
    return c


def _results(gr: Any) -> dict[str, Any]:
    """The right column: the overlay with its legend, the confidence with its colour bar, the
    map, the table of areas and the downloads; its components by name."""
    c: dict[str, Any] = {}
    with gr.Tab("Overlay"):
        c["overlay"] = gr.Image(
            label="Classes over the image",
            type="filepath",
            elem_id="geoseg-overlay",
            interactive=False,
        )
        c["legend"] = gr.HTML(elem_id="geoseg-legend-box")
    with gr.Tab("Confidence"):
        c["confidence"] = gr.Image(
            label="Confidence of the winning class",
            type="filepath",
            interactive=False,
            elem_id="geoseg-confidence",
        )
        gr.HTML(confidence_scale_html(), elem_id="geoseg-confidence-scale-box")
    with gr.Tab("Map"):
        c["map_view"] = gr.HTML(elem_id="geoseg-map-box")
    c["table"] = gr.Dataframe(
        headers=TABLE_HEADERS, label="Area per class", interactive=False, elem_id="geoseg-table"
    )
    c["downloads"] = gr.File(
        label="Downloads: class-mask COG + QGIS style, polygons (GPKG, GeoJSON), quicklook, "
        "confidence COG",
        file_count="multiple",
        interactive=False,
        elem_id="geoseg-downloads",
    )
    return c


def _wire(
    gr: Any,
    demo: Any,
    page: SimpleNamespace,
    handlers: Handlers,
    catalog: ModelCatalog,
    config: AppConfig,
) -> None:
    """The page's events: the model's description, the folder listed again on load, a run (the
    API endpoint too), its cancel, and a closed tab."""
    # quick events do not wait behind predictions in the queue, and show no progress
    quick: dict[str, Any] = {
        "api_name": False,
        "concurrency_limit": None,
        "show_progress": "hidden",
    }
    page.model.change(
        handlers.describe, inputs=page.model, outputs=[page.model_info, page.tile, page.overlap],
        **quick,
    )  # fmt: skip

    def on_load(current: str | None) -> Any:
        """List the model folder again, so checkpoints added since the start show up."""
        fresh = catalog.refresh()
        return gr.Dropdown(
            choices=fresh, value=current if current in fresh else catalog.default_name()
        )

    demo.load(on_load, inputs=page.model, outputs=page.model, **quick)

    def on_run(
        upload: str | None,
        url: str | None,
        model_name: str,
        tile_size: Any,
        overlap_: Any,
        tta_: str,
        precision_: str,
        bands_: str | None,
        scale_: str | None,
        request: Any,
        progress: Any = gr.Progress(),  # noqa: B008
    ) -> tuple[Any, ...]:
        return handlers.run(
            upload,
            url,
            model_name,
            tile_size,
            overlap_,
            tta_,
            precision_,
            bands_,
            progress,
            session=getattr(request, "session_hash", None),
            scale=scale_,
        )

    def on_failure(request: Any) -> tuple[Any, Any]:
        # also called after a cancel, which left no error: then the status line stays
        message = handlers.last_error(getattr(request, "session_hash", None))
        return message or gr.skip(), gr.Button(interactive=False)

    def on_cancel(request: Any) -> tuple[str, Any]:
        text = handlers.cancel(getattr(request, "session_hash", None))
        return text, gr.Button(interactive=False)

    def on_unload(request: Any) -> None:
        handlers.session_closed(getattr(request, "session_hash", None))

    # Gradio passes the request to parameters annotated with its class (annotations are text here)
    for fn in (on_run, on_failure, on_cancel, on_unload):
        fn.__annotations__["request"] = gr.Request

    page.run.click(lambda: gr.Button(interactive=True), outputs=page.cancel, **quick)
    inputs = [page.upload, page.url, page.model, page.tile, page.overlap, page.tta]
    inputs += [page.precision, page.bands, page.scale]
    event = page.run.click(
        on_run,
        inputs=inputs,
        outputs=[
            page.overlay, page.legend, page.confidence, page.map_view, page.table,
            page.downloads, page.status,
        ],
        api_name=API_NAME,
        concurrency_limit=config.concurrency,
        concurrency_id="predict",
        show_progress_on=page.status,
    )  # fmt: skip
    event.then(lambda: gr.Button(interactive=False), outputs=page.cancel, **quick)
    # .then runs on success only
    event.failure(on_failure, outputs=[page.status, page.cancel], **quick)
    # the click stops the run (between two tiles) or takes it out of the queue
    page.cancel.click(on_cancel, outputs=[page.status, page.cancel], cancels=[event], **quick)
    demo.unload(on_unload)


def close_app(demo: Any, *, wait: float = 30.0) -> None:
    """Stop an app built by :func:`build_app`: refuse new runs, stop the running ones and wait for
    them (up to ``wait`` s), close the server, remove every request folder."""
    handlers: Handlers = demo.handlers
    if not handlers.close(wait=wait):
        log.warning("a run did not stop within %g s; its folder is removed anyway", wait)
    demo.workspace.close()  # first: closing the server can wait seconds for its clients
    demo.close(verbose=False)
    shutil.rmtree(demo.workspace.root, ignore_errors=True)  # an upload that came in meanwhile
    if demo.gradio_cache is not None and os.environ.get("GRADIO_TEMP_DIR") == str(
        demo.gradio_cache
    ):
        del os.environ["GRADIO_TEMP_DIR"]
    warmer = getattr(demo, "warmer", None)
    if warmer is not None:
        warmer.join(60)  # a model still loading holds native threads


def warn_if_exposed(config: AppConfig) -> None:
    """Warn (:class:`~geoseg.app.config.ExposedWithoutAuthWarning`) when ``config`` listens beyond
    this machine and nobody has to log in."""
    message = config.exposure_warning()
    if message:
        warnings.warn(message, ExposedWithoutAuthWarning, stacklevel=3)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def launch_app(
    config: AppConfig | None = None, *, block: bool = True, warm: bool = True, quiet: bool = False
) -> Any:
    """Build and serve the app; returns the ``Blocks`` (``block=False`` returns once it listens;
    stop it with :func:`close_app`).

    Warns with :class:`~geoseg.app.config.ExposedWithoutAuthWarning` when it listens beyond this
    machine without a login. ``warm`` loads the first model in the background before any request.
    Blocking, it serves until Ctrl-C or SIGTERM, then stops the running predictions, waits for
    them and removes every request folder before returning.
    """
    gr = import_gradio()
    config = config or AppConfig()
    warn_if_exposed(config)
    demo = build_app(config, own_process=block)
    if warm and demo.catalog.default_name():
        demo.warmer = threading.Thread(
            target=demo.catalog.load,
            args=(demo.catalog.default_name(),),
            daemon=True,
            name="geoseg-app-warm",
        )
        demo.warmer.start()
    theme = gr.themes.Default(
        font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )  # no web fonts
    main = threading.current_thread() is threading.main_thread()
    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) if main else None
    if block and handlers is not None and handlers[1] == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops it as Ctrl-C does
    try:
        demo.launch(
            server_name=config.host,
            server_port=config.port or None,
            auth=list(config.auth) or None,
            max_file_size=config.max_bytes,
            prevent_thread_lock=True,
            quiet=quiet,
            show_error=False,
            allowed_paths=[str(demo.workspace.root)],
            ssr_mode=False,
            theme=theme,
            footer_links=["api"],
        )
    except BaseException:
        _shut_down(demo, handlers)
        raise
    if not block:
        return demo
    try:
        stop = threading.Event()
        while demo.is_running:  # until Ctrl-C or SIGTERM (a KeyboardInterrupt), or a close_app
            stop.wait(0.5)
    except KeyboardInterrupt:
        log.info("stopping: Ctrl-C or SIGTERM")
    finally:
        _shut_down(demo, handlers)
    return demo


def _shut_down(demo: Any, handlers: tuple[Any, Any] | None) -> None:
    """:func:`close_app`, with Ctrl-C and SIGTERM ignored meanwhile (a second signal must not
    leave folders behind), then the signal ``handlers`` (SIGINT, SIGTERM) found at the start put
    back."""
    if handlers is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        log.info("stopping: waiting for the running predictions to stop")
        close_app(demo)
    finally:
        if handlers is not None:
            signal.signal(signal.SIGINT, handlers[0])
            signal.signal(signal.SIGTERM, handlers[1])
