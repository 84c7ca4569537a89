"""The Gradio page and its HTTP API (``/segment``), built over :mod:`geoseg.app.pipeline`.

Gradio is imported here only, when the app is built; install it with ``pip install 'geoseg[app]'``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoseg.app.catalog import ModelCatalog
from geoseg.app.config import AppConfig, ExposedWithoutAuthWarning
from geoseg.app.pipeline import OUTPUT_NAMES, segment
from geoseg.app.workspace import Workspace, check_raster_kind, check_url, display_name, stage_upload
from geoseg.errors import GeosegError, UploadError
from geoseg.inference.options import PRECISIONS

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.inference.options import PredictOptions

__all__ = [
    "API_NAME",
    "TABLE_HEADERS",
    "build_app",
    "import_gradio",
    "launch_app",
    "warn_if_exposed",
]

log = logging.getLogger(__name__)

API_NAME = "segment"
TABLE_HEADERS = ["class", "pixels", "area m²", "area ha", "share %"]
TTA_CHOICES = ["none", "flip", "d4"]
PRECISION_CHOICES = list(PRECISIONS)
INSTALL_HINT = "the web app needs gradio; install it with: pip install 'geoseg[app]'"


def import_gradio() -> Any:
    """``gradio``, or an :class:`ImportError` whose message says how to install it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    try:
        import gradio
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from None
    return gradio


def _whole(value: Any) -> int | None:
    """A tile size from a number box: ``None``/0 -> the checkpoint's, ``256.0`` -> 256."""
    if value in (None, "", 0):
        return None
    number = float(value)
    if not number.is_integer():
        raise UploadError(f"tile size must be whole pixels, got {value!r}; e.g. 512")
    return int(number)


def _overlap(value: Any) -> float | int | None:
    if value in (None, ""):
        return None
    return float(value)


class _Handlers:
    """The app's state (catalog, workspace, settings) and the functions events call."""

    def __init__(self, config: AppConfig, catalog: ModelCatalog, workspace: Workspace) -> None:
        self.config = config
        self.catalog = catalog
        self.workspace = workspace
        self._errors: dict[str, str] = {}  # session -> last refusal, shown in the status line too
        self._errors_lock = threading.Lock()

    def last_error(self, session: str | None) -> str:
        with self._errors_lock:
            message = self._errors.pop(session or "", None)
        return f"**Error:** {message}" if message else ""

    def _remember(self, session: str | None, message: str) -> None:
        with self._errors_lock:
            if len(self._errors) > 1000:  # sessions that never came back for theirs
                self._errors.clear()
            self._errors[session or ""] = message

    def describe(self, name: str) -> tuple[str, int | None, int | None]:
        try:
            entry = self.catalog.entry(name)
        except GeosegError as exc:
            return f"**{exc}**", None, None
        return entry.describe(), entry.config.tile_size, entry.config.overlap

    def run(
        self,
        upload: str | None,
        url: str | None,
        model_name: str,
        tile_size: Any,
        overlap: Any,
        tta: str,
        precision: str,
        bands: str | None,
        progress: Any,
        session: str | None = None,
    ) -> tuple[Any, ...]:
        gr = import_gradio()

        def report(fraction: float, text: str) -> None:
            progress(fraction, desc=text)

        made: list[Path] = []
        try:
            options = self._options(tile_size, overlap, tta, precision, bands)
            return self._run(upload, url, model_name, options, report, made)
        except GeosegError as exc:
            log.info("refused: %s", exc)
            message = str(exc)
        except Exception as exc:
            log.exception("unexpected error")
            message = (
                f"unexpected {type(exc).__name__}: {exc}. The server log has the details; "
                "report it if the input looks valid"
            )
        for f in made:  # a refused request keeps nothing
            shutil.rmtree(f, ignore_errors=True)
        self._remember(session, message)
        raise gr.Error(message, duration=None, print_exception=False)

    def _options(
        self, tile_size: Any, overlap: Any, tta: str, precision: str, bands: str | None
    ) -> PredictOptions:
        """The form's settings as prediction options (the library's parser checks them)."""
        from geoseg.inference.options import PredictOptions

        return PredictOptions.parse(
            {
                "tile_size": _whole(tile_size),
                "overlap": _overlap(overlap),
                "tta": tta or "none",
                "precision": precision or "auto",
                "bands": (bands or "").strip() or None,
                "device": self.config.device,
            }
        )

    def _run(
        self,
        upload: str | None,
        url: str | None,
        model_name: str,
        options: PredictOptions,
        report: Any,
        made: list[Path],
    ) -> tuple[Any, ...]:
        entry = self.catalog.entry(model_name)  # refuse unknown names before touching any file
        folder = self.workspace.new_request()
        made.append(folder)
        if upload:
            shown = display_name(Path(upload).name)
            src: str | Path = stage_upload(
                upload, folder, max_bytes=self.config.max_bytes, name=shown
            )
        elif url and url.strip():
            src = check_url(url, allowed=self.config.allow_urls)
            shown = display_name(src.rsplit("/", 1)[-1], fallback="url")
        else:
            raise UploadError(
                "expected an uploaded image (GeoTIFF/COG, JPG or PNG) or an http(s):// URL of a "
                "COG, got neither; choose a file or paste a URL"
            )
        check_raster_kind(src, shown)
        report(0.01, f"loading {entry.name}")
        model = self.catalog.load(entry.name)
        result = segment(src, folder, model, options, shown=shown, progress=report)
        if isinstance(src, Path):
            src.unlink(missing_ok=True)  # the upload copy is not needed any more
        conf_view = folder / "confidence_view.png"
        conf_view.write_bytes(result.confidence_view)
        table = [
            [
                a.name,
                a.pixels,
                None if a.m2 is None else round(a.m2, 1),
                None if a.ha is None else round(a.ha, 4),
                round(100 * a.share, 2),
            ]
            for a in result.areas
        ]
        status = f"Done. {result.summary}" + "".join(f"  \nWarning: {w}" for w in result.warnings)
        downloads = [str(result.files[k]) for k in OUTPUT_NAMES if k in result.files]
        return (
            str(result.files["quicklook"]),
            result.legend,
            str(conf_view),
            result.map,
            table,
            downloads,
            status,
        )


def build_app(
    config: AppConfig | None = None,
    *,
    catalog: ModelCatalog | None = None,
    workspace: Workspace | None = None,
) -> Any:
    """The Gradio ``Blocks`` of the app, queued with ``config.concurrency`` predictions at a time.

    Args:
        config: settings (defaults: bundled model, 127.0.0.1, 200 MB uploads).
        catalog: models to offer (default: from ``config``).
        workspace: where request folders live (default: a new private temp folder, swept).

    Returns:
        A ``gradio.Blocks``; its ``workspace`` and ``catalog`` attributes are the ones in use.
    """
    gr = import_gradio()
    config = config or AppConfig()
    catalog = catalog or ModelCatalog(config.models_dir, include_bundled=config.include_bundled)
    if workspace is None:
        workspace = Workspace(config.keep_minutes * 60, config.workdir)
        workspace.start_sweeper()
    handlers = _Handlers(config, catalog, workspace)
    names = catalog.names()
    first = catalog.default_name()
    info, tile0, overlap0 = (
        handlers.describe(first) if first else ("**No model found.**", None, None)
    )
    keep = int(config.keep_minutes * 60)

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
                upload = gr.File(
                    label=f"Image (GeoTIFF/COG, JPG, PNG; up to {config.max_size_mb:g} MB)",
                    type="filepath",
                    elem_id="geoseg-upload",
                )
                url = gr.Textbox(
                    label="…or the http(s):// URL of a COG",
                    visible=config.allow_urls,
                    elem_id="geoseg-url",
                )
                model = gr.Dropdown(names, value=first, label="Model", elem_id="geoseg-model")
                model_info = gr.Markdown(info, elem_id="geoseg-model-info")
                with gr.Accordion("Prediction settings", open=False):
                    tile = gr.Number(
                        tile0,
                        label="Tile size (px; blank: the model's)",
                        precision=0,
                        elem_id="geoseg-tile",
                    )
                    overlap = gr.Number(
                        overlap0,
                        label="Overlap (px, or a fraction such as 0.25)",
                        elem_id="geoseg-overlap",
                    )
                    tta = gr.Radio(TTA_CHOICES, value="none", label="Test-time augmentation")
                    precision = gr.Dropdown(PRECISION_CHOICES, value="auto", label="Precision")
                    bands = gr.Textbox(label="Bands in the model's order (e.g. 3,2,1; blank: all)")
                run = gr.Button("Segment", variant="primary", elem_id="geoseg-run")
                status = gr.Markdown(elem_id="geoseg-status")
            with gr.Column(scale=2):
                with gr.Tab("Overlay"):
                    overlay = gr.Image(
                        label="Classes over the image",
                        type="filepath",
                        elem_id="geoseg-overlay",
                        interactive=False,
                    )
                    legend = gr.HTML(elem_id="geoseg-legend-box")
                with gr.Tab("Confidence"):
                    confidence = gr.Image(
                        label="Confidence of the winning class (purple: unsure, yellow: sure)",
                        type="filepath",
                        interactive=False,
                        elem_id="geoseg-confidence",
                    )
                with gr.Tab("Map"):
                    map_view = gr.HTML(elem_id="geoseg-map-box")
                table = gr.Dataframe(
                    headers=TABLE_HEADERS,
                    label="Area per class",
                    interactive=False,
                    elem_id="geoseg-table",
                )
                downloads = gr.File(
                    label="Downloads: class-mask COG + QGIS style, polygons (GPKG, GeoJSON), "
                    "quicklook, confidence COG",
                    file_count="multiple",
                    interactive=False,
                    elem_id="geoseg-downloads",
                )

        # quick events do not wait behind predictions in the queue
        model.change(
            handlers.describe,
            inputs=model,
            outputs=[model_info, tile, overlap],
            api_name=False,
            concurrency_limit=None,
        )

        def on_load(current: str | None) -> Any:
            """List the model folder again, so checkpoints added since the start show up."""
            fresh = catalog.refresh()
            return gr.Dropdown(
                choices=fresh, value=current if current in fresh else catalog.default_name()
            )

        demo.load(on_load, inputs=model, outputs=model, api_name=False, concurrency_limit=None)

        def on_run(
            upload: str | None,
            url: str | None,
            model_name: str,
            tile_size: Any,
            overlap_: Any,
            tta_: str,
            precision_: str,
            bands_: str | None,
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
            )

        def on_failure(request: Any) -> str:
            return handlers.last_error(getattr(request, "session_hash", None))

        # Gradio passes the request to parameters annotated with its class (annotations are text
        # here)
        on_run.__annotations__["request"] = on_failure.__annotations__["request"] = gr.Request

        event = run.click(
            on_run,
            inputs=[upload, url, model, tile, overlap, tta, precision, bands],
            outputs=[overlay, legend, confidence, map_view, table, downloads, status],
            api_name=API_NAME,
            concurrency_limit=config.concurrency,
            concurrency_id="predict",
        )
        event.failure(on_failure, outputs=status, api_name=False, concurrency_limit=None)
    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    demo.workspace = workspace
    demo.catalog = catalog
    return demo


def warn_if_exposed(config: AppConfig) -> None:
    """Warn (:class:`~geoseg.app.config.ExposedWithoutAuthWarning`) when ``config`` listens beyond
    this machine and nobody has to log in."""
    message = config.exposure_warning()
    if message:
        warnings.warn(message, ExposedWithoutAuthWarning, stacklevel=3)


def launch_app(
    config: AppConfig | None = None, *, block: bool = True, warm: bool = True, quiet: bool = False
) -> Any:
    """Build and serve the app; returns the ``Blocks`` (``block=False`` returns once it listens).

    Warns with :class:`~geoseg.app.config.ExposedWithoutAuthWarning` when it listens beyond this
    machine without a login. ``warm`` loads the first model in the background before any request.
    """
    gr = import_gradio()
    config = config or AppConfig()
    warn_if_exposed(config)
    demo = build_app(config)
    if warm and demo.catalog.default_name():
        threading.Thread(
            target=demo.catalog.load,
            args=(demo.catalog.default_name(),),
            daemon=True,
            name="geoseg-app-warm",
        ).start()
    theme = gr.themes.Default(
        font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )  # no web fonts
    demo.launch(
        server_name=config.host,
        server_port=config.port or None,
        auth=list(config.auth) or None,
        max_file_size=config.max_bytes,
        prevent_thread_lock=not block,
        quiet=quiet,
        show_error=False,
        allowed_paths=[str(demo.workspace.root)],
        ssr_mode=False,
        theme=theme,
        footer_links=["api"],
    )
    return demo
