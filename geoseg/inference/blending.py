"""Blend-weight kernels, by name or callable: how much each pixel of a tile counts in the mosaic.

Every kernel is strictly positive everywhere (so a pixel that only a tile's edge covers, at the
raster border, still gets a defined value) and returns a ``(tile_size, tile_size)`` float32 array.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from geoseg.errors import TilingError

__all__ = ["BLEND_KERNELS", "blend_weights", "register_blend"]

Kernel = Callable[[int, int], np.ndarray]
_FLOOR = 1e-3  # relative floor: edges count little, never zero


def _axis(n: int) -> np.ndarray:
    """Pixel-centre positions in (-1, 1) along one axis."""
    return (np.arange(n, dtype=np.float64) + 0.5) / n * 2 - 1


def gaussian(tile: int, overlap: int) -> np.ndarray:
    """Gaussian centred on the tile, sigma = tile / 6 (edges weigh about 1 % of the centre)."""
    x = _axis(tile)
    g = np.exp(-0.5 * (x / (1 / 3)) ** 2)
    return np.outer(g, g)


def cosine(tile: int, overlap: int) -> np.ndarray:
    """Raised cosine (Hann) window: smooth, about zero at the edges."""
    x = _axis(tile)
    c = 0.5 * (1 + np.cos(np.pi * x))
    return np.outer(c, c)


def linear(tile: int, overlap: int) -> np.ndarray:
    """Pyramid: weight falls linearly from the centre to the nearest edge."""
    x = 1 - np.abs(_axis(tile))
    return np.minimum.outer(x, x)


def mean(tile: int, overlap: int) -> np.ndarray:
    """Uniform weights: a plain average of overlapping tiles."""
    return np.ones((tile, tile))


def crop(tile: int, overlap: int) -> np.ndarray:
    """Keep the tile centre: full weight inside a margin of ``overlap / 2``, a trace outside it.

    Within the margin the weight falls geometrically to 1e-6 at the edge, and the kernel is
    separable: where only margins reach a pixel (along the raster border, or where the last tile
    was shifted inside the raster), the tile in which the pixel lies deepest still wins by orders
    of magnitude.
    """
    margin = overlap // 2
    depth = np.minimum(np.arange(tile), np.arange(tile)[::-1])  # pixels to the nearest edge
    profile = 1e-6 ** (
        np.maximum(margin - depth, 0) / max(margin, 1)
    )  # 1 from `margin` pixels inward
    return np.outer(profile, profile)


def core(tile: int, overlap: int) -> np.ndarray:
    """Keep the tile's core, as QGIS Deepness does: full weight from ``overlap // 2`` pixels
    inward, a 1e-12 trace in that margin (too small to move a float32 sum).

    On a regular grid with an even overlap the cores of neighbouring tiles meet exactly, so each
    pixel takes the one tile whose core holds it; the trace only decides pixels that no core
    reaches (the raster's outer margin, which one tile covers).
    """
    margin = overlap // 2
    depth = np.minimum(np.arange(tile), np.arange(tile)[::-1])
    profile = np.where(depth >= margin, 1.0, 1e-12)
    return np.outer(profile, profile)


BLEND_KERNELS: dict[str, Kernel] = {
    "gaussian": gaussian,
    "cosine": cosine,
    "linear": linear,
    "mean": mean,
    "crop": crop,
    "core": core,
}


def register_blend(name: str, kernel: Kernel) -> None:
    """Add a kernel ``kernel(tile_size, overlap) -> (tile, tile) array``."""
    BLEND_KERNELS[name] = kernel


def blend_weights(blend: str | Kernel, tile_size: int, overlap: int) -> np.ndarray:
    """The ``(tile_size, tile_size)`` float32 weights of a kernel, normalised to max 1 and > 0.

    Raises:
        TilingError: unknown kernel name, or a callable returning the wrong shape.
    """
    if callable(blend):
        kernel = blend
    elif blend in BLEND_KERNELS:
        kernel = BLEND_KERNELS[blend]
    else:
        raise TilingError(
            f"unknown blend {blend!r}; expected one of {', '.join(sorted(BLEND_KERNELS))} or a "
            "callable"
        )
    w = np.asarray(kernel(tile_size, overlap), dtype=np.float64)
    if w.shape != (tile_size, tile_size) or not np.isfinite(w).all() or w.max() <= 0:
        raise TilingError(
            f"blend kernel must return finite ({tile_size}, {tile_size}) weights with a positive "
            f"maximum, got shape {w.shape}"
        )
    w = w / w.max()
    if kernel in (crop, core):  # their trace weights are the point: no floor
        return w.astype(np.float32)
    return np.maximum(w, _FLOOR).astype(np.float32)
