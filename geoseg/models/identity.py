"""The identity of a model reference, as provenance records it: a name and a digest of the weights.

The digest is the one the model cache uses (:mod:`geoseg.models.digest`): of a checkpoint's files,
or of a loaded module's tensors, and a module loaded from a checkpoint answers that checkpoint's
digest. So ``quality``, the bundled file's path and the module loaded from it all have one
identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoseg.models.resolve import ModelRef

__all__ = ["ModelIdentity", "model_identity"]


@dataclass(frozen=True)
class ModelIdentity:
    """A model as provenance names it.

    Attributes:
        label: ``quality``/``fast`` for the bundled models, else the file's name (``module`` for
            an object that came from no known file).
        digest: a digest of the weights (hex), or None when none can be taken.
    """

    label: str
    digest: str | None


def _file_of(path: str) -> tuple[Path, Path | None]:
    from geoseg.models.config import checkpoint_files
    from geoseg.models.resolve import model_loader

    if model_loader(os.path.splitext(path)[1]) is not None:  # an .onnx file: its bytes
        return Path(path), None
    return checkpoint_files(path)


def _bundled_label(digest: str) -> str | None:
    """The bundled model whose files have ``digest``, if any."""
    from geoseg.models.default import BUNDLED_MODELS, WEIGHTS_DIR
    from geoseg.models.digest import file_digest

    for name, file in BUNDLED_MODELS.items():
        path = WEIGHTS_DIR / file
        if path.is_file() and file_digest(*_file_of(str(path))) == digest:
            return name
    return None


def model_identity(ref: ModelRef = None) -> ModelIdentity:
    """The name and weights digest of any model reference (see
    :func:`~geoseg.models.resolve.resolve_model`).

    A local file is digested from its bytes (once per process); an ``s3://`` model is loaded
    (once per process) and its tensors digested; a loaded model or module answers the digest of
    the checkpoint it came from, or of its tensors.

    Raises:
        CheckpointError: the reference names nothing.
    """
    from geoseg.io.storage import is_object_url
    from geoseg.models.checkpoint import LoadedModel
    from geoseg.models.digest import file_digest, module_digest
    from geoseg.models.resolve import model_label, model_path, shared_model

    path = model_path(ref) if not isinstance(ref, LoadedModel) else None
    if path is not None and not is_object_url(path):
        return ModelIdentity(model_label(path), file_digest(*_file_of(path)))
    module: Any = ref.model if isinstance(ref, LoadedModel) else ref
    if path is not None:  # an s3:// model, loaded once per process
        module = shared_model(path).model
    try:
        digest: str | None = module_digest(module)
    except Exception:  # a graph run by another runtime has no tensors to digest
        digest = None
    label = model_label(path) if path is not None else None
    if label is None:
        label = (_bundled_label(digest) if digest else None) or "module"
    return ModelIdentity(label, digest)
