"""Splits by location: items whose footprints overlap never land on both sides."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

__all__ = ["split_by_location"]

Box = tuple[float, float, float, float]  # minx, miny, maxx, maxy


def _clusters(boxes: Sequence[Box]) -> list[list[int]]:
    parent = list(range(len(boxes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = sorted(range(len(boxes)), key=lambda i: boxes[i][0])
    for pos, a in enumerate(order):
        for b in order[pos + 1 :]:
            if boxes[b][0] >= boxes[a][2]:
                break
            if boxes[a][1] < boxes[b][3] and boxes[b][1] < boxes[a][3]:
                parent[find(a)] = find(b)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(boxes)):
        groups[find(i)].append(i)
    return list(groups.values())


def split_by_location(
    boxes: Sequence[Box], val_fraction: float = 0.2, *, seed: int = 0
) -> dict[str, list[int]]:
    """Indices for ``train``, ``val`` and ``excluded``.

    Items are grouped into clusters of overlapping footprints; whole clusters go to validation (in
    a seeded order, smallest first) until ``val_fraction`` of the items is reached. When all items
    form one cluster, a north-south cut is made instead, and items crossing it are excluded from
    both sides.
    """
    n = len(boxes)
    out: dict[str, list[int]] = {"train": [], "val": [], "excluded": []}
    want = round(val_fraction * n)
    if want == 0 or n < 2:
        out["train"] = list(range(n))
        return out
    groups = _clusters(boxes)
    if len(groups) > 1:
        rng = np.random.default_rng(seed)
        order = [groups[i] for i in rng.permutation(len(groups))]
        taken = 0
        for g in sorted(order, key=len):
            if taken < want and (taken + len(g) <= want or taken == 0) and taken + len(g) < n:
                out["val"] += g
                taken += len(g)
            else:
                out["train"] += g
        return {k: sorted(v) for k, v in out.items()}
    centres = sorted((b[0] + b[2]) / 2 for b in boxes)
    cut = centres[n - want]
    for i, (left, _, right, _) in enumerate(boxes):
        out["val" if left >= cut else "train" if right <= cut else "excluded"].append(i)
    return out
