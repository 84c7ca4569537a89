"""Models: an architecture registry over segmentation-models-pytorch and self-describing
checkpoints.

Importing this package is cheap; torch loads when a builder or checkpoint function is first used.
:mod:`geoseg.models.config` never needs torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geoseg._lazy import lazy_attributes
from geoseg.models.config import FORMAT_VERSION, ModelConfig

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.models.checkpoint import (
        LoadedModel,
        load_checkpoint,
        model_from_config,
        read_config,
        save_checkpoint,
    )
    from geoseg.models.pretrained import PretrainedWeights, list_pretrained, register_pretrained
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
    "PretrainedWeights",
    "build_model",
    "list_architectures",
    "list_encoders",
    "list_pretrained",
    "load_checkpoint",
    "load_encoder_weights",
    "model_from_config",
    "read_config",
    "register_architecture",
    "register_pretrained",
    "save_checkpoint",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        ".checkpoint": "LoadedModel load_checkpoint model_from_config read_config save_checkpoint",
        ".registry": "ARCHITECTURES build_model list_architectures list_encoders "
        "load_encoder_weights register_architecture",
        ".pretrained": "PretrainedWeights list_pretrained register_pretrained",
    },
    __all__,
)
