"""A PNG quicklook: the image, its class mask laid over it, and a legend of class names."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from geoseg.classes import MASK_NODATA, ClassTable, classes_of
from geoseg.io.atomic import atomic_output

__all__ = ["write_quicklook"]


def _display(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(bands, rows, cols)`` to 8-bit RGB: 8-bit data as is, anything else stretched 2-98 %."""
    rgb = data[:3] if data.shape[0] >= 3 else np.repeat(data[:1], 3, axis=0)
    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(rgb.transpose(1, 2, 0))
    out = np.zeros((*rgb.shape[1:], 3), np.uint8)
    for b in range(3):
        band = rgb[b].astype(np.float64)
        ok = valid & np.isfinite(band)
        if not ok.any():
            continue
        lo, hi = np.percentile(band[ok], (2, 98))
        out[..., b] = np.clip((band - lo) / max(hi - lo, 1e-12) * 255, 0, 255).astype(np.uint8)
    return out


def write_quicklook(image: str | os.PathLike[str], mask: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                    classes: ClassTable | None = None, max_size: int = 1024, alpha: float = 0.45) -> Path:
    """Write ``dst`` (PNG): ``image`` shrunk to at most ``max_size`` px, classes overlaid, a legend below.

    Class names and colours come from ``classes`` or from the mask's own class table.
    """
    from PIL import Image, ImageDraw

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(mask) as m:
            scale = max(m.width, m.height) / max_size
            shape = (max(1, round(m.height / max(scale, 1))), max(1, round(m.width / max(scale, 1))))
            ids = m.read(1, out_shape=shape, resampling=Resampling.nearest)
            table = classes or classes_of(m) or ClassTable.default(int(ids[ids != MASK_NODATA].max(initial=0)) + 1)
        with rasterio.open(image) as src:
            data = src.read(out_shape=(src.count, *shape), resampling=Resampling.average)
            valid = src.dataset_mask(out_shape=shape) > 0
    base = _display(data, valid).astype(np.float32)
    colours = np.zeros((256, 3), np.float32)
    for c in table:
        colours[c.id] = c.color
    over = colours[ids]
    paint = (ids != MASK_NODATA)[..., None]
    blended = np.where(paint, base * (1 - alpha) + over * alpha, base).astype(np.uint8)
    present = [c for c in table if (ids == c.id).any()] or list(table)
    row_h, pad = 18, 6
    legend_h = pad * 2 + row_h * ((len(present) + 2) // 3)
    canvas = Image.new("RGB", (shape[1], shape[0] + legend_h), "white")
    canvas.paste(Image.fromarray(blended), (0, 0))
    draw = ImageDraw.Draw(canvas)
    col_w = max(shape[1] // 3, 1)
    for k, c in enumerate(present):
        x, y = pad + (k % 3) * col_w, shape[0] + pad + (k // 3) * row_h
        draw.rectangle([x, y + 2, x + 12, y + 14], fill=c.color, outline="black")
        draw.text((x + 18, y + 2), c.name, fill="black")
    out = Path(dst)
    with atomic_output(out) as tmp:
        canvas.save(tmp, format="PNG")
    return out
