"""What runs on a worker: the storage settings and the thread count. Models are loaded once per
worker process by :func:`geoseg.models.resolve.shared_model` and shared by its threads."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["EnvironmentPlugin", "task_environment"]

try:  # a plugin class Dask recognises; plain object where Dask is not installed (in-process runs)
    from distributed.diagnostics.plugin import WorkerPlugin as _PluginBase
except ImportError:  # pragma: no cover
    _PluginBase = object  # type: ignore[assignment,misc]


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
