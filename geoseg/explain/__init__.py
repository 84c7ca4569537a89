"""Grad-CAM, Grad-CAM++ and layer activations, streamed over rasters with the inference tile engine.

Names load lazily: ``import geoseg.explain`` needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geoseg._lazy import lazy_attributes

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.explain.cam import METHODS, CamComputer, activation_maps
    from geoseg.explain.layers import LayerInfo, list_layers, resolve_layer
    from geoseg.explain.stream import ExplainResult, explain_raster

__all__ = [
    "METHODS",
    "CamComputer",
    "ExplainResult",
    "LayerInfo",
    "activation_maps",
    "explain_raster",
    "list_layers",
    "resolve_layer",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        ".cam": "METHODS CamComputer activation_maps",
        ".layers": "LayerInfo list_layers resolve_layer",
        ".stream": "ExplainResult explain_raster",
    },
    __all__,
)
