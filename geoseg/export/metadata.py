"""What an exported model says about itself: the geoseg config and the keys QGIS Deepness reads.

The Deepness keys make the plugin's defaults, as it loads them from the file, run the model as
``geoseg predict`` runs the same file: at the model's ground resolution, with its tile and an
overlap both can lay exactly, its input standardization, and plain argmax classes (no
probability threshold, no small-segment filter). The file's own geoseg config names the
``deepness`` tiling, so geoseg lays, fills and combines its tiles as the plugin does.
Pure Python, no torch. Deepness divides 8-bit pixels by 255 and then standardizes with
``(x - mean) / std``; a geoseg normalization is translated into that convention where it can be
(``meanstd`` and ``scale`` are linear), and a :class:`~geoseg.errors.DeepnessWarning` says why
where it cannot (percentile clipping, SAR decibels, imagery that is not 8-bit).
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

from geoseg.errors import DeepnessWarning, ExportError
from geoseg.inference.options import PredictOptions
from geoseg.models.config import ModelConfig

__all__ = [
    "DEEPNESS_KEYS",
    "deepness_config",
    "deepness_metadata",
    "deepness_overlap",
    "deepness_resolution",
    "deepness_standardization",
    "export_metadata",
]


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


# The keys QGIS Deepness' model loader reads (deepness/processing/models/model_base.py, 0.6.x) that
# a geoseg segmentation model fills: the plugin takes each as the default of its processing options.
DEEPNESS_KEYS = (
    "model_type",  # "Segmentor": the map processor for per-pixel classes
    "class_names",  # {"0": name, ...}, consecutive from 0
    "resolution",  # cm/px at which the raster is processed (its default: 3 cm/px)
    "tile_size",  # px; the fixed graph's input size wins in the plugin anyway
    "tiles_overlap",  # % of the tile, a whole, even number of pixels (deepness_overlap)
    "seg_thresh",  # 0: argmax over the probabilities (its default 0.5 sends weak pixels to class 0)
    "seg_small_segment",  # 0: no median filter (its default removes small segments)
    "standardization_mean",  # after its x / 255
    "standardization_std",
)


def deepness_overlap(tile: int, overlap: int) -> int:
    """The tile overlap, in whole percent, that QGIS Deepness and geoseg lay alike: the smallest
    share of at least ``overlap`` pixels (and at most 50 %) that is a whole, even number of pixels.

    Deepness takes a whole percentage and turns it into pixels (``int(tile * p / 100 * 2) // 2``),
    then cuts half of them from each side of a tile; a percentage that is an even number of pixels
    means the same grid under any rounding. When no share from ``overlap`` up to 50 % is one, the
    largest below it (0 % always is).

    Args:
        tile: the tile edge in pixels.
        overlap: the model's recommended overlap in pixels.
    """

    def exact(p: int) -> bool:
        return tile * p % 100 == 0 and tile * p // 100 % 2 == 0

    want = math.ceil(100 * overlap / tile)
    above = [p for p in range(want, 51) if exact(p)]
    return above[0] if above else max(p for p in range(min(want, 51)) if exact(p))


def deepness_config(config: ModelConfig, tile_size: int | None = None) -> ModelConfig:
    """The config of a model exported for QGIS Deepness: its fixed tile, the overlap of
    :func:`deepness_overlap` in pixels, and the ``deepness`` tiling, so that ``geoseg predict``
    on the exported file lays its tiles as the plugin does."""
    tile = PredictOptions(tile_size=tile_size).tile_size_for(config)
    overlap = tile * deepness_overlap(tile, config.overlap) // 100
    return config.replace(tile_size=tile, overlap=overlap, tiling="deepness")


def deepness_resolution(config: ModelConfig, resolution_cm: float | None = None) -> float:
    """The ground resolution Deepness processes at, in cm/px: ``resolution_cm``, else the model's
    recorded ground sample distance.

    Raises:
        ExportError: neither is known (Deepness would fall back on 3 cm/px and run the model
            at another scale than it was trained for).
    """
    if resolution_cm is not None:
        if not resolution_cm > 0:
            raise ExportError(
                f"--resolution {resolution_cm:g}: expected a ground resolution in cm/px > 0, "
                "e.g. --resolution 50 for 0.5 m pixels"
            )
        return float(resolution_cm)
    if config.gsd:
        return float(config.gsd) * 100
    raise ExportError(
        "the model records no ground sample distance, and QGIS Deepness needs one (it would "
        "process at its default 3 cm/px, another scale than the model's); pass --resolution CM, "
        "the pixel size of the imagery the model is meant for in cm/px (e.g. --resolution 50 for "
        "0.5 m pixels), or --no-deepness for the dynamic ONNX file alone"
    )


def deepness_metadata(
    config: ModelConfig, *, tile_size: int | None = None, resolution_cm: float | None = None
) -> dict[str, Any]:
    """The metadata keys QGIS Deepness reads (:data:`DEEPNESS_KEYS`), as Python values
    (JSON-encoded on export), so that the plugin's defaults reproduce ``geoseg predict``.

    Args:
        config: the model's config.
        tile_size: the tile edge of the exported graph (default: the config's).
        resolution_cm: ground resolution in cm/px (default: the config's GSD).

    Raises:
        ExportError: the ground resolution is unknown (see :func:`deepness_resolution`).
    """
    tile = PredictOptions(tile_size=tile_size).tile_size_for(config)
    meta: dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": {str(c.id): c.name for c in config.classes},
        "resolution": deepness_resolution(config, resolution_cm),
        "tile_size": tile,
        "tiles_overlap": deepness_overlap(tile, config.overlap),
        "seg_thresh": 0,
        "seg_small_segment": 0,
    }
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
    deepness: bool = True,
) -> dict[str, str]:
    """All metadata properties of an exported model: ``geoseg_config`` (the checkpoint's JSON;
    with ``deepness``, :func:`deepness_config`'s), ``geoseg_output`` (what the graph returns) and,
    with ``deepness``, the Deepness keys, every value JSON text.

    Raises:
        ExportError: ``deepness`` and the ground resolution is unknown.
    """
    meta = (
        deepness_metadata(config, tile_size=tile_size, resolution_cm=resolution_cm)
        if deepness
        else {}
    )
    props = {k: json.dumps(v) for k, v in meta.items()}
    props["geoseg_config"] = (deepness_config(config, tile_size) if deepness else config).to_json()
    props["geoseg_output"] = output
    return props
