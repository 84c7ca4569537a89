"""Merging the pieces of regions that block seams cut apart, one row of blocks at a time.

Which pieces join is read off the pixels on both sides of each seam (the same class face to face,
or corner to corner with 8-connectivity), never from geometry. Pieces carry a vertex at every
pixel corner along seams, so joined pieces form an exact coverage and merge without overlay
noding. Only pieces on seams wait here; a region is released as soon as no block still to come
can touch it, so memory holds one row of blocks' seam pieces (plus regions that keep going).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from geoseg.vectorize.polygonize import Edges, Pieces

__all__ = ["SeamMerger", "drop_collinear"]


def drop_collinear(geoms: np.ndarray) -> np.ndarray:
    """Remove vertices that lie on the straight line through their neighbours (vectorised; the
    shapes do not change, so validity is kept)."""
    if not len(geoms):
        return geoms
    try:
        kind, coords, offsets = shapely.to_ragged_array(geoms)
    except ValueError:  # mixed geometry types: leave them (the extra vertices are harmless)
        return geoms
    ring_off = offsets[0]
    n = len(coords)
    # ring of every vertex, and its neighbours within the closed ring (first == last)
    ring = np.repeat(np.arange(len(ring_off) - 1), np.diff(ring_off))
    first, last = ring_off[:-1][ring], ring_off[1:][ring] - 1
    idx = np.arange(n)
    prev = np.where(idx == first, last - 1, idx - 1)
    nxt = np.where(idx == last, first + 1, idx + 1)
    a, b, c = coords[prev], coords, coords[nxt]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - b[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - b[:, 0])
    drop = (cross == 0) & (idx != last)
    # keep rings closed: a dropped first vertex makes the ring start at the next kept one
    keep = ~drop
    keep[ring_off[1:] - 1] = False
    kept = np.flatnonzero(keep)
    counts = np.bincount(ring[kept], minlength=len(ring_off) - 1)
    if (counts < 3).any():  # a degenerate ring: leave the geometries as they are
        return geoms
    first_kept = kept[np.concatenate(([0], np.cumsum(counts)[:-1]))]
    out_idx = np.concatenate([kept, first_kept])
    order = np.argsort(np.concatenate([ring[kept], np.arange(len(counts))]), kind="stable")
    new_coords = coords[out_idx[order]]
    new_ring_off = np.concatenate(([0], np.cumsum(counts + 1)))
    return shapely.from_ragged_array(kind, new_coords, (new_ring_off, *offsets[1:]))


class SeamMerger:
    """Collects seam pieces block by block (raster order); :meth:`release` hands out regions."""

    def __init__(self, *, connectivity: int, multipolygons: bool) -> None:
        self.diagonal = connectivity == 8
        self.multipolygons = multipolygons
        self.parent: list[int] = []
        self.geoms: list[Any] = []
        self.values = np.empty(0, np.int64)
        self.pixels: list[int] = []
        self.conf: list[float] | None = None
        self.open: set[int] = set()
        self.edges: dict[tuple[int, int], Edges] = {}

    def _find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def _join(self, a: np.ndarray, b: np.ndarray) -> None:
        """Union the pieces facing each other in edge arrays ``a`` and ``b`` (global ids, -1
        none)."""
        offsets = (-1, 0, 1) if self.diagonal else (0,)
        values = self.values
        for k in offsets:
            if k < 0:
                x, y = a[-k:], b[: len(b) + k]
            elif k > 0:
                x, y = a[: len(a) - k], b[k:]
            else:
                x, y = a, b
            ok = (x >= 0) & (y >= 0)
            x, y = x[ok], y[ok]
            ok = values[x] == values[y]
            if not ok.any():
                continue
            for p, q in np.unique(np.stack([x[ok], y[ok]], axis=1), axis=0):
                rp, rq = self._find(int(p)), self._find(int(q))
                if rp != rq:
                    self.parent[max(rp, rq)] = min(rp, rq)

    def add(self, block: tuple[int, int], pieces: Pieces, edges: Edges) -> None:
        """Add a block's seam pieces; ``edges`` index them along the block's four edges."""
        base = len(self.values)
        n = len(pieces)
        self.parent.extend(range(base, base + n))
        self.geoms.extend(pieces.geoms)
        self.values = np.concatenate([self.values, pieces.values.astype(np.int64)])
        self.pixels.extend(int(v) for v in pieces.pixels)
        if pieces.conf_sum is not None:
            self.conf = (self.conf or [0.0] * base) + [float(v) for v in pieces.conf_sum]
        self.open.update(range(base, base + n))
        ids = {k: np.where(v >= 0, v + base, -1) for k, v in edges.items()}
        r, c = block
        if (r, c - 1) in self.edges:
            self._join(self.edges[(r, c - 1)]["right"], ids["left"])
        if (r - 1, c) in self.edges:
            self._join(self.edges[(r - 1, c)]["bottom"], ids["top"])
        if self.diagonal:  # corner to corner across four blocks
            if (r - 1, c - 1) in self.edges:
                self._join(self.edges[(r - 1, c - 1)]["bottom"][-1:], ids["top"][:1])
            if (r - 1, c + 1) in self.edges:
                self._join(self.edges[(r - 1, c + 1)]["bottom"][:1], ids["top"][-1:])
        self.edges[block] = {"right": ids["right"], "bottom": ids["bottom"]}
        for key in [k for k in self.edges if k[0] < r - 1]:
            del self.edges[key]

    def release(self, row: int, *, last: bool) -> Pieces | None:
        """Regions finished once block row ``row`` is in (all of them when ``last``)."""
        if not self.open:
            return None
        alive: set[int] = set()
        if not last:
            for (r, _), e in self.edges.items():
                if r == row:
                    alive.update(self._find(int(i)) for i in np.unique(e["bottom"]) if i >= 0)
        groups: dict[int, list[int]] = {}
        for i in self.open:
            root = self._find(i)
            if root not in alive:
                groups.setdefault(root, []).append(i)
        if not groups:
            return None
        members = list(groups.values())
        geoms = np.empty(len(members), dtype=object)
        for k, ids in enumerate(members):
            parts = [self.geoms[i] for i in ids]
            geoms[k] = parts[0] if len(parts) == 1 else shapely.coverage_union_all(parts)
        geoms = drop_collinear(geoms)  # the vertices that only marked seam pixels
        if self.multipolygons:
            parts_, index = shapely.get_parts(geoms, return_index=True)
            geoms = shapely.multipolygons(parts_, indices=index)
        values = self.values[[ids[0] for ids in members]].astype(np.int32)
        pixels = np.array([sum(self.pixels[i] for i in ids) for ids in members], dtype=np.int64)
        conf = (
            None
            if self.conf is None
            else np.array([sum(self.conf[i] for i in ids) for ids in members])
        )
        for ids in members:
            for i in ids:
                self.open.discard(i)
                self.geoms[i] = None  # free the geometry; the id stays for union-find
        return Pieces(geoms, values, pixels, conf)
