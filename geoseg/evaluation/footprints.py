"""Footprints of one class, for the SpaceNet metric, in bounded memory.

A :class:`PackedMask` keeps one bit per pixel of an image (an 8192² image: 8 MB), filled window
by window as predictions stream in; :meth:`PackedMask.polygons` then traces it in bands of rows
with the vectorizer's polygonizer, merging the pieces cut by band seams, so no full-size byte
array is ever made.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PackedMask"]

BAND_ROWS = 1024  # rows traced at a time


class PackedMask:
    """A boolean ``height x width`` mask stored as bits.

    Args:
        height, width: the image's ``rows, cols``.
    """

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.bits = np.zeros((height, (width + 7) // 8), np.uint8)

    def add(self, row_off: int, col_off: int, block: np.ndarray) -> None:
        """Set the ``(rows, cols)`` boolean ``block`` at ``row_off, col_off``."""
        rows, cols = block.shape
        b0, b1 = col_off // 8, (col_off + cols + 7) // 8
        target = self.bits[row_off : row_off + rows, b0:b1]
        if col_off % 8 == 0 and (cols % 8 == 0 or col_off + cols == self.width):
            target[...] = np.packbits(block, axis=1)
            return
        # a window that shares bytes with its neighbours: merge bit by bit
        unpacked = np.unpackbits(target, axis=1)
        unpacked[:, col_off - 8 * b0 : col_off - 8 * b0 + cols] = block
        target[...] = np.packbits(unpacked, axis=1)

    def rows(self, row_off: int, rows: int) -> np.ndarray:
        """``rows`` rows from ``row_off`` as a ``(rows, width)`` uint8 0/1 array."""
        part = self.bits[row_off : row_off + rows]
        return np.unpackbits(part, axis=1, count=self.width)

    def polygons(self) -> list[Any]:
        """The 4-connected regions of set pixels as shapely polygons in pixel coordinates (x =
        column, y = row), traced in bands of :data:`BAND_ROWS` rows."""
        from geoseg.vectorize.polygonize import polygonize_block
        from geoseg.vectorize.seams import SeamMerger

        merger = SeamMerger(connectivity=4, multipolygons=False)
        out: list[Any] = []
        starts = list(range(0, self.height, BAND_ROWS))
        for k, r0 in enumerate(starts):
            band = self.rows(r0, BAND_ROWS)
            seams = (r0 > 0, r0 + band.shape[0] < self.height, False, False)
            pieces, edges = polygonize_block(
                band, row_off=r0, col_off=0, exclude=frozenset({0}), seams=seams
            )
            on_seam = np.zeros(len(pieces), bool)
            for side, inside in zip(("top", "bottom"), seams[:2], strict=True):
                if inside:
                    on_seam[edges[side][edges[side] >= 0]] = True
            out.extend(pieces.geoms[~on_seam])
            seam_ids = np.flatnonzero(on_seam)
            renumber = np.full(len(pieces) + 1, -1, np.int64)
            renumber[seam_ids] = np.arange(len(seam_ids))
            merger.add((k, 0), pieces.take(seam_ids), {s: renumber[v] for s, v in edges.items()})
            merged = merger.release(k, last=k == len(starts) - 1)
            if merged is not None:
                out.extend(merged.geoms)
        return out
