"""The bundled default model: a small U-Net trained on the Dubai aerial dataset.

It ships in the repository's ``sample_data/``; ``GEOSEG_DEFAULT_MODEL`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from geoseg.errors import CheckpointError

__all__ = ["DEFAULT_MODEL_NAME", "default_model"]

DEFAULT_MODEL_NAME = "dubai-landcover-unet.safetensors"


def default_model() -> Path:
    """Path of the default checkpoint.

    Raises:
        CheckpointError: it is not there (e.g. geoseg installed without its repository).
    """
    env = os.environ.get("GEOSEG_DEFAULT_MODEL")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "sample_data" / DEFAULT_MODEL_NAME
    if not path.is_file():
        raise CheckpointError(f"default model {path} not found; pass --model CHECKPOINT, or set GEOSEG_DEFAULT_MODEL "
                              "to a checkpoint (the repository ships one in sample_data/)")
    return path
