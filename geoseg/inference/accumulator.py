"""A band of rows in which overlapping tile predictions are blended: pure numpy, bounded memory.

Tiles arrive in raster order. The accumulator holds only rows that a later tile may still touch
(at most one tile high) for one region of columns; rows that no later tile touches are released
as finished output. Predicting any rectangular region on its own gives the same values as the
whole raster, because every pixel sums exactly the same tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

__all__ = ["FinishedRows", "RowAccumulator"]


@dataclass
class FinishedRows:
    """Finished rows of a region: weighted probability sums, weight sums and validity.

    Attributes:
        window: where these rows sit in the raster.
        probs: ``(classes, rows, cols)`` sums of ``weight * probability``.
        weight: ``(rows, cols)`` sums of weights (0 where no tile ran).
        valid: ``(rows, cols)`` True where the input held data.
    """

    window: Window
    probs: np.ndarray
    weight: np.ndarray
    valid: np.ndarray


class RowAccumulator:
    """Blend tiles into the region ``region`` (a window of the raster), ``capacity`` rows at a time.

    Args:
        classes: number of classes.
        region: the raster window to produce (rows and columns).
        capacity: rows kept in memory; must be at least one tile high.
    """

    def __init__(self, classes: int, region: Window, capacity: int) -> None:
        self.region = region
        self.r0, self.c0 = int(region.row_off), int(region.col_off)
        self.r1, self.c1 = self.r0 + int(region.height), self.c0 + int(region.width)
        self.capacity = min(capacity, self.r1 - self.r0)
        width = self.c1 - self.c0
        self.top = self.r0
        self.probs = np.zeros((classes, self.capacity, width), dtype=np.float32)
        self.weight = np.zeros((self.capacity, width), dtype=np.float32)
        self.valid = np.zeros((self.capacity, width), dtype=bool)
        self._released = 0  # rows handed out by the last release, dropped on the next call

    @property
    def nbytes(self) -> int:
        return self.probs.nbytes + self.weight.nbytes + self.valid.nbytes

    def add(
        self,
        weighted: np.ndarray,
        weight: np.ndarray,
        valid: np.ndarray,
        row_off: int,
        col_off: int,
    ) -> None:
        """Add one tile: ``weighted`` is ``(classes, h, w)`` probabilities already multiplied by
        ``weight`` (``(h, w)``); ``valid`` is the tile's input validity."""
        self._compact()
        h, w = weight.shape
        ra, rb = max(row_off, self.top), min(row_off + h, self.r1, self.top + self.capacity)
        ca, cb = max(col_off, self.c0), min(col_off + w, self.c1)
        if ra >= rb or ca >= cb:
            return
        if row_off + h > self.top + self.capacity and row_off + h <= self.r1:
            raise ValueError(
                f"tile rows {row_off}..{row_off + h} exceed the accumulator (top {self.top}, "
                f"{self.capacity} rows)"
            )
        src = (slice(ra - row_off, rb - row_off), slice(ca - col_off, cb - col_off))
        dst = (slice(ra - self.top, rb - self.top), slice(ca - self.c0, cb - self.c0))
        self.valid[dst] |= valid[src]
        self.probs[(slice(None), *dst)] += weighted[(slice(None), *src)]
        self.weight[dst] += weight[src]

    def release(self, until: int) -> FinishedRows | None:
        """Hand out rows ``[top, until)`` (clipped to the region).

        The arrays are views into the accumulator, not copies (a copy of a wide row band would
        double its memory): they stay valid until the next :meth:`add` or :meth:`release`, so
        consume them (or copy them) before that.
        """
        self._compact()
        until = min(until, self.r1)
        n = until - self.top
        if n <= 0:
            return None
        self._released = n
        return FinishedRows(
            Window(self.c0, self.top, self.c1 - self.c0, n),
            self.probs[:, :n],
            self.weight[:n],
            self.valid[:n],
        )

    def _compact(self) -> None:
        """Drop the rows handed out last, moving the rest to the top and zeroing below."""
        n, self._released = self._released, 0
        if n == 0:
            return
        keep = self.capacity - n
        for plane in (*self.probs, self.weight, self.valid):
            # chunks no taller than n never overlap, so numpy moves them without a temporary copy
            for i in range(0, max(keep, 0), n):
                m = min(n, keep - i)
                plane[i : i + m] = plane[i + n : i + n + m]
            plane[max(keep, 0) :] = 0
        self.top += n
