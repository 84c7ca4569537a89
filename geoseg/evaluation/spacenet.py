"""The SpaceNet building metric: polygons matched one to one at IoU >= 0.5, F1 x 100.

Proposals are visited largest first; each takes the unmatched ground-truth polygon it overlaps
with the highest IoU, if that IoU reaches the threshold (a true positive), and that polygon is
then used up. Unmatched proposals are false positives, unmatched truths false negatives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry.base import BaseGeometry

__all__ = ["PolygonScore", "match_polygons"]


@dataclass(frozen=True)
class PolygonScore:
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    iou_threshold: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 6),
            "recall": round(self.recall, 6),
            "f1": round(self.f1, 6),
            "spacenet_score": round(100 * self.f1, 3),
            "iou_threshold": self.iou_threshold,
        }

    @staticmethod
    def total(parts: Iterable[PolygonScore], iou_threshold: float = 0.5) -> PolygonScore:
        tp = fp = fn = 0
        for p in parts:
            tp, fp, fn = tp + p.tp, fp + p.fp, fn + p.fn
        return _score(tp, fp, fn, iou_threshold)


def _score(tp: int, fp: int, fn: int, thr: float) -> PolygonScore:
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PolygonScore(tp, fp, fn, precision, recall, f1, thr)


def match_polygons(
    predicted: Iterable[BaseGeometry], truth: Iterable[BaseGeometry], *, iou_threshold: float = 0.5
) -> PolygonScore:
    """Score predicted building polygons against the ground truth (same CRS)."""
    preds = [shapely.make_valid(g) for g in predicted if g is not None and not g.is_empty]
    truths = [shapely.make_valid(g) for g in truth if g is not None and not g.is_empty]
    if not preds or not truths:
        return _score(0, len(preds), len(truths), iou_threshold)
    tree = STRtree(truths)
    used = np.zeros(len(truths), bool)
    tp = 0
    for p in sorted(preds, key=lambda g: -g.area):
        best, best_iou = -1, 0.0
        for j in tree.query(p, predicate="intersects"):
            if used[j]:
                continue
            inter = p.intersection(truths[j]).area
            union = p.area + truths[j].area - inter
            iou = inter / union if union > 0 else 0.0
            if iou > best_iou:
                best, best_iou = int(j), iou
        if best >= 0 and best_iou >= iou_threshold:
            used[best] = True
            tp += 1
    return _score(tp, len(preds) - tp, len(truths) - tp, iou_threshold)
