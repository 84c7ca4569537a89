"""Inference: tile plans, blending kernels, a bounded-memory accumulator and ``predict_raster``."""

from geoseg.inference.blending import BLEND_KERNELS, blend_weights, register_blend
from geoseg.inference.engine import PredictionResult, predict_block, predict_raster, resolve_model
from geoseg.inference.runtime import Runner, resolve_device

__all__ = [
    "BLEND_KERNELS",
    "PredictionResult",
    "Runner",
    "blend_weights",
    "predict_block",
    "predict_raster",
    "register_blend",
    "resolve_device",
    "resolve_model",
]
