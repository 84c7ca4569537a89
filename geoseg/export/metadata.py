"""What an exported model says about itself: the geoseg config and the keys QGIS Deepness reads.

Pure Python, no torch. Deepness divides 8-bit pixels by 255 and then standardizes with
``(x - mean) / std``; a geoseg normalization is translated into that convention where it can be
(``meanstd`` and ``scale`` are linear), and a :class:`~geoseg.errors.DeepnessWarning` says why
where it cannot (percentile clipping, SAR decibels, imagery that is not 8-bit).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

from geoseg.errors import DeepnessWarning
from geoseg.inference.options import PredictOptions
from geoseg.models.config import ModelConfig

__all__ = ["deepness_metadata", "deepness_standardization", "export_metadata"]


def deepness_standardization(config: ModelConfig) -> tuple[list[float], list[float]] | None:
    """Deepness' ``(standardization_mean, standardization_std)`` reproducing the model's input
    normalization after its ``x / 255``, or None (with a warning) when no such pair exists."""
    norm, bands = config.normalization, config.in_channels
    problems: list[str] = []
    if norm.sar_db:
        problems.append("it converts SAR intensity to decibels first")
    if config.band_dtype not in (None, "uint8"):
        problems.append(
            f"the model was trained on {config.band_dtype} imagery and Deepness scales pixels as "
            "8-bit (x / 255)"
        )
    result: tuple[list[float], list[float]] | None = None
    if norm.kind == "meanstd":
        result = [m / 255 for m in norm.mean], [s / 255 for s in norm.std]
    elif norm.kind == "scale":
        result = [0.0] * bands, [norm.scale / 255] * bands
    elif norm.kind == "none":
        result = [0.0] * bands, [1 / 255] * bands
    else:
        problems.append(
            f"{norm.kind} normalization clips to per-band percentiles, which a mean/std cannot "
            "express"
        )
    if problems:
        warnings.warn(
            "the model's input normalization cannot be expressed in QGIS Deepness' convention: "
            f"{'; '.join(problems)}. Expected 8-bit imagery normalized by meanstd or scale; the "
            "exported model still runs in geoseg (geoseg predict --model model.onnx applies the "
            "recorded normalization), but in Deepness prepare the imagery to match or set the "
            "standardization by hand",
            DeepnessWarning,
            stacklevel=3,
        )
        return None
    return result


def deepness_metadata(
    config: ModelConfig, *, tile_size: int | None = None, resolution_cm: float | None = None
) -> dict[str, Any]:
    """The metadata keys QGIS Deepness reads, as Python values (JSON-encoded on export).

    Args:
        config: the model's config.
        tile_size: the tile edge of the exported graph (default: the config's).
        resolution_cm: ground resolution in cm/px (default: the config's GSD; omitted if unknown).
    """
    tile = PredictOptions(tile_size=tile_size).tile_size_for(config)
    meta: dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": {str(c.id): c.name for c in config.classes},
        # Deepness' docs name the key tiles_size and parts of its code tile_size: write both
        "tile_size": tile,
        "tiles_size": tile,
        "tiles_overlap": round(100 * config.overlap / tile),
    }
    resolution = (
        resolution_cm if resolution_cm is not None else (config.gsd * 100 if config.gsd else None)
    )
    if resolution is not None:
        meta["resolution"] = float(resolution)
    else:
        warnings.warn(
            "the model records no ground resolution (gsd); Deepness will ask for one. "
            "Pass --resolution CM (centimetres per pixel) to record it",
            DeepnessWarning,
            stacklevel=3,
        )
    std = deepness_standardization(config)
    if std is not None:
        meta["standardization_mean"], meta["standardization_std"] = std
    return meta


def export_metadata(
    config: ModelConfig,
    *,
    tile_size: int | None = None,
    resolution_cm: float | None = None,
    output: str = "probabilities",
) -> dict[str, str]:
    """All metadata properties of an exported model: ``geoseg_config`` (the checkpoint's JSON),
    ``geoseg_output`` (what the graph returns) and the Deepness keys, every value JSON text."""
    props = {
        k: json.dumps(v)
        for k, v in deepness_metadata(
            config, tile_size=tile_size, resolution_cm=resolution_cm
        ).items()
    }
    props["geoseg_config"] = config.to_json()
    props["geoseg_output"] = output
    return props
