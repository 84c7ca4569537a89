"""One request end to end, without the web framework: check the input, predict, vectorize,
summarize.

Prediction is :func:`geoseg.inference.predict_raster` with a
:class:`~geoseg.inference.PredictOptions`; the polygons come from
:func:`geoseg.vectorize.vectorize_raster` and the quicklook from
:func:`geoseg.io.quicklook.write_quicklook`: the same code as
``geoseg predict --vector --quicklook``.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from geoseg.app.views import (
    ClassArea,
    class_areas,
    confidence_png,
    footprint_of,
    legend_html,
    map_svg,
    mask_png,
)

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.inference.options import PredictOptions
    from geoseg.models.checkpoint import LoadedModel

__all__ = ["OUTPUT_NAMES", "OVERLAY_NAME", "SegmentResult", "segment"]

log = logging.getLogger(__name__)

# file names inside a request's folder, in the order the downloads list them
OUTPUT_NAMES = {
    "mask": "classes.tif",
    "qml": "classes.qml",
    "gpkg": "polygons.gpkg",
    "geojson": "polygons.geojson",
    "quicklook": "quicklook.png",
    "confidence": "confidence.tif",
}
OVERLAY_NAME = "overlay.png"  # the page's picture: the quicklook without its legend

Progress = Callable[[float, str], None]


@dataclass
class SegmentResult:
    """Everything one request produced.

    Attributes:
        files: output name (a key of :data:`OUTPUT_NAMES`) -> path in the request's folder.
        areas: per-class pixels, m², share.
        legend: HTML legend; ``map``: HTML/SVG map view; ``confidence_view``: PNG bytes.
        seconds: wall time per stage (``predict``, ``vectorize``, ``views``, ``total``).
        summary: one line for the page.
    """

    files: dict[str, Path]
    areas: list[ClassArea]
    legend: str
    map: str
    confidence_view: bytes
    seconds: dict[str, float] = field(default_factory=dict)
    summary: str = ""
    warnings: list[str] = field(default_factory=list)


def _private(text: str, src: str | Path, folder: Path, shown: str | None) -> str:
    """A message without the server's paths: the input by the name the user knows, outputs by file
    name."""
    return text.replace(str(src), shown or str(src)).replace(f"{folder}{os.sep}", "")


def result_crs(mask: Path) -> object | None:
    """The CRS of a written mask (None when the input had none)."""
    from geoseg.io.open import open_raster

    with open_raster(mask) as ds:
        return ds.crs


def segment(
    src: str | Path,
    folder: Path,
    model: LoadedModel,
    options: PredictOptions,
    *,
    shown: str | None = None,
    progress: Progress | None = None,
) -> SegmentResult:
    """Segment ``src`` with ``model`` and write every output into ``folder`` (the argument order
    of :func:`~geoseg.inference.predict_raster`).

    Args:
        src: the staged upload or an ``http(s)://`` URL.
        folder: the request's private folder.
        model: a loaded model (kept by the app between requests).
        options: how to predict.
        shown: the input's name for messages (defaults to ``src``).
        progress: called with ``(fraction 0-1, what is happening)``.

    Raises:
        GeosegError: any refusal of the library (the CLI's one-line message, naming ``shown``).
    """
    from geoseg.errors import GeosegError, GeosegWarning
    from geoseg.inference import predict_raster
    from geoseg.io.quicklook import write_quicklook
    from geoseg.vectorize import vectorize_raster

    report: Progress = progress or (lambda fraction, text: None)
    files = {key: folder / name for key, name in OUTPUT_NAMES.items()}
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    def on_tile(done: int, total: int, megapixels: float) -> None:
        report(0.05 + 0.75 * done / max(total, 1), f"predicting: tile {done} of {total}")

    notes: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", GeosegWarning)
        try:
            report(0.02, "predicting")
            result = predict_raster(
                src, files["mask"], model, options, confidence=files["confidence"], progress=on_tile
            )
            seconds["predict"] = time.perf_counter() - start
            report(0.82, "quicklook")
            write_quicklook(src, files["mask"], files["quicklook"], classes=model.config.classes)
            write_quicklook(
                src,
                files["mask"],
                folder / OVERLAY_NAME,
                classes=model.config.classes,
                legend=False,
            )
            report(0.86, "polygons")
            t = time.perf_counter()
            vectorize_raster(files["mask"], files["gpkg"], confidence=files["confidence"])
            if (
                result_crs(files["mask"]) is not None
            ):  # GeoJSON is lon/lat: without a CRS there is nothing to reproject
                vectorize_raster(files["mask"], files["geojson"], confidence=files["confidence"])
            else:
                notes.append(
                    "no GeoJSON: the image has no CRS (GeoJSON is always lon/lat); the GeoPackage "
                    "keeps pixel coordinates"
                )
            seconds["vectorize"] = time.perf_counter() - t
        except GeosegError as exc:
            raise type(exc)(_private(str(exc), src, folder, shown)) from None
        notes[:0] = [
            _private(str(w.message), src, folder, shown)
            for w in seen
            if issubclass(w.category, GeosegWarning)
        ]
    report(0.95, "views")
    t = time.perf_counter()
    classes = model.config.classes
    areas = class_areas(files["mask"], classes)
    overlay = mask_png(files["mask"], classes, size=512)
    view = map_svg(footprint_of(files["mask"]), overlay)
    conf = confidence_png(files["confidence"], files["mask"])
    seconds["views"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - start
    files = {k: p for k, p in files.items() if p.exists()}
    summary = (
        f"{shown or src}: {result.width} x {result.height} px, {result.tiles_run} tiles run "
        f"({result.tiles_skipped} without data skipped), {result.precision} on {result.device}, "
        f"{seconds['total']:.1f} s"
    )
    return SegmentResult(files, areas, legend_html(areas), view, conf, seconds, summary, notes)
