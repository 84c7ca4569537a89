"""Calibration: expected calibration error, reliability diagrams, temperature scaling. Pure numpy.

Confidence is the winning class's probability. :class:`CalibrationBins` accumulates, per
confidence bin, the pixel count, the summed confidence and the number of correct pixels, so the
ECE of a whole dataset is computed in one streamed pass. A temperature ``T`` rescales logits
(``softmax(z / T)``); since ``log p`` differs from the logits ``z`` only by a per-pixel constant,
it is fitted on log-probabilities of a bounded random sample of pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "CalibrationBins",
    "PixelSample",
    "apply_temperature",
    "expected_calibration_error",
    "fit_temperature",
]


@dataclass
class CalibrationBins:
    """Per-bin sums over ``bins`` equal-width confidence bins on [0, 1]."""

    bins: int = 15
    count: np.ndarray = field(init=False)
    confidence: np.ndarray = field(init=False)
    correct: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.count = np.zeros(self.bins, np.int64)
        self.confidence = np.zeros(self.bins, np.float64)
        self.correct = np.zeros(self.bins, np.int64)

    def add(self, confidence: np.ndarray, correct: np.ndarray) -> None:
        """Add pixels: their confidence (winning probability) and whether the prediction is
        right."""
        c = np.asarray(confidence, np.float64).ravel()
        k = np.asarray(correct, bool).ravel()
        idx = np.clip(
            (c * self.bins).astype(np.int64), 0, self.bins - 1
        )  # bin i holds (i/B, (i+1)/B]; 1.0 in the last
        self.count += np.bincount(idx, minlength=self.bins)
        self.confidence += np.bincount(idx, weights=c, minlength=self.bins)
        self.correct += np.bincount(idx, weights=k, minlength=self.bins).astype(np.int64)

    @property
    def ece(self) -> float:
        """``sum_b (n_b / N) |accuracy_b - confidence_b|``."""
        return expected_calibration_error(self.count, self.confidence, self.correct)

    def to_dict(self) -> dict[str, object]:
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = self.correct / self.count
            conf = self.confidence / self.count
        return {
            "bins": self.bins,
            "ece": self.ece,
            "count": self.count.tolist(),
            "accuracy": [None if not np.isfinite(a) else round(float(a), 6) for a in acc],
            "confidence": [None if not np.isfinite(c) else round(float(c), 6) for c in conf],
        }

    def plot(self, dst: str | os.PathLike[str], title: str = "") -> Path:
        """Write a reliability diagram PNG: accuracy against confidence per bin, with the
        diagonal."""
        from matplotlib.figure import Figure  # no pyplot: never switch the caller's backend

        from geoseg.io.overlay import save_figure

        with np.errstate(invalid="ignore", divide="ignore"):
            acc = self.correct / self.count
            conf = self.confidence / self.count
        edges = np.linspace(0, 1, self.bins + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        fig = Figure(figsize=(5, 6))
        ax, axh = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ok = self.count > 0
        ax.bar(
            centres[ok],
            acc[ok],
            width=1 / self.bins,
            edgecolor="black",
            color="#4c72b0",
            alpha=0.8,
            label="accuracy",
        )
        ax.bar(
            centres[ok],
            (conf - acc)[ok],
            bottom=acc[ok],
            width=1 / self.bins,
            color="#dd8452",
            alpha=0.5,
            label="gap to confidence",
        )
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title(title or f"reliability, ECE = {self.ece:.3f}")
        axh.bar(centres, self.count / max(self.count.sum(), 1), width=1 / self.bins, color="grey")
        axh.set_xlabel("confidence (winning class probability)")
        axh.set_ylabel("pixels")
        axh.set_xlim(0, 1)
        return save_figure(fig, dst)


def expected_calibration_error(
    count: np.ndarray, confidence_sum: np.ndarray, correct: np.ndarray
) -> float:
    """ECE from per-bin pixel counts, summed confidences and correct counts."""
    total = count.sum()
    if total == 0:
        return float("nan")
    ok = count > 0
    gap = np.abs(correct[ok] / count[ok] - confidence_sum[ok] / count[ok])
    return float((count[ok] / total * gap).sum())


@dataclass
class PixelSample:
    """A bounded uniform random sample of pixels' log-probabilities and labels (reservoir by
    chunks)."""

    size: int = 200_000
    seed: int = 0
    logp: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    seen: int = 0

    def add(self, probs: np.ndarray, labels: np.ndarray) -> None:
        """``probs`` ``(classes, pixels)``, ``labels`` ``(pixels,)`` class indexes."""
        n = labels.size
        if n == 0:
            return
        self.seen += n
        rng = np.random.default_rng(self.seed + self.seen)
        keep = rng.random(n) < min(1.0, 4 * self.size / max(self.seen, 1))
        self.logp.append(np.log(np.clip(probs[:, keep], 1e-12, 1)).astype(np.float32))
        self.labels.append(labels[keep].astype(np.int64))
        if sum(lab.size for lab in self.labels) > 4 * self.size:
            lp, lab = np.concatenate(self.logp, axis=1), np.concatenate(self.labels)
            pick = rng.choice(lab.size, self.size, replace=False)
            self.logp, self.labels = [lp[:, pick]], [lab[pick]]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.labels:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
        return np.concatenate(self.logp, axis=1), np.concatenate(self.labels)


def apply_temperature(logp: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` over axis 0."""
    z = logp / temperature
    z = z - z.max(axis=0, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=0, keepdims=True)


def _nll(logp: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logp / temperature
    m = z.max(axis=0)
    lse = m + np.log(np.exp(z - m).sum(axis=0))
    return float((lse - z[labels, np.arange(labels.size)]).mean())


def fit_temperature(
    logp: np.ndarray, labels: np.ndarray, *, low: float = 0.05, high: float = 20.0
) -> float:
    """The temperature minimizing the negative log-likelihood (golden-section search on log T)."""
    if labels.size == 0:
        return 1.0
    a, b = np.log(low), np.log(high)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = _nll(logp, labels, np.exp(c)), _nll(logp, labels, np.exp(d))
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = _nll(logp, labels, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = _nll(logp, labels, np.exp(d))
    return float(np.exp((a + b) / 2))
