"""A :class:`Scene`: one image with its labels and validity, in memory or read on demand. No
torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from affine import Affine

__all__ = ["Scene", "SceneLoader"]

SceneLoader = Callable[[], tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]


@dataclass
class Scene:
    """One image ``(bands, rows, cols)`` with its labels.

    Attributes:
        image: raw pixel values.
        mask: class ids, ``IGNORE_INDEX`` where unlabeled; None for unlabeled imagery.
        valid: True where the image has data; None when every pixel is valid.
        name: where it came from (a path).
        group: what splits keep together (a tile folder, a location).
        transform: pixel to map coordinates (identity when not georeferenced).
        crs: the CRS as WKT/EPSG text, or None.
    """

    image: np.ndarray | None
    mask: np.ndarray | None = None
    valid: np.ndarray | None = None
    name: str = ""
    group: str = ""
    transform: Affine = field(default_factory=Affine.identity)
    crs: str | None = None
    loader: SceneLoader | None = None
    size: tuple[int, int] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        if self.image is None:
            if self.size is None:
                raise ValueError(f"scene {self.name!r} is loaded lazily and needs its size")
            return self.size
        return int(self.image.shape[1]), int(self.image.shape[2])

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(image, mask, valid): held in memory, or read now by ``loader`` (lazy scenes)."""
        if self.image is not None:
            return self.image, self.mask, self.valid
        if self.loader is None:
            raise ValueError(f"scene {self.name!r} has neither pixels nor a loader")
        return self.loader()

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` of the scene in map (or pixel) coordinates."""
        rows, cols = self.shape
        (x0, y0), (x1, y1) = self.transform * (0, 0), self.transform * (cols, rows)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)
