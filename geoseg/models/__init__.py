"""Models: an architecture registry over segmentation-models-pytorch and self-describing checkpoints.

:mod:`geoseg.models.config` needs no torch; importing this package imports torch.
"""

from geoseg.models.checkpoint import LoadedModel, load_checkpoint, model_from_config, read_config, save_checkpoint
from geoseg.models.config import FORMAT_VERSION, ModelConfig
from geoseg.models.registry import (
    ARCHITECTURES,
    build_model,
    list_architectures,
    list_encoders,
    load_encoder_weights,
    register_architecture,
)

__all__ = [
    "ARCHITECTURES",
    "FORMAT_VERSION",
    "LoadedModel",
    "ModelConfig",
    "build_model",
    "list_architectures",
    "list_encoders",
    "load_checkpoint",
    "load_encoder_weights",
    "model_from_config",
    "read_config",
    "register_architecture",
    "save_checkpoint",
]
