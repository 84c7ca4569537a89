"""PNG pictures of float rasters: a heat-map over its image, and a grid of feature maps. No
torch."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from geoseg.io.quicklook import _display

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["read_display", "save_figure", "write_activation_grid", "write_heat_overlay"]


def _shape(height: int, width: int, max_size: int) -> tuple[int, int]:
    scale = max(height, width) / max_size
    return max(1, round(height / max(scale, 1))), max(1, round(width / max(scale, 1)))


def read_display(
    image: str | os.PathLike[str],
    window: Window | None = None,
    *,
    bands: tuple[int, ...] | tuple[str, ...] | None = None,
    max_size: int = 1024,
) -> np.ndarray:
    """An 8-bit RGB ``(rows, cols, 3)`` view of ``image`` (or a window of it), at most ``max_size``
    px."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(image) as src:
            win = window or Window(0, 0, src.width, src.height)
            shape = _shape(int(win.height), int(win.width), max_size)
            idx: list[int] = list(range(1, min(src.count, 3) + 1))
            if bands and isinstance(bands[0], str):
                from geoseg.io.reader import bands_named

                idx = bands_named(src, [str(b) for b in bands], str(image))
            elif bands:
                idx = [int(b) for b in bands]
            data = src.read(
                idx, window=win, out_shape=(len(idx), *shape), resampling=Resampling.average
            )
            valid = src.dataset_mask(window=win, out_shape=shape) > 0
    return _display(data, valid)


def save_figure(fig: Figure, dst: str | os.PathLike[str]) -> Path:
    """Save a matplotlib figure as PNG through :func:`~geoseg.io.atomic.atomic_output` (never a
    partial file)."""
    from geoseg.io.atomic import atomic_output

    with atomic_output(dst) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return Path(dst)


def write_heat_overlay(
    image: str | os.PathLike[str],
    heat: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    window: Window | None = None,
    bands: tuple[int, ...] | tuple[str, ...] | None = None,
    title: str = "",
    max_size: int = 1024,
    alpha: float = 0.5,
) -> Path:
    """Write ``dst`` (PNG): the image beside the image with the heat-map (band 1 of ``heat``) on
    top.

    The colour scale runs from 0 to the 99th percentile of the heat-map's finite values.
    """
    from matplotlib.figure import Figure  # no pyplot: never switch the caller's backend

    with rasterio.open(heat) as h:
        shape = _shape(h.height, h.width, max_size)
        values = h.read(1, out_shape=shape, resampling=Resampling.average, masked=False).astype(
            np.float32
        )
    base = read_display(image, window, bands=bands, max_size=max_size)
    if base.shape[:2] != values.shape:
        from PIL import Image

        base = np.asarray(Image.fromarray(base).resize(values.shape[::-1]))
    finite = np.isfinite(values)
    top = float(np.percentile(values[finite], 99)) if finite.any() else 1.0
    top = top if top > 0 else 1.0
    fig = Figure(figsize=(11, 5.4 * values.shape[0] / values.shape[1] + 0.6))
    axes = fig.subplots(1, 2)
    axes[0].imshow(base)
    axes[0].set_title("image")
    axes[1].imshow(base)
    faint = ~finite | (
        np.nan_to_num(values) < 0.02 * top
    )  # leave the image visible where nothing is attributed
    shown = axes[1].imshow(
        np.ma.masked_where(faint, values), cmap="inferno", vmin=0, vmax=top, alpha=alpha
    )
    axes[1].set_title(title or "heat-map")
    for ax in axes:
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.02, label="class-score contribution")
    return save_figure(fig, dst)


def write_activation_grid(
    maps: str | os.PathLike[str], dst: str | os.PathLike[str], *, title: str = "", cell: int = 160
) -> Path:
    """Write ``dst`` (PNG): every band of ``maps`` as a small grey image, each stretched on its
    own."""
    from matplotlib.figure import Figure  # no pyplot: never switch the caller's backend

    with rasterio.open(maps) as src:
        shape = _shape(src.height, src.width, cell)
        data = src.read(out_shape=(src.count, *shape), resampling=Resampling.average).astype(
            np.float32
        )
        names = src.descriptions
    n = data.shape[0]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(1.6 * cols, 1.6 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            band = data[i]
            finite = np.isfinite(band)
            lo, hi = np.percentile(band[finite], (1, 99)) if finite.any() else (0.0, 1.0)
            ax.imshow(band, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1e-6)
            ax.set_title(str(names[i] or i).split("[")[-1].rstrip("]"), fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, dst)
