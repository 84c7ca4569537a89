"""What the page's events do: run a prediction, cancel it, forget a closed session.

No layout here (that is :mod:`geoseg.app.ui`); Gradio is imported only to raise its ``Error``, which
the page shows in a message box.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoseg.app.catalog import ModelCatalog
from geoseg.app.config import AppConfig
from geoseg.app.jobs import Job, JobBoard
from geoseg.app.pipeline import OUTPUT_NAMES, OVERLAY_NAME, segment
from geoseg.app.urls import check_url
from geoseg.app.wording import in_app_words
from geoseg.app.workspace import Workspace, check_raster, display_name, stage_upload
from geoseg.errors import GeosegError, RunCancelledError, UploadError

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.app.egress import EgressProxy
    from geoseg.inference.options import PredictOptions

__all__ = ["CANCEL_WAIT", "Handlers"]

log = logging.getLogger(__name__)

CANCEL_WAIT = 10.0  # seconds the Cancel button waits for the run to stop before answering


def _whole(value: Any) -> int | None:
    """A tile size from a number box: ``None``/0 -> the checkpoint's, ``256.0`` -> 256."""
    if value in (None, "", 0):
        return None
    number = float(value)
    if not number.is_integer():
        raise UploadError(f"Tile size must be whole pixels, got {value!r}; e.g. 512")
    return int(number)


def _overlap(value: Any) -> float | int | None:
    if value in (None, ""):
        return None
    return float(value)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


_CANCEL_BUTTON = "the Cancel button was pressed"


def _cancelled(why: str) -> str:
    """The status line of a cancelled run. The Cancel handler and the run itself both write it,
    in either order, so both must say the same thing."""
    if why == _CANCEL_BUTTON:
        return "Cancelled: the run stopped; nothing was kept."
    return f"Cancelled: {why}; nothing was kept."


class Handlers:
    """The app's state (catalog, workspace, running jobs, settings) and the functions events call.

    Args:
        config: the app's settings.
        catalog: the models offered.
        workspace: where request folders live.
    """

    def __init__(self, config: AppConfig, catalog: ModelCatalog, workspace: Workspace) -> None:
        self.config = config
        self.catalog = catalog
        self.workspace = workspace
        self.jobs = JobBoard()
        self._errors: dict[str, str] = {}  # session -> last refusal, shown in the status line too
        self._lock = threading.Lock()
        self._egress: EgressProxy | None = None

    # -- status line ------------------------------------------------------------------------------

    def last_error(self, session: str | None) -> str:
        with self._lock:
            message = self._errors.pop(session or "", None)
        return f"**Error:** {message}" if message else ""

    def _remember(self, session: str | None, message: str) -> None:
        with self._lock:
            if len(self._errors) > 1000:  # sessions that never came back for theirs
                self._errors.clear()
            self._errors[session or ""] = message

    def describe(self, name: str) -> tuple[str, int | None, int | None]:
        try:
            entry = self.catalog.entry(name)
        except GeosegError as exc:
            return f"**{exc}**", None, None
        return entry.describe(), entry.config.tile_size, entry.config.overlap

    # -- stopping ---------------------------------------------------------------------------------

    def cancel(self, session: str | None) -> str:
        """The Cancel button: stop the session's run and wait (up to :data:`CANCEL_WAIT`) until
        it has; returns the status line."""
        jobs = self.jobs.cancel(session, _CANCEL_BUTTON, wait=CANCEL_WAIT)
        if not jobs:
            return "Cancelled."
        if all(j.stopped.is_set() for j in jobs):
            return _cancelled(_CANCEL_BUTTON)
        return "Cancelling: the run stops after the tile it is on."

    def session_closed(self, session: str | None) -> None:
        """The page was closed or reloaded: stop its run; nobody will see the result."""
        for job in self.jobs.cancel(session, "the page was closed"):
            log.info("stopping a run: its page was closed (session %s)", job.session[:8])
        with self._lock:
            self._errors.pop(session or "", None)

    def close(self, wait: float = 30.0) -> bool:
        """Refuse new runs, stop the running ones (waiting up to ``wait`` s) and the URL proxy.

        Returns:
            True when every run has stopped.
        """
        done = self.jobs.close(wait=wait)
        with self._lock:
            egress, self._egress = self._egress, None
        if egress is not None:
            egress.close()
        return done

    # -- running ----------------------------------------------------------------------------------

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
        scale: str | None = None,
    ) -> tuple[Any, ...]:
        """One prediction for the page or the API: its seven outputs. A refusal raises
        ``gradio.Error`` with one line; a cancelled run changes only the status line."""
        from geoseg.app.deps import import_gradio

        gr = import_gradio()
        made: list[Path] = []
        try:
            job = self.jobs.start(session)
        except RunCancelledError as exc:
            raise gr.Error(str(exc), duration=None, print_exception=False) from None

        def report(fraction: float, text: str) -> None:
            job.check(text)
            progress(fraction, desc=text)

        outcome = "failed"
        try:
            options = self._options(tile_size, overlap, tta, precision, bands, scale)
            result = self._run(upload, url, model_name, options, report, made, job)
            outcome = "done"
            return result
        except RunCancelledError:
            outcome = "cancelled"
            log.info("cancelled a run at %r: %s", job.step, job.why)
            for f in made:
                shutil.rmtree(f, ignore_errors=True)
            # not an error: the page keeps what it showed and says what happened
            return (*(gr.skip() for _ in range(6)), _cancelled(job.why))
        except GeosegError as exc:
            outcome = "refused"
            message = in_app_words(str(exc))
            log.info("refused: %s", _one_line(message))
        except Exception as exc:
            log.exception("unexpected error")
            message = _one_line(
                f"unexpected {type(exc).__name__}: {exc}. The server log has the details; "
                "report it if the input looks valid"
            )
        finally:
            self.jobs.finish(job, outcome)
        for f in made:  # a refused or cancelled request keeps nothing
            shutil.rmtree(f, ignore_errors=True)
        self._remember(session, message)
        raise gr.Error(message, duration=None, print_exception=False)

    def _options(
        self,
        tile_size: Any,
        overlap: Any,
        tta: str,
        precision: str,
        bands: str | None,
        scale: str | None = None,
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
                "scale": (scale or "").strip() or None,
                "device": self.config.device,
            }
        )

    def _url_source(self, url: str) -> tuple[str, str]:
        """``(path GDAL reads, name shown)`` of a URL input, through the egress proxy unless
        private addresses are allowed."""
        remote = check_url(
            url, allowed=self.config.allow_urls, allow_private=self.config.allow_private_urls
        )
        shown = display_name(remote.name, fallback="url")
        if self.config.allow_private_urls:
            return remote.gdal_path(), shown
        with self._lock:
            if self._egress is None:
                from geoseg.app.egress import EgressProxy

                self._egress = EgressProxy()
            egress = self._egress
        return remote.gdal_path(egress.url, egress.credentials), shown

    def _run(
        self,
        upload: str | None,
        url: str | None,
        model_name: str,
        options: PredictOptions,
        report: Any,
        made: list[Path],
        job: Job,
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
            src, shown = self._url_source(url)
        else:
            raise UploadError(
                "expected an uploaded image (GeoTIFF/COG, JPG or PNG) or an http(s):// URL of a "
                "COG, got neither; choose a file or paste a URL"
            )
        check_raster(src, shown, max_pixels=self.config.max_pixels)
        report(0.01, f"loading {entry.name}")
        model = self.catalog.load(entry.name)
        result = segment(src, folder, model, options, shown=shown, progress=report)
        job.check()
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
        status = f"Done. {result.summary}" + "".join(
            f"  \nWarning: {in_app_words(w)}" for w in result.warnings
        )
        downloads = [str(result.files[k]) for k in OUTPUT_NAMES if k in result.files]
        return (
            str(folder / OVERLAY_NAME),
            result.legend,
            str(conf_view),
            result.map,
            table,
            downloads,
            status,
        )
