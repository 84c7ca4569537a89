"""Seeded patch samplers over in-memory scenes: random, grid and class-balanced.

A sampler yields :class:`Patch` keys (scene index, row, column, size) that a patch dataset turns
into samples. Nodata and class frequencies are summarised once on a coarse grid of ``cell``-pixel
cells, so drawing a patch, checking its nodata fraction or finding a pixel of a rare class costs
no full-resolution pass. Every sampler draws from ``numpy.random.default_rng(seed + epoch)``:
the same seed gives the same patches; :meth:`set_epoch` moves to the next epoch's draw.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TypedDict, Unpack

import numpy as np
from torch.utils.data import Sampler

from geoseg.classes import MASK_NODATA
from geoseg.errors import DatasetError
from geoseg.io.windows import axis_starts

__all__ = [
    "ClassBalancedSampler",
    "DrawOptions",
    "GridSampler",
    "Patch",
    "PatchIndex",
    "RandomSampler",
]


@dataclass(frozen=True, order=True)
class Patch:
    """A square window of one scene."""

    scene: int
    row: int
    col: int
    size: int


class PatchIndex:
    """Coarse per-scene summaries: invalid-pixel counts and class counts per ``cell``² cell.

    Args:
        shapes: (rows, cols) of every scene.
        masks: per scene, the label mask (``MASK_NODATA`` = unlabeled) or None.
        valid: per scene, a boolean validity mask or None (all valid).
        num_classes: classes to count (ids ``0..num_classes-1``; others are ignored).
        cell: edge of a summary cell in pixels.
    """

    def __init__(
        self,
        shapes: Sequence[tuple[int, int]],
        masks: Sequence[np.ndarray | None] | None = None,
        valid: Sequence[np.ndarray | None] | None = None,
        *,
        num_classes: int = 0,
        cell: int = 16,
    ) -> None:
        self.shapes = [(int(h), int(w)) for h, w in shapes]
        self.cell = cell
        self.num_classes = num_classes
        self._invalid_sat: list[np.ndarray] = []
        self.class_cells: list[list[np.ndarray]] = []  # per scene, per class: counts per cell
        for i, (h, w) in enumerate(self.shapes):
            gh, gw = -(-h // cell), -(-w // cell)
            v = None if valid is None else valid[i]
            m = None if masks is None else masks[i]
            invalid = np.zeros((gh, gw), np.int64)
            if v is not None:
                invalid = _cell_sum(~v.astype(bool), cell)
            if m is not None:
                invalid = invalid + _cell_sum(m == MASK_NODATA, cell)
            self._invalid_sat.append(_sat(invalid))
            counts = []
            if m is not None and num_classes:
                ok = m if v is None else np.where(v.astype(bool), m, MASK_NODATA)
                for c in range(num_classes):
                    counts.append(_cell_sum(ok == c, cell))
            self.class_cells.append(counts)

    def invalid_fraction(self, p: Patch) -> float:
        """Approximate fraction of invalid or unlabeled pixels in ``p`` (cell resolution)."""
        sat = self._invalid_sat[p.scene]
        c = self.cell
        r0, c0 = p.row // c, p.col // c
        r1, c1 = -(-(p.row + p.size) // c), -(-(p.col + p.size) // c)
        r1, c1 = min(r1, sat.shape[0] - 1), min(c1, sat.shape[1] - 1)
        total = sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]
        return float(total) / max((r1 - r0) * (c1 - c0) * c * c, 1)

    def class_frequencies(self) -> np.ndarray:
        """Pixel count per class over all scenes."""
        out = np.zeros(self.num_classes, np.int64)
        for counts in self.class_cells:
            for c, cells in enumerate(counts):
                out[c] += int(cells.sum())
        return out


def _cell_sum(a: np.ndarray, cell: int) -> np.ndarray:
    h, w = a.shape
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((gh * cell, gw * cell), np.int32)
    padded[:h, :w] = a
    return padded.reshape(gh, cell, gw, cell).sum(axis=(1, 3)).astype(np.int64)


def _sat(cells: np.ndarray) -> np.ndarray:
    sat = np.zeros((cells.shape[0] + 1, cells.shape[1] + 1), np.int64)
    sat[1:, 1:] = cells.cumsum(0).cumsum(1)
    return sat


class _Base(Sampler[Patch]):
    def __init__(
        self, index: PatchIndex, size: int, *, seed: int = 0, max_nodata: float = 1.0
    ) -> None:
        self.index, self.size, self.seed, self.max_nodata = (
            index,
            int(size),
            int(seed),
            float(max_nodata),
        )
        self.epoch = 0
        small = [i for i, (h, w) in enumerate(index.shapes) if h < size or w < size]
        if small:
            raise DatasetError(
                f"patch size {size} is larger than scene(s) {small} (smallest is "
                f"{min(min(index.shapes[i]) for i in small)} px); use a smaller patch size"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def _ok(self, p: Patch) -> bool:
        return self.max_nodata >= 1.0 or self.index.invalid_fraction(p) <= self.max_nodata


class DrawOptions(TypedDict, total=False):
    """Options of the samplers that draw patches at random."""

    seed: int
    max_nodata: float  # the largest nodata fraction a patch may hold
    tries: int  # draws per patch before one with more nodata is kept


class _Drawn(_Base):
    """``length`` patches drawn one at a time by :meth:`_draw`; a patch holding more than
    ``max_nodata`` is drawn again, up to ``tries`` times."""

    def __init__(
        self, index: PatchIndex, size: int, length: int, **options: Unpack[DrawOptions]
    ) -> None:
        super().__init__(
            index, size, seed=options.get("seed", 0), max_nodata=options.get("max_nodata", 1.0)
        )
        self.length, self.tries = int(length), int(options.get("tries", 50))

    def __len__(self) -> int:
        return self.length

    def _draw(self, rng: np.random.Generator) -> Patch:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Patch]:
        rng = self._rng()
        for _ in range(self.length):
            for _ in range(self.tries):
                p = self._draw(rng)
                if self._ok(p):
                    break
            yield p


class RandomSampler(_Drawn):
    """``length`` patches at uniformly random positions (scenes weighted by area).

    Options (:class:`DrawOptions`): ``seed``, ``max_nodata``, ``tries``.
    """

    @cached_property
    def _p(self) -> np.ndarray:
        area = [(h - self.size + 1) * (w - self.size + 1) for h, w in self.index.shapes]
        weights = np.array(area, np.float64)
        return weights / weights.sum()

    def _draw(self, rng: np.random.Generator) -> Patch:
        s = int(rng.choice(len(self._p), p=self._p))
        h, w = self.index.shapes[s]
        return Patch(
            s, int(rng.integers(h - self.size + 1)), int(rng.integers(w - self.size + 1)), self.size
        )


class GridSampler(_Base):
    """Every scene covered by patches at ``stride``; the last row/column is moved inside the
    scene."""

    def __init__(
        self, index: PatchIndex, size: int, stride: int | None = None, *, max_nodata: float = 1.0
    ) -> None:
        super().__init__(index, size, max_nodata=max_nodata)
        self.stride = int(stride or size)
        self._patches = [p for p in self._all() if self._ok(p)]

    def _all(self) -> Iterator[Patch]:
        for s, (h, w) in enumerate(self.index.shapes):
            for r in _starts(h, self.size, self.stride):
                for c in _starts(w, self.size, self.stride):
                    yield Patch(s, r, c, self.size)

    def __len__(self) -> int:
        return len(self._patches)

    def __iter__(self) -> Iterator[Patch]:
        return iter(self._patches)


def _starts(n: int, size: int, stride: int) -> list[int]:
    """Patch starts along one axis: the tile plan's own (the last patch shifted inside the scene);
    a stride above the patch size is read as the patch size, so patches never leave gaps."""
    return list(axis_starts(n, size, min(stride, size)))


class ClassBalancedSampler(_Drawn):
    """Patches centred on a pixel of a class drawn with probability ∝ frequency^``power``.

    ``power=1`` samples classes as they occur; ``power=0`` draws every present class equally
    often, which oversamples rare classes the most; 0.5 is a common middle ground.
    """

    def __init__(
        self,
        index: PatchIndex,
        size: int,
        length: int,
        *,
        power: float = 0.5,
        **options: Unpack[DrawOptions],
    ) -> None:
        super().__init__(index, size, length, **options)
        if not index.num_classes:
            raise DatasetError("a class-balanced sampler needs label masks and a class count")
        freq = index.class_frequencies().astype(np.float64)
        present = freq > 0
        if not present.any():
            raise DatasetError("no labelled pixel of any class: cannot balance classes")
        weights = np.where(present, np.power(np.maximum(freq, 1), power), 0.0)
        self.class_p = weights / weights.sum()
        # per class: flat list of (scene, cell) with counts, to draw a cell ∝ its count
        self._cells: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for c in range(index.num_classes):
            scenes, flats, counts = [], [], []
            for s, per_class in enumerate(index.class_cells):
                cells = per_class[c].ravel()
                nz = np.flatnonzero(cells)
                scenes.append(np.full(nz.size, s, np.int32))
                flats.append(nz)
                counts.append(cells[nz])
            cnt = np.concatenate(counts).astype(np.float64)
            self._cells.append((np.concatenate(scenes), np.concatenate(flats), cnt.cumsum()))

    def _draw(self, rng: np.random.Generator) -> Patch:
        cell = self.index.cell
        c = int(rng.choice(self.class_p.size, p=self.class_p))
        scenes, flats, cum = self._cells[c]
        k = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
        s = int(scenes[k])
        h, w = self.index.shapes[s]
        gw = -(-w // cell)
        cy, cx = divmod(int(flats[k]), gw)
        y = cy * cell + int(rng.integers(cell))
        x = cx * cell + int(rng.integers(cell))
        r = int(np.clip(y - self.size // 2, 0, h - self.size))
        q = int(np.clip(x - self.size // 2, 0, w - self.size))
        return Patch(s, r, q, self.size)
