"""The bundled models, trained on the Dubai aerial dataset, and the default among them.

They ship inside the package (``geoseg/models/weights/``, installed with geoseg as package data):

- ``quality`` (the default): a U-Net with an ImageNet-pretrained EfficientNet-Lite0 encoder,
  trained with augmentations that imitate other sensors and pixel sizes.
- ``fast``: a smaller U-Net from random weights, its network 1.45 times as fast per tile on CPU
  (end to end on 2 CPU cores about as fast today), and clearly worse beyond Dubai.

``GEOSEG_DEFAULT_MODEL`` points the default elsewhere. Wherever a model path is taken, a bundled
name is taken too: ``quality``, ``fast``, or ``default`` (whichever model is the default). Those
names are what every door shows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from geoseg.errors import CheckpointError

__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_MODEL_NAME",
    "WEIGHTS_DIR",
    "bundled_model",
    "bundled_name",
    "default_model",
    "named_model",
]

DEFAULT_MODEL_NAME = "dubai-landcover-unet.safetensors"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
T = TypeVar("T")
BUNDLED_MODELS = {"quality": DEFAULT_MODEL_NAME, "fast": "dubai-landcover-fast.safetensors"}


def _missing(path: Path, what: str) -> CheckpointError:
    return CheckpointError(
        f"{what} {path} not found; pass --model CHECKPOINT, or set GEOSEG_DEFAULT_MODEL to a "
        "checkpoint (geoseg installs its models in geoseg/models/weights/; reinstall geoseg if "
        "they are missing)"
    )


def default_model() -> Path:
    """Path of the default checkpoint (``GEOSEG_DEFAULT_MODEL`` when set, else the bundled
    ``quality``).

    Raises:
        CheckpointError: it is not there (e.g. an installation without its package data).
    """
    env = os.environ.get("GEOSEG_DEFAULT_MODEL")
    path = Path(env) if env else WEIGHTS_DIR / DEFAULT_MODEL_NAME
    if not path.is_file():
        raise _missing(path, "default model")
    return path


def bundled_model(name: str) -> Path | None:
    """The checkpoint a bundled name means (``quality``, ``fast``, ``default``, or a bundled file's
    stem), else None."""
    if name == "default":
        return default_model()
    file = BUNDLED_MODELS.get(name) or next(
        (f for f in BUNDLED_MODELS.values() if Path(f).stem == name), None
    )
    if file is None:
        return None
    path = WEIGHTS_DIR / file
    if not path.is_file():
        raise _missing(path, f"bundled model {name!r}")
    return path


def bundled_name(path: str | os.PathLike[str]) -> str | None:
    """``quality`` or ``fast`` when ``path`` is that bundled checkpoint, else None."""
    p = Path(path)
    if p.parent.resolve() != WEIGHTS_DIR:
        return None
    return next((name for name, file in BUNDLED_MODELS.items() if file == p.name), None)


def named_model(model: T) -> T | Path:
    """``model`` unchanged, unless it is a string that names no file but a bundled model: its
    path."""
    if isinstance(model, str) and not os.path.exists(model):
        return bundled_model(model) or model
    return model
