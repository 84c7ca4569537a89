"""Nodata-aware sampling over TorchGeo datasets: wrap any TorchGeo sampler, drop empty chips.

Each file's validity (its nodata value, NaN or internal mask) is read once at ``1/cell`` of its
resolution (overviews make that cheap); a chip query is kept when the valid share of its area,
over every file it touches, is at least ``1 - max_nodata``. Random samplers are drawn again until
``length`` chips pass (pass TorchGeo's sampler a seeded ``torch.Generator`` for reproducible draws).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from affine import Affine
from torch.utils.data import Sampler

from geoseg.errors import DatasetError
from geoseg.io.open import open_raster
from geoseg.io.reader import coarse_validity

__all__ = ["NodataFilter", "ValidityIndex"]


@dataclass(frozen=True)
class _Coarse:
    valid: np.ndarray  # fraction of valid pixels per coarse cell, float32
    transform: Affine
    bounds: tuple[float, float, float, float]


class ValidityIndex:
    """Coarse validity grids of raster files, in the dataset's CRS (files must share it)."""

    def __init__(self, paths: Sequence[str], *, cell: int = 16) -> None:
        self.grids: list[_Coarse] = []
        for p in paths:
            with open_raster(p) as src:
                mask, t = coarse_validity(src, cell)
                b = src.bounds
                self.grids.append(_Coarse(mask, t, (b.left, b.bottom, b.right, b.top)))

    def valid_fraction(self, minx: float, miny: float, maxx: float, maxy: float) -> float:
        """Share of the box covered by valid pixels of any file (cell resolution)."""
        area = max((maxx - minx) * (maxy - miny), 1e-12)
        covered = 0.0
        for g in self.grids:
            left, b, r, t = g.bounds
            if r <= minx or left >= maxx or t <= miny or b >= maxy:
                continue
            inv = ~g.transform
            c0, r0 = inv * (max(minx, left), min(maxy, t))
            c1, r1 = inv * (min(maxx, r), max(miny, b))
            c0, c1 = sorted((int(np.floor(c0)), int(np.ceil(c1))))
            r0, r1 = sorted((int(np.floor(r0)), int(np.ceil(r1))))
            block = g.valid[max(r0, 0) : max(r1, r0 + 1), max(c0, 0) : max(c1, c0 + 1)]
            if block.size:
                overlap = (min(maxx, r) - max(minx, left)) * (min(maxy, t) - max(miny, b))
                covered = max(covered, float(block.mean()) * overlap)
        return min(covered / area, 1.0)


class NodataFilter(Sampler[Any]):
    """Yields the queries of ``sampler`` whose chips hold at most ``max_nodata`` invalid pixels.

    Args:
        sampler: a TorchGeo sampler (``RandomGeoSampler``, ``GridGeoSampler``...).
        index: validity of the files the dataset reads.
        max_nodata: largest accepted fraction of invalid pixels per chip.
        length: chips to yield; for random samplers the inner sampler is drawn again until this
            many pass (default: its own length). None for grid samplers: only filter.
        tries: give up after ``tries * length`` rejected draws.
    """

    def __init__(
        self,
        sampler: Sampler[Any],
        index: ValidityIndex,
        max_nodata: float = 0.5,
        *,
        length: int | None = None,
        tries: int = 20,
    ) -> None:
        if not 0 <= max_nodata <= 1:
            raise DatasetError(f"max_nodata must be a fraction in [0, 1], got {max_nodata}")
        self.sampler, self.index, self.max_nodata, self.length, self.tries = (
            sampler,
            index,
            max_nodata,
            length,
            tries,
        )

    def _ok(self, query: Any) -> bool:
        x, y = query[0], query[1]
        if isinstance(x, slice):
            box = (x.start, y.start, x.stop, y.stop)
        else:  # a BoundingBox from older TorchGeo releases
            box = (query.minx, query.miny, query.maxx, query.maxy)
        return 1.0 - self.index.valid_fraction(*box) <= self.max_nodata + 1e-9

    def __len__(self) -> int:
        return self.length if self.length is not None else len(cast(Sized, self.sampler))

    def __iter__(self) -> Iterator[Any]:
        if self.length is None:
            yield from (q for q in self.sampler if self._ok(q))
            return
        given = rejected = 0
        while given < self.length:
            drew = False
            for q in self.sampler:
                drew = True
                if self._ok(q):
                    yield q
                    given += 1
                    if given == self.length:
                        return
                else:
                    rejected += 1
                    if rejected > self.tries * self.length:
                        raise DatasetError(
                            f"fewer than {self.length} chips with at most {self.max_nodata:.0%} "
                            f"nodata found after {rejected} draws; raise max_nodata or use smaller "
                            "chips"
                        )
            if not drew:
                return
