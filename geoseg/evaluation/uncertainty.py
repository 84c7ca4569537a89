"""Uncertainty of blended class probabilities: entropy and margin. Pure numpy.

Both take ``(classes, rows, cols)`` probabilities and return ``(rows, cols)`` float32.
"""

from __future__ import annotations

import numpy as np

__all__ = ["entropy", "margin"]


def entropy(probs: np.ndarray, *, normalized: bool = True) -> np.ndarray:
    """Shannon entropy ``-sum p log p`` per pixel; divided by ``log(classes)`` when ``normalized``
    (0: certain, 1: uniform)."""
    p = np.clip(probs.astype(np.float32, copy=False), 1e-12, 1.0)
    h = -(p * np.log(p)).sum(axis=0)
    if normalized and probs.shape[0] > 1:
        h /= np.log(probs.shape[0])
    return h.astype(np.float32, copy=False)


def margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per pixel (0: a tie, 1: certain)."""
    if probs.shape[0] < 2:
        return np.ones(probs.shape[1:], np.float32)
    top2 = np.partition(probs, -2, axis=0)[-2:]
    return (top2[1] - top2[0]).astype(np.float32, copy=False)
