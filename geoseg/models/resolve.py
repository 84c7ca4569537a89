"""One resolver of model references, used by every door (CLI, API, app, Dask, explain, diagnose).

A model reference is any of:

- a checkpoint: a ``.safetensors`` file or a checkpoint folder (:func:`load_checkpoint`);
- a model file another runtime runs, by suffix: ``.onnx`` (onnxruntime). Loaders register
  themselves with :func:`register_model_loader`, or are declared as entry points of the
  ``geoseg.model_loaders`` group (name: the suffix without its dot), so this layer never names the
  packages above it;
- a bundled model by name: ``quality`` (the default), ``fast``, or ``default`` (the default model:
  ``GEOSEG_DEFAULT_MODEL`` when set, else ``quality``);
- an ``s3://`` URL of any of these files (downloaded, loaded, then removed);
- a :class:`~geoseg.models.checkpoint.LoadedModel`, or a bare module with its ``config``;
- ``None``: the default model.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Union

from geoseg.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from geoseg.models.checkpoint import LoadedModel
    from geoseg.models.config import ModelConfig

__all__ = [
    "ModelRef",
    "model_config",
    "model_label",
    "model_loader",
    "model_path",
    "register_model_loader",
    "resolve_model",
    "shared_model",
]

log = logging.getLogger(__name__)

ModelRef = Union[str, os.PathLike[str], "LoadedModel", "nn.Module", None]
Loader = Callable[..., "LoadedModel"]
ENTRY_POINTS = "geoseg.model_loaders"

_LOADERS: dict[str, Loader] = {}
_LOADERS_LOCK = threading.Lock()
_ENTRY_POINTS_READ = False


def register_model_loader(suffix: str, loader: Loader) -> None:
    """Run model files ending in ``suffix`` (``.onnx``) with ``loader(path, device=...)``, which
    returns a :class:`~geoseg.models.checkpoint.LoadedModel`."""
    key = suffix.lower() if suffix.startswith(".") else f".{suffix.lower()}"
    with _LOADERS_LOCK:
        _LOADERS[key] = loader


def model_loader(suffix: str) -> Loader | None:
    """The loader registered for ``suffix``, looking through the ``geoseg.model_loaders`` entry
    points once when none is registered; None for checkpoints (``.safetensors``, folders)."""
    global _ENTRY_POINTS_READ
    key = suffix.lower()
    if key in _LOADERS or _ENTRY_POINTS_READ:
        return _LOADERS.get(key)
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINTS):
        name = f".{ep.name.lower().lstrip('.')}"
        if name not in _LOADERS:
            try:
                register_model_loader(name, ep.load())
            except Exception as exc:  # a broken plugin must not stop checkpoints from loading
                log.info("model loader %s (%s) cannot load: %s", ep.name, ep.value, exc)
    _ENTRY_POINTS_READ = True
    return _LOADERS.get(key)


def model_path(ref: ModelRef) -> str | None:
    """The file or URL a reference names: bundled names and ``default`` (and ``None``) resolved
    to their checkpoint; None for a loaded model or a module.

    Raises:
        CheckpointError: a bundled model's file is missing from this installation.
    """
    from geoseg.models.default import default_model, named_model

    if ref is None:
        return str(default_model())
    if isinstance(ref, (str, os.PathLike)):
        return str(named_model(ref))
    return None


def model_label(ref: ModelRef) -> str:
    """The name a person knows a model by: ``quality``/``fast`` for the bundled ones, else the
    file's name (``module`` for an object)."""
    from geoseg.models.default import bundled_name

    path = model_path(ref)
    if path is None:
        return "module"
    return bundled_name(path) or Path(path).name


def resolve_model(
    ref: ModelRef = None,
    *,
    config: ModelConfig | None = None,
    device: torch.device | str = "cpu",
) -> LoadedModel:
    """A :class:`~geoseg.models.checkpoint.LoadedModel` for any model reference (see the module).

    Args:
        ref: what to load; ``None``: the default model.
        config: the config of a bare module (ignored otherwise).
        device: where a model file's runtime runs (checkpoints load on the CPU and move later).

    Raises:
        CheckpointError: nothing there, a pickle, weights that do not fit, or a bare module
            without its config.
    """
    from geoseg.models.checkpoint import LoadedModel, load_checkpoint

    if isinstance(ref, LoadedModel):
        return ref
    path = model_path(ref)
    if path is None:
        if config is None:
            raise CheckpointError(
                "a bare torch module needs its config: pass config=ModelConfig(...) (classes, "
                "bands, normalization), or give a checkpoint path or a bundled model name "
                "(quality, fast)"
            )
        return LoadedModel(ref, config)  # type: ignore[arg-type]
    from geoseg.io.storage import localized

    with localized(path) as local:
        loader = model_loader(Path(local).suffix)
        if loader is not None:
            return loader(local, device=device)
        return load_checkpoint(local, device="cpu")


def model_config(ref: ModelRef = None) -> ModelConfig:
    """The config of any model reference, cheaply: a checkpoint's config is read without its
    weights (an ``s3://`` checkpoint is downloaded for it); a model file another runtime runs is
    loaded."""
    from geoseg.models.checkpoint import LoadedModel
    from geoseg.models.config import read_config

    if isinstance(ref, LoadedModel):
        return ref.config
    path = model_path(ref)
    if path is None or model_loader(Path(path).suffix) is not None:
        return resolve_model(ref).config
    from geoseg.io.storage import localized

    with localized(path) as local:
        return read_config(local)


# models loaded once per process by shared_model, by (path, size, mtime, device)
_SHARED: dict[tuple[str, int, int, str], LoadedModel] = {}
_SHARED_LOCK = threading.Lock()
SHARED_MAX = 8  # a long-lived process (the web app, a Dask worker) keeps at most this many


def shared_model(ref: ModelRef = None, *, device: str = "cpu") -> LoadedModel:
    """:func:`resolve_model`, loaded once per process and reused by every later call (a Dask
    worker's tasks, the web app's requests, a notebook's thread pool). A local file that changes
    is loaded again. Objects are returned as they are.

    The returned model is shared between threads: run it through
    :class:`~geoseg.inference.PredictionSession` (which never modifies it), never move or convert
    it in place.
    """
    path = model_path(ref)
    if path is None:
        return resolve_model(ref)
    try:
        st = os.stat(path)
        stamp = (st.st_size, st.st_mtime_ns)
    except OSError:  # an object-storage URL (or a missing file: resolve_model says so)
        stamp = (0, 0)
    key = (path, *stamp, str(device))
    with _SHARED_LOCK:
        held = _SHARED.get(key)
        if held is None:
            held = resolve_model(path, device=device)
            if len(_SHARED) >= SHARED_MAX:
                _SHARED.pop(next(iter(_SHARED)))
            _SHARED[key] = held
        return held
