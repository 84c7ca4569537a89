"""What runs on a worker: the storage settings, the thread count and the memory allocator's
settings. Models are loaded once per worker process by :func:`geoseg.models.resolve.shared_model`
and shared by its threads."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["EnvironmentPlugin", "task_environment", "tensor_friendly_malloc"]

try:  # a plugin class Dask recognises; plain object where Dask is not installed (in-process runs)
    from distributed.diagnostics.plugin import WorkerPlugin as _PluginBase
except ImportError:  # pragma: no cover
    _PluginBase = object  # type: ignore[assignment,misc]


#: glibc's own ceilings for the thresholds it adapts by itself: blocks under 32 MiB come from the
#: heap and are reused; the heap is given back to the system beyond 64 MiB of free top
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = 64 << 20
_tuned = False


def tensor_friendly_malloc() -> bool:
    """Undo, in this worker process, the ``MALLOC_TRIM_THRESHOLD_`` a Dask nanny gives its
    workers (``distributed.nanny.pre-spawn-environ``).

    Setting that variable turns off glibc's adaptive thresholds, so every block over 128 KiB is a
    fresh ``mmap`` handed back at ``free``: each tile's activations are then new pages, faulted in
    and zeroed again, and a worker predicts 1.8x slower than a plain process on the same tiles.
    The thresholds are set here to the ceilings glibc would adapt to by itself. Returns whether
    they were set (once per process; only on glibc, and only where the variable is set).
    """
    global _tuned
    if _tuned or "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    _tuned = bool(mallopt(m_mmap_threshold, _MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, _TRIM_THRESHOLD)
    )
    return _tuned


@contextlib.contextmanager
def task_environment(threads: int | None) -> Iterator[None]:
    """Torch's thread count for one task (a local cluster splits the cores between its workers),
    and the allocator settings of :func:`tensor_friendly_malloc`."""
    tensor_friendly_malloc()
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
        tensor_friendly_malloc()

    def teardown(self, worker: Any) -> None:
        pass
