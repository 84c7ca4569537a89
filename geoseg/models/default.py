"""The bundled default model: a small U-Net trained on the Dubai aerial dataset.

It ships inside the package (``geoseg/models/weights/``, installed with geoseg as package data);
``GEOSEG_DEFAULT_MODEL`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from geoseg.errors import CheckpointError

__all__ = ["DEFAULT_MODEL_NAME", "WEIGHTS_DIR", "default_model"]

DEFAULT_MODEL_NAME = "dubai-landcover-unet.safetensors"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def default_model() -> Path:
    """Path of the default checkpoint (``GEOSEG_DEFAULT_MODEL`` when set, else the bundled one).

    Raises:
        CheckpointError: it is not there (e.g. an installation without its package data).
    """
    env = os.environ.get("GEOSEG_DEFAULT_MODEL")
    path = Path(env) if env else WEIGHTS_DIR / DEFAULT_MODEL_NAME
    if not path.is_file():
        raise CheckpointError(f"default model {path} not found; pass --model CHECKPOINT, or set GEOSEG_DEFAULT_MODEL "
                              "to a checkpoint (geoseg installs one in geoseg/models/weights/; reinstall geoseg if it is missing)")
    return path
