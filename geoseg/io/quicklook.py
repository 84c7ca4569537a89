"""A PNG quicklook: the image, its class mask laid over it, and a legend of class names.

The overlay and the legend use the class table's own colours (the model's, or the mask's), the
same colours the mask COG, its QGIS style and the polygons carry. With ground truth, the truth is
drawn beside the prediction on the same image.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.enums import Resampling

from geoseg.classes import IGNORE_INDEX, MASK_NODATA, ClassTable, classes_of
from geoseg.io.atomic import atomic_output

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

__all__ = [
    "NearestSample",
    "display_colours",
    "render_quicklook",
    "write_comparison",
    "write_quicklook",
]

RGB = tuple[int, int, int]


def display_colours(table: ClassTable) -> dict[int, RGB]:
    """The overlay and legend colour of each class of ``table``: its own colour."""
    return {c.id: (int(c.color[0]), int(c.color[1]), int(c.color[2])) for c in table}


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


def render_quicklook(
    base: np.ndarray,
    panels: Sequence[tuple[str, np.ndarray]],
    table: ClassTable,
    *,
    alpha: float = 0.45,
    caption: str = "",
    legend: bool = True,
) -> PILImage:
    """Side-by-side panels of ``base`` (rows, cols, 3 uint8) with class-id arrays laid over it.

    Each panel is ``(title, ids)``; ids outside the table (nodata 255) are left unpainted. Below:
    a legend of the classes present in any panel, in their table colours (unless ``legend`` is
    false: a page that draws its own), and ``caption``.
    """
    from PIL import Image, ImageDraw

    colours = np.zeros((256, 3), np.float32)
    shown = display_colours(table)
    for cid, rgb in shown.items():
        colours[cid] = rgb
    known = np.zeros(256, bool)
    known[list(shown)] = True
    rows, cols = base.shape[:2]
    gap, pad, row_h = 8, 6, 18
    titled = len(panels) > 1
    top = row_h + pad if titled else 0
    present = [c for c in table if any((ids == c.id).any() for _, ids in panels)] or list(table)
    if not legend:
        present = []
    legend_rows = (len(present) + 2) // 3 + (1 if caption else 0)
    width = cols * len(panels) + gap * (len(panels) - 1)
    below = pad * 2 + row_h * legend_rows if legend_rows else 0
    canvas = Image.new("RGB", (width, top + rows + below), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (title, ids) in enumerate(panels):
        paint = known[ids][..., None]
        blended = np.where(paint, base * (1 - alpha) + colours[ids] * alpha, base).astype(np.uint8)
        x = k * (cols + gap)
        canvas.paste(Image.fromarray(blended), (x, top))
        if titled:
            draw.text((x + pad, pad // 2), title, fill="black")
    col_w = max(width // 3, 1)
    for k, c in enumerate(present):
        x, y = pad + (k % 3) * col_w, top + rows + pad + (k // 3) * row_h
        draw.rectangle([x, y + 2, x + 12, y + 14], fill=shown[c.id], outline="black")
        draw.text((x + 18, y + 2), c.name, fill="black")
    if caption:
        draw.text((pad, top + rows + pad + (legend_rows - 1) * row_h + 2), caption, fill="black")
    return canvas


def _read_base(image: str | os.PathLike[str], shape: tuple[int, int]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(image) as src:
            data = src.read(out_shape=(src.count, *shape), resampling=Resampling.average)
            valid = src.dataset_mask(out_shape=shape) > 0
    return _display(data, valid).astype(np.float32)


def _shrink(shape: tuple[int, int], max_size: int) -> tuple[int, int]:
    scale = max(shape) / max_size
    return max(1, round(shape[0] / max(scale, 1))), max(1, round(shape[1] / max(scale, 1)))


def _centres(size: int, small: int) -> np.ndarray:
    """The pixel of a ``size``-long axis under each of ``small`` evenly spaced centres."""
    return ((np.arange(small) + 0.5) * size / small).astype(int)


def _nearest(ids: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rows, cols = _centres(ids.shape[0], shape[0]), _centres(ids.shape[1], shape[1])
    return ids[rows[:, None], cols[None, :]]


class NearestSample:
    """A nearest-neighbour thumbnail of a ``(rows, cols)`` raster filled window by window: the
    pixels :func:`write_comparison` would pick from the whole array, without holding it.

    Args:
        shape: ``(rows, cols)`` of the whole raster.
        max_size: the thumbnail's longer edge (as :func:`write_comparison`'s ``max_size``).
        fill: value of pixels no window has covered.

    Attributes:
        data: the ``(rows, cols)`` int64 thumbnail, ready for :func:`write_comparison`.
    """

    def __init__(self, shape: tuple[int, int], max_size: int = 768, fill: int = MASK_NODATA):
        small = _shrink(shape, max_size)
        self.rows, self.cols = _centres(shape[0], small[0]), _centres(shape[1], small[1])
        self.data = np.full(small, fill, np.int64)

    def add(self, row_off: int, col_off: int, block: np.ndarray) -> None:
        """Take the thumbnail's pixels that fall in ``block`` (at ``row_off, col_off``)."""
        r = np.flatnonzero((self.rows >= row_off) & (self.rows < row_off + block.shape[0]))
        c = np.flatnonzero((self.cols >= col_off) & (self.cols < col_off + block.shape[1]))
        if r.size and c.size:
            self.data[np.ix_(r, c)] = block[np.ix_(self.rows[r] - row_off, self.cols[c] - col_off)]


def _save(canvas: PILImage, dst: str | os.PathLike[str]) -> Path:
    out = Path(dst)
    with atomic_output(out) as tmp:
        canvas.save(tmp, format="PNG")
    return out


def write_quicklook(
    image: str | os.PathLike[str],
    mask: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    classes: ClassTable | None = None,
    max_size: int = 1024,
    alpha: float = 0.45,
    truth: str | os.PathLike[str] | np.ndarray | None = None,
    caption: str = "",
    legend: bool = True,
) -> Path:
    """Write ``dst`` (PNG): ``image`` shrunk to at most ``max_size`` px, classes overlaid, a legend
    below (unless ``legend`` is false).

    Class names and colours come from ``classes`` or from the mask's own class table. With
    ``truth`` (a label raster on the mask's grid, or its class ids), the truth is drawn beside the
    prediction.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(mask) as m:
            shape = _shrink((m.height, m.width), max_size)
            ids = m.read(1, out_shape=shape, resampling=Resampling.nearest)
            table = (
                classes
                or classes_of(m)
                or ClassTable.default(int(ids[ids != MASK_NODATA].max(initial=0)) + 1)
            )
    panels: list[tuple[str, np.ndarray]] = [("prediction", ids)]
    if truth is not None:
        if isinstance(truth, np.ndarray):
            panels.append(("ground truth", _nearest(truth, shape)))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                with rasterio.open(truth) as t:
                    panels.append(
                        ("ground truth", t.read(1, out_shape=shape, resampling=Resampling.nearest))
                    )
    return _save(
        render_quicklook(
            _read_base(image, shape), panels, table, alpha=alpha, caption=caption, legend=legend
        ),
        dst,
    )


def write_comparison(
    image: str | os.PathLike[str],
    predicted: np.ndarray,
    truth: np.ndarray,
    table: ClassTable,
    dst: str | os.PathLike[str],
    *,
    max_size: int = 768,
    caption: str = "",
) -> Path:
    """Write ``dst`` (PNG): ``image`` with its ground truth beside the prediction (both class-id
    arrays on the image grid; ``IGNORE_INDEX``/nodata unpainted), a legend and ``caption`` below.

    The arrays may be whole, or already the thumbnails of :class:`NearestSample` (same
    ``max_size``): the picture is the same.
    """
    shape = _shrink(predicted.shape[-2:], max_size)
    pred = _nearest(predicted, shape).astype(np.int64)
    true = _nearest(truth, shape).astype(np.int64)
    pred[(pred < 0) | (pred > 255)] = MASK_NODATA
    true[(true < 0) | (true > 255) | (true == IGNORE_INDEX)] = MASK_NODATA
    panels = [("ground truth", true), ("prediction", pred)]
    return _save(render_quicklook(_read_base(image, shape), panels, table, caption=caption), dst)
