"""Pixel metrics from a confusion matrix: IoU, F1, precision, recall, mIoU, accuracy. Pure numpy.

The confusion matrix has true classes on rows and predicted classes on columns; pixels whose
label is ``ignore_index`` (or outside ``0..num_classes-1``) are not counted. A class that
appears neither in the labels nor in the predictions has undefined scores (NaN) and is left out
of the means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Scores", "confusion_matrix", "scores"]


def confusion_matrix(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    *,
    ignore_index: int = 255,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts of (true, predicted) pairs."""
    t = np.asarray(target).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    if p.shape != t.shape:
        raise ValueError(f"prediction has {p.size} pixels but the labels have {t.size}")
    keep = (t != ignore_index) & (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    if valid is not None:
        keep &= np.asarray(valid, bool).ravel()
    return np.bincount(
        t[keep] * num_classes + p[keep], minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class Scores:
    iou: np.ndarray
    f1: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    support: np.ndarray
    miou: float
    mf1: float
    accuracy: float
    confusion: np.ndarray

    def to_dict(self, names: list[str] | None = None) -> dict[str, Any]:
        names = names or [str(i) for i in range(len(self.iou))]
        clean = lambda x: None if not np.isfinite(x) else round(float(x), 6)  # noqa: E731
        return {
            "miou": clean(self.miou),
            "mf1": clean(self.mf1),
            "pixel_accuracy": clean(self.accuracy),
            "per_class": {
                n: {
                    "iou": clean(i),
                    "f1": clean(f),
                    "precision": clean(p),
                    "recall": clean(r),
                    "support": int(s),
                }
                for n, i, f, p, r, s in zip(
                    names, self.iou, self.f1, self.precision, self.recall, self.support, strict=True
                )
            },
            "confusion_matrix": self.confusion.tolist(),
            "classes": names,
        }


def scores(cm: np.ndarray) -> Scores:
    """Per-class and mean scores of a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
        accuracy = tp.sum() / cm.sum() if cm.sum() else float("nan")
    present = (tp + fp + fn) > 0
    return Scores(
        iou=iou,
        f1=f1,
        precision=precision,
        recall=recall,
        support=cm.sum(1).astype(np.int64),
        miou=float(np.nanmean(iou[present])) if present.any() else float("nan"),
        mf1=float(np.nanmean(f1[present])) if present.any() else float("nan"),
        accuracy=float(accuracy),
        confusion=cm.astype(np.int64),
    )
