"""Inference: the tile engine (:class:`PredictionSession`) and the doors built on it
(``predict_raster``, ``predict_block``, ``predict_classes``), tile plans, blending kernels.

Names load lazily, so ``from geoseg.inference import PredictOptions`` needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geoseg._lazy import lazy_attributes

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.inference.blending import BLEND_KERNELS, blend_weights, register_blend
    from geoseg.inference.engine import (
        PredictionResult,
        iter_probabilities,
        predict_block,
        predict_classes,
        predict_raster,
        resolve_model,
    )
    from geoseg.inference.options import PredictOptions, parse_overlap
    from geoseg.inference.runtime import Runner, resolve_device
    from geoseg.inference.session import (
        PredictionSession,
        SessionStats,
        TileBatch,
        TileFunction,
        open_session,
    )

__all__ = [
    "BLEND_KERNELS",
    "PredictOptions",
    "PredictionResult",
    "PredictionSession",
    "Runner",
    "SessionStats",
    "TileBatch",
    "TileFunction",
    "blend_weights",
    "iter_probabilities",
    "open_session",
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
        ".engine": "PredictionResult iter_probabilities predict_block predict_classes "
        "predict_raster resolve_model",
        ".runtime": "Runner resolve_device",
        ".session": "PredictionSession SessionStats TileBatch TileFunction open_session",
    },
    __all__,
)
