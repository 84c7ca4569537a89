"""Pixel-boundary polygonization in numba: run-length labelling plus crack following.

For a block of class ids, regions (4- or 8-connected pixels of one class) are labelled through
the runs of each row (union-find over runs, no label image), then every region boundary is
followed along pixel edges, keeping the region on the right, and only corners are emitted. Each
ring knows its region, so holes need no point-in-polygon test. At a corner where two pixels of a
class touch diagonally, 4-connectivity turns towards the region (the rings touch but stay
separate) unless they are one region (then the rings keep to the outside pixel, so a loop closing
at a corner makes a hole touching the shell, which is valid), as GDAL's polygonize does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["trace_block"]

# directions as (d_row, d_col): right, down, left, up (clockwise on screen)
_DR = np.array([0, 1, 0, -1], dtype=np.int64)
_DC = np.array([1, 0, -1, 0], dtype=np.int64)


@njit(cache=True, nogil=True)
def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@njit(cache=True, nogil=True)
def _runs(code: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal kept values per row of a padded code array (-1: not kept): row start
    offsets, run starts, ends (block columns) and values."""
    h, w = code.shape[0] - 2, code.shape[1] - 2
    cap = 1024
    start = np.empty(cap, np.int64)
    end = np.empty(cap, np.int64)
    value = np.empty(cap, np.int64)
    row_first = np.empty(h + 1, np.int64)
    n = 0
    for i in range(h):
        row_first[i] = n
        row = code[i + 1]
        j = 1
        while j <= w:
            v = row[j]
            k = j + 1
            while row[k] == v:  # the -1 border stops every run
                k += 1
            if v >= 0:
                if n == cap:
                    cap *= 2
                    start = np.concatenate((start, np.empty(cap - n, np.int64)))
                    end = np.concatenate((end, np.empty(cap - n, np.int64)))
                    value = np.concatenate((value, np.empty(cap - n, np.int64)))
                start[n] = j - 1
                end[n] = k - 1
                value[n] = v
                n += 1
            j = k
    row_first[h] = n
    return row_first, start[:n], end[:n], value[:n]


@njit(cache=True, nogil=True)
def _label_runs(
    row_first: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    value: np.ndarray,
    h: int,
    diagonal: bool,
) -> tuple[np.ndarray, int]:
    """Region label of every run (0..n_regions-1), by union-find over touching runs of one value."""
    n = start.shape[0]
    parent = np.arange(n)
    reach = 1 if diagonal else 0
    for i in range(1, h):
        lo, a_end = row_first[i - 1], row_first[i]
        for b in range(row_first[i], row_first[i + 1]):
            # runs above that overlap run b (or touch a corner of it, with 8-connectivity)
            while lo < a_end and end[lo] + reach <= start[b]:
                lo += 1
            a = lo
            while a < a_end and start[a] < end[b] + reach:
                if value[a] == value[b]:
                    ra, rb = _find(parent, a), _find(parent, b)
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
                a += 1
    label = np.empty(n, np.int64)
    compact = np.full(n, -1, np.int64)
    regions = 0
    for r in range(n):
        root = _find(parent, r)
        if compact[root] < 0:
            compact[root] = regions
            regions += 1
        label[r] = compact[root]
    return label, regions


@njit(cache=True, nogil=True)
def _label_at(row_first: np.ndarray, start: np.ndarray, label: np.ndarray, i: int, j: int) -> int:
    """Region of kept pixel (i, j): binary search among the runs of row i."""
    lo, hi = row_first[i], row_first[i + 1] - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if start[mid] <= j:
            lo = mid
        else:
            hi = mid - 1
    return label[lo]


@njit(cache=True, nogil=True)
def _ahead(d: int, i: int, j: int) -> tuple[int, int, int, int]:
    """Pixels ahead-right and ahead-left of corner (i, j) when moving in direction d."""
    if d == 0:
        return i, j, i - 1, j
    if d == 1:
        return i, j - 1, i, j
    if d == 2:
        return i - 1, j - 1, i, j - 1
    return i - 1, j, i - 1, j - 1


@njit(cache=True, nogil=True)
def _follow(
    code: np.ndarray,
    row_first: np.ndarray,
    start: np.ndarray,
    label: np.ndarray,
    region: int,
    v: int,
    i: int,
    j: int,
    visited: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    n: int,
    dense: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Follow the ring leaving corner (i, j) rightwards (region on the right); append its
    corners to xs/ys from n on (growing them as needed). Along the block edges flagged in
    ``dense`` (top, bottom, left, right) every pixel corner is a vertex, so pieces cut by a seam
    carry the same vertices on both sides and merge as a coverage; ``dense[4]`` makes every
    pixel corner a vertex (neighbours then share all vertices, as coverage simplification needs)."""
    h, w = code.shape[0] - 2, code.shape[1] - 2
    ci, cj, d = i, j, 0
    while True:
        if d == 0:
            visited[ci, cj] = True
        ci += _DR[d]
        cj += _DC[d]
        ri, rj, li, lj = _ahead(d, ci, cj)
        right_in = code[ri + 1, rj + 1] == v
        left_in = code[li + 1, lj + 1] == v
        if right_in and not left_in:
            nd = d
        elif right_in and left_in:
            nd = (d + 3) % 4  # turn left
        elif left_in and _label_at(row_first, start, label, li, lj) == region:
            # the diagonal pixel is this same region: pass the corner keeping to the outside
            # pixel, so a loop closing here leaves a hole, not a self-touching ring
            nd = (d + 3) % 4
        else:
            nd = (d + 1) % 4  # turn right
        on_seam = False
        if d == 0 or d == 2:
            on_seam = (ci == 0 and dense[0]) or (ci == h and dense[1])
        else:
            on_seam = (cj == 0 and dense[2]) or (cj == w and dense[3])
        if nd != d or on_seam or dense[4]:
            if n == xs.shape[0]:
                xs = np.concatenate((xs, np.empty(xs.shape[0], np.int64)))
                ys = np.concatenate((ys, np.empty(ys.shape[0], np.int64)))
            xs[n] = cj
            ys[n] = ci
            n += 1
        d = nd
        if ci == i and cj == j and d == 0:
            return xs, ys, n


@njit(cache=True, nogil=True)
def _trace(
    code: np.ndarray,
    row_first: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    value: np.ndarray,
    label: np.ndarray,
    dense: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every boundary ring: corner coordinates (col, row), ring offsets and each ring's region.

    A ring starts on the top edge of a pixel whose upper neighbour is not its class: within each
    run, only the first pixel of every stretch not covered by a same-class run above can start one
    (the ring then runs along the whole stretch).
    """
    h, w = code.shape[0] - 2, code.shape[1] - 2
    visited = np.zeros((h + 1, w), np.bool_)  # rightward edges already followed
    xs = np.empty(4096, np.int64)
    ys = np.empty(4096, np.int64)
    ring_end = [0]
    ring_label = []
    n = 0
    for i in range(h):
        lo = row_first[i - 1] if i > 0 else 0
        above_end = row_first[i] if i > 0 else 0
        for b in range(row_first[i], row_first[i + 1]):
            v = value[b]
            cur = start[b]
            while lo < above_end and end[lo] <= start[b]:
                lo += 1
            a = lo
            while cur < end[b]:
                # next same-class run above that overlaps what is left of this run
                while a < above_end and (value[a] != v or end[a] <= cur) and start[a] < end[b]:
                    a += 1
                stop = start[a] if (a < above_end and start[a] < end[b]) else end[b]
                if stop > cur and not visited[i, cur]:
                    xs, ys, n = _follow(
                        code,
                        row_first,
                        start,
                        label,
                        label[b],
                        v,
                        i,
                        cur,
                        visited,
                        xs,
                        ys,
                        n,
                        dense,
                    )
                    if n == xs.shape[0]:
                        xs = np.concatenate((xs, np.empty(xs.shape[0], np.int64)))
                        ys = np.concatenate((ys, np.empty(ys.shape[0], np.int64)))
                    first = ring_end[-1]
                    xs[n] = xs[first]
                    ys[n] = ys[first]
                    n += 1
                    ring_end.append(n)
                    ring_label.append(label[b])
                if stop >= end[b]:
                    break
                cur = end[a]  # skip the covered stretch
                a += 1
    return xs[:n], ys[:n], np.array(ring_end, np.int64), np.array(ring_label, np.int64)


@njit(cache=True, nogil=True)
def _edges(
    row_first: np.ndarray, start: np.ndarray, end: np.ndarray, label: np.ndarray, h: int, w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Region of every pixel on the block's top, bottom, left and right edges (-1: not kept)."""
    top = np.full(w, -1, np.int64)
    bottom = np.full(w, -1, np.int64)
    left = np.full(h, -1, np.int64)
    right = np.full(h, -1, np.int64)
    for r in range(row_first[0], row_first[1]):
        top[start[r] : end[r]] = label[r]
    for r in range(row_first[h - 1], row_first[h]):
        bottom[start[r] : end[r]] = label[r]
    for i in range(h):
        a, b = row_first[i], row_first[i + 1]
        if b > a:
            if start[a] == 0:
                left[i] = label[a]
            if end[b - 1] == w:
                right[i] = label[b - 1]
    return top, bottom, left, right


@njit(cache=True, nogil=True)
def _region_stats(
    row_first: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    value: np.ndarray,
    label: np.ndarray,
    regions: int,
    weights: np.ndarray,
    use_weights: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.zeros(regions, np.int64)
    pixels = np.zeros(regions, np.int64)
    sums = np.zeros(regions, np.float64)
    h = row_first.shape[0] - 1
    for i in range(h):
        for r in range(row_first[i], row_first[i + 1]):
            g = label[r]
            values[g] = value[r]
            pixels[g] += end[r] - start[r]
            if use_weights:
                s = 0.0
                for j in range(start[r], end[r]):
                    s += weights[i, j]
                sums[g] += s
    return values, pixels, sums


# the parts of a traced block, in the order _block packs them (the first seven, then the edges)
_PARTS: tuple[str, ...] = ("x", "y", "ring_end", "ring_region", "value", "pixels", "weight_sum")
_PARTS += ("top", "bottom", "left", "right")


@njit(cache=True, nogil=True)
def _block(
    code: np.ndarray, flags: np.ndarray, diagonal: bool, weights: np.ndarray, use_weights: bool
) -> np.ndarray:
    """Every step of ``trace_block`` in one call, its results packed into one int64 array.

    The lengths of the parts (in ``_PARTS`` order) come first, then the parts; the float64 weight
    sums travel as their bits. One array, not a tuple, crosses back into Python: numba boxes a
    returned tuple without checking its items, so a signal handled while one is boxed (Ctrl-C,
    SIGTERM) would leave a NULL in the tuple and crash the interpreter instead of raising.
    """
    h, w = code.shape[0] - 2, code.shape[1] - 2
    row_first, start, end, value = _runs(code)
    label, regions = _label_runs(row_first, start, end, value, h, diagonal)
    xs, ys, ring_end, ring_label = _trace(code, row_first, start, end, value, label, flags)
    values, pixels, sums = _region_stats(
        row_first, start, end, value, label, regions, weights, use_weights
    )
    top, bottom, left, right = _edges(row_first, start, end, label, h, w)
    sums_bits = sums.view(np.int64)
    parts = (xs, ys, ring_end, ring_label, values, pixels, sums_bits, top, bottom, left, right)
    size = len(parts)
    for p in parts:
        size += p.shape[0]
    out = np.empty(size, np.int64)
    k = len(parts)
    for i, p in enumerate(parts):
        out[i] = p.shape[0]
        out[k : k + p.shape[0]] = p
        k += p.shape[0]
    return out


def trace_block(
    data: np.ndarray,
    keep: np.ndarray,
    *,
    connectivity: int = 4,
    weights: np.ndarray | None = None,
    dense: tuple[bool, ...] = (False, False, False, False),
    every_corner: bool = False,
) -> dict[str, np.ndarray]:
    """Rings of every region of ``data`` where ``keep``, in block pixel coordinates.

    Returns:
        ``x``, ``y`` (corner coordinates, each ring closed), ``ring_end`` (offsets, starting
        with 0), ``ring_region``, per region ``value``, ``pixels`` and ``weight_sum``, and the
        region of each pixel on the block's edges (``top``, ``bottom``, ``left``, ``right``).
    """
    dtype = np.int16 if data.dtype.itemsize == 1 or data.dtype == np.int16 else np.int32
    code = np.full((data.shape[0] + 2, data.shape[1] + 2), -1, dtype)
    np.copyto(code[1:-1, 1:-1], data, where=keep, casting="unsafe")
    if data.dtype == np.int16:  # negative class ids are not classes
        np.copyto(code[1:-1, 1:-1], -1, where=data < 0)
    use = weights is not None
    w = np.ascontiguousarray(weights, dtype=np.float64) if use else np.zeros((1, 1))
    flags = np.asarray((*dense[:4], every_corner), dtype=np.bool_)
    packed = _block(code, flags, connectivity == 8, w, use)
    return _unpack(packed)


def _unpack(packed: np.ndarray) -> dict[str, np.ndarray]:
    """The named parts of ``_block``'s packed array (views, no copies)."""
    out: dict[str, np.ndarray] = {}
    at = len(_PARTS)
    for name, n in zip(_PARTS, packed[: len(_PARTS)].tolist(), strict=True):
        out[name] = packed[at : at + n]
        at += n
    out["weight_sum"] = out["weight_sum"].view(np.float64)
    return out
