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

_WHERE = {
    "METHODS": "cam",
    "CamComputer": "cam",
    "activation_maps": "cam",
    "LayerInfo": "layers",
    "list_layers": "layers",
    "resolve_layer": "layers",
    "ExplainResult": "stream",
    "explain_raster": "stream",
}


__getattr__, __dir__ = lazy_attributes(
    __name__, {name: "." + module for name, module in _WHERE.items()}, __all__
)
