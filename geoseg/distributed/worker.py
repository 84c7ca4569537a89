"""What runs on a worker: one model per worker process, the GDAL settings, the thread count."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["EnvironmentPlugin", "cached_model", "task_environment"]

try:  # a plugin class Dask recognises; plain object where Dask is not installed (in-process runs)
    from distributed.diagnostics.plugin import WorkerPlugin as _PluginBase
except ImportError:  # pragma: no cover
    _PluginBase = object  # type: ignore[assignment,misc]

_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def cached_model(model: Any, device: str = "cpu") -> Any:
    """The :class:`~geoseg.models.checkpoint.LoadedModel` for a checkpoint path, ``s3://`` URL or
    None (the bundled model), loaded once per worker process and reused by every later task
    (together with its frozen TorchScript traces). Anything else is returned as it is."""
    if model is not None and not isinstance(model, (str, os.PathLike)):
        return model
    from geoseg.models.checkpoint import load_checkpoint

    if model is None:
        from geoseg.models.default import default_model

        model = default_model()
    key = (str(model), device)
    with _LOCK:
        if key not in _MODELS:
            from geoseg.io.storage import localized

            with localized(model) as local:
                _MODELS[key] = load_checkpoint(local, device="cpu")
        return _MODELS[key]


@contextlib.contextmanager
def task_environment(threads: int | None) -> Iterator[None]:
    """Torch's thread count for one task (a local cluster splits the cores between its workers)."""
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    yield


class EnvironmentPlugin(_PluginBase):
    """A Dask worker plugin that puts the client's GDAL/object-store settings
    (:func:`geoseg.io.storage.gdal_options`) into each worker's environment, workers started
    later (to replace a lost one) included. GDAL reads its settings from the environment."""

    name = "geoseg-environment"

    def __init__(self, environ: dict[str, str]) -> None:
        self.environ = dict(environ)

    def setup(self, worker: Any) -> None:
        os.environ.update(self.environ)

    def teardown(self, worker: Any) -> None:
        pass
