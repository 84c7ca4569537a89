"""The one place that knows how TorchGeo lays out its samples and queries.

TorchGeo 0.8 (what pip resolves on Python 3.11) returns ``{"crs": CRS, "bounds": (x, y, t)
slices, "image" | "mask": Tensor}``; 0.9 and 0.10 drop ``"crs"``, turn ``"bounds"`` into a tensor
and add ``"transform"`` (the six affine coefficients as a tensor); releases before 0.8 returned a
``BoundingBox``. Everything else in geoseg reads samples through these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from affine import Affine
from rasterio.crs import CRS

__all__ = [
    "TORCHGEO_VERSION",
    "SampleGeo",
    "make_query",
    "sample_geo",
    "sample_image",
    "sample_mask",
]


def _version() -> tuple[int, int]:
    import torchgeo

    major, minor = (
        int("".join(ch for ch in p if ch.isdigit()) or 0)
        for p in torchgeo.__version__.split(".")[:2]
    )
    return major, minor


TORCHGEO_VERSION = _version()


@dataclass(frozen=True)
class SampleGeo:
    """Where a sample lies: CRS (None if unknown), pixel-to-map transform, (minx, miny, maxx,
    maxy)."""

    crs: CRS | None
    transform: Affine
    bounds: tuple[float, float, float, float]


def _numbers(value: Any) -> list[float]:
    if isinstance(value, torch.Tensor):
        return [float(v) for v in value.detach().cpu().reshape(-1)]
    return [float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1)]


def _bounds_of(value: Any) -> tuple[float, float, float, float] | None:
    """(minx, miny, maxx, maxy) from any TorchGeo form of ``"bounds"``."""
    if value is None:
        return None
    if (
        isinstance(value, Sequence)
        and len(value) >= 2
        and all(isinstance(v, slice) for v in value[:2])
    ):
        x, y = value[0], value[1]  # 0.8: (x, y, t) slices
        return float(x.start), float(y.start), float(x.stop), float(y.stop)
    if hasattr(value, "minx") and hasattr(
        value, "maxy"
    ):  # < 0.8: BoundingBox(minx, maxx, miny, maxy, mint, maxt)
        return float(value.minx), float(value.miny), float(value.maxx), float(value.maxy)
    nums = _numbers(value)
    if len(nums) >= 4:  # 0.9+: tensor [xmin, xmax, ymin, ymax, (tmin, tmax)]
        return nums[0], nums[2], nums[1], nums[3]
    return None


def _crs_of(value: Any) -> CRS | None:
    if value is None:
        return None
    if isinstance(value, CRS):
        return value
    if isinstance(value, torch.Tensor | np.ndarray | int):  # an EPSG code as a tensor
        code = int(np.asarray(value).reshape(-1)[0])
        return CRS.from_epsg(code) if code > 0 else None
    return CRS.from_user_input(value)


def sample_image(sample: Mapping[str, Any]) -> torch.Tensor:
    """The ``(bands, rows, cols)`` image of a sample."""
    if "image" not in sample:
        raise KeyError(f"sample has no 'image' (keys: {sorted(sample)}); is this an image dataset?")
    return sample["image"]


def sample_mask(sample: Mapping[str, Any]) -> torch.Tensor:
    """The ``(rows, cols)`` label mask of a sample (a leading band axis of 1 is dropped)."""
    mask = sample["mask"]
    return mask[0] if mask.ndim == 3 and mask.shape[0] == 1 else mask


def sample_geo(sample: Mapping[str, Any], dataset: Any = None) -> SampleGeo:
    """CRS, transform and bounds of a sample, whatever TorchGeo release made it.

    The CRS comes from the sample (0.8) or, when the sample has none (0.9+), from ``dataset.crs``.
    """
    crs = _crs_of(sample.get("crs")) or (
        _crs_of(getattr(dataset, "crs", None)) if dataset is not None else None
    )
    arr = sample.get("image", sample.get("mask"))
    rows, cols = (int(arr.shape[-2]), int(arr.shape[-1])) if arr is not None else (0, 0)
    bounds = _bounds_of(sample.get("bounds"))
    if "transform" in sample and sample["transform"] is not None:
        t = sample["transform"]
        transform = t if isinstance(t, Affine) else Affine(*_numbers(t)[:6])
        if bounds is None:
            (x0, y0), (x1, y1) = transform * (0, 0), transform * (cols, rows)
            bounds = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    elif bounds is not None and rows and cols:
        minx, miny, maxx, maxy = bounds
        transform = Affine((maxx - minx) / cols, 0.0, minx, 0.0, -(maxy - miny) / rows, maxy)
    else:
        raise KeyError(f"sample has neither 'transform' nor 'bounds' (keys: {sorted(sample)})")
    return SampleGeo(crs, transform, bounds)


def make_query(
    minx: float, miny: float, maxx: float, maxy: float, res: float | tuple[float, float]
) -> Any:
    """A query for ``dataset[...]`` in the form the installed TorchGeo expects."""
    rx, ry = (res, res) if isinstance(res, int | float) else res
    if TORCHGEO_VERSION >= (0, 8):
        return (slice(minx, maxx, rx), slice(miny, maxy, ry))  # time: the dataset's whole span
    from torchgeo.datasets import BoundingBox

    return BoundingBox(minx, maxx, miny, maxy, 0, np.iinfo(np.int64).max)  # type: ignore[arg-type]
