"""Inference: tile plans, blending kernels, a bounded-memory accumulator and ``predict_raster``.

Names load lazily, so ``from geoseg.inference import PredictOptions`` needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geoseg._lazy import lazy_attributes

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.inference.blending import BLEND_KERNELS, blend_weights, register_blend
    from geoseg.inference.engine import (
        PredictionResult,
        predict_block,
        predict_classes,
        predict_raster,
        resolve_model,
    )
    from geoseg.inference.options import PredictOptions, parse_overlap
    from geoseg.inference.runtime import Runner, resolve_device

__all__ = [
    "BLEND_KERNELS",
    "PredictOptions",
    "PredictionResult",
    "Runner",
    "blend_weights",
    "parse_overlap",
    "predict_block",
    "predict_classes",
    "predict_raster",
    "register_blend",
    "resolve_device",
    "resolve_model",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        ".blending": "BLEND_KERNELS blend_weights register_blend",
        ".options": "PredictOptions parse_overlap",
        ".engine": "PredictionResult predict_block predict_classes predict_raster resolve_model",
        ".runtime": "Runner resolve_device",
    },
    __all__,
)
