"""The geoseg web app: upload an image, pick a model, get a map back (an optional extra).

A client of the public API only: it runs :func:`geoseg.inference.predict_raster` with a
:class:`~geoseg.inference.PredictOptions`, the vectorizer and the quicklook writer. Gradio is
imported when the app is built, so ``import geoseg.app`` stays light::

    from geoseg.app import AppConfig, build_app, close_app
    demo = build_app(AppConfig(models_dir="models"))
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True)
    ...
    close_app(demo)  # stops running predictions, removes every request folder

Names load lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geoseg._lazy import lazy_attributes

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.app.catalog import ModelCatalog, ModelEntry
    from geoseg.app.config import AppConfig
    from geoseg.app.pipeline import SegmentResult, segment
    from geoseg.app.ui import build_app, close_app, launch_app

__all__ = [
    "AppConfig",
    "ModelCatalog",
    "ModelEntry",
    "SegmentResult",
    "build_app",
    "close_app",
    "launch_app",
    "segment",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        ".config": "AppConfig",
        ".catalog": "ModelCatalog ModelEntry",
        ".pipeline": "SegmentResult segment",
        ".ui": "build_app close_app launch_app",
    },
    __all__,
)
