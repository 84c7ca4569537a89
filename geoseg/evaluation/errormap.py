"""Error maps: every labelled pixel coded as correct or by its (true -> predicted) pair. Pure numpy.

Code 0 is a correct pixel; a wrong pixel whose true class index is ``t`` and predicted index ``p``
gets ``1 + t * n + p`` (``n`` classes); 255 marks pixels without a label or prediction. The codes
form a :class:`~geoseg.classes.ClassTable` (names like ``road -> building``), so the COG writer
gives the map a colour table, class names, a QGIS style and a GDAL raster attribute table (with a
pixel count per code when the writer is given the histogram).
"""

from __future__ import annotations

import numpy as np

from geoseg.classes import MASK_NODATA, ClassInfo, ClassTable
from geoseg.errors import DatasetError

__all__ = ["CORRECT", "MAX_CLASSES", "counts_of", "error_codes", "error_table"]

CORRECT = 0
MAX_CLASSES = 15  # 1 + n * n codes must stay below the nodata value 255
CORRECT_COLOR = (215, 215, 215)


def error_codes(
    pred: np.ndarray, truth: np.ndarray, valid: np.ndarray, num_classes: int
) -> np.ndarray:
    """``(rows, cols)`` uint8 codes from class indexes ``pred`` and ``truth`` (same shape).

    ``valid`` marks pixels that count (a prediction exists and the label is not ignored).
    """
    n = num_classes
    if n > MAX_CLASSES:
        raise DatasetError(
            f"error maps code (true, predicted) pairs in one byte, so at most {MAX_CLASSES} "
            f"classes; the model has {n}"
        )
    out = np.full(pred.shape, MASK_NODATA, np.uint8)
    ok = valid & (truth >= 0) & (truth < n) & (pred >= 0) & (pred < n)
    t, p = truth[ok].astype(np.int64), pred[ok].astype(np.int64)
    out[ok] = np.where(t == p, CORRECT, 1 + t * n + p).astype(np.uint8)
    return out


def error_table(classes: ClassTable) -> ClassTable:
    """The codes of an error map as a class table: ``correct`` (light grey) and each
    ``true -> predicted`` pair in the predicted class's colour."""
    n = len(classes)
    items = [ClassInfo(CORRECT, "correct", CORRECT_COLOR)]
    for t, ct in enumerate(classes):
        for p, cp in enumerate(classes):
            if t != p:
                items.append(ClassInfo(1 + t * n + p, f"{ct.name} -> {cp.name}", cp.color))
    return ClassTable(tuple(items))


def counts_of(codes: np.ndarray, num_classes: int) -> tuple[np.ndarray, int]:
    """The ``(n, n)`` confusion matrix (true rows, predicted columns) an error map encodes, except
    that correct pixels are all counted in one place: returned as
    ``(wrong (n, n), correct count)``."""
    n = num_classes
    hist = np.bincount(codes.ravel(), minlength=256)
    wrong = np.zeros((n, n), np.int64)
    for t in range(n):
        for p in range(n):
            if t != p:
                wrong[t, p] = hist[1 + t * n + p]
    return wrong, int(hist[CORRECT])
