"""Streaming per-band statistics: mean, std and percentiles over many chips, nodata excluded.

Means and variances are merged chip by chip (Chan et al.'s parallel update, in float64), so any
number of chips fits in constant memory. Percentiles are exact for 8- and 16-bit integer imagery
(a histogram per band; the ``lower`` percentile of numpy) and come from a seeded uniform subsample
of at most ``reservoir`` values
per band for float imagery (SAR in dB, reflectances), which is exact below that size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geoseg.errors import DatasetError
from geoseg.normalize import Normalization

__all__ = ["BandStats", "StatsResult", "stream_stats", "to_db"]


def to_db(linear: np.ndarray) -> np.ndarray:
    """Linear SAR intensity to decibels; zero, negative and NaN become NaN (nodata)."""
    x = np.asarray(linear, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(np.where(x > 0, x, np.nan))
    return out.astype(np.float32)


@dataclass(frozen=True)
class StatsResult:
    """Per-band figures over every valid pixel seen."""

    count: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]
    p2: tuple[float, ...]
    p98: tuple[float, ...]
    exact_percentiles: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def normalization(self, kind: str = "meanstd", *, sar_db: bool = False) -> Normalization:
        """The :class:`Normalization` these statistics define (``meanstd`` or ``percentile``)."""
        if kind == "percentile":
            return Normalization(kind="percentile", low=self.p2, high=self.p98, sar_db=sar_db)
        return Normalization(
            kind="meanstd", mean=self.mean, std=tuple(max(s, 1e-6) for s in self.std), sar_db=sar_db
        )


@dataclass
class BandStats:
    """Accumulate statistics chip by chip: ``update(image, valid)``, then ``result()``."""

    bands: int
    reservoir: int = 1_000_000
    seed: int = 0
    _n: np.ndarray = field(init=False)
    _mean: np.ndarray = field(init=False)
    _m2: np.ndarray = field(init=False)
    _min: np.ndarray = field(init=False)
    _max: np.ndarray = field(init=False)
    _hist: np.ndarray | None = field(init=False, default=None)
    _offset: int = field(init=False, default=0)
    _samples: list[list[np.ndarray]] = field(init=False)
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self._n = np.zeros(self.bands, np.int64)
        self._mean = np.zeros(self.bands, np.float64)
        self._m2 = np.zeros(self.bands, np.float64)
        self._min = np.full(self.bands, np.inf)
        self._max = np.full(self.bands, -np.inf)
        self._samples = [[] for _ in range(self.bands)]
        self._rng = np.random.default_rng(self.seed)
        self._float = False

    def update(self, image: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one ``(bands, rows, cols)`` chip; ``valid`` (rows, cols) marks pixels to count.

        NaN pixels are never counted.
        """
        if image.ndim != 3 or image.shape[0] != self.bands:
            raise ValueError(f"expected a ({self.bands}, rows, cols) chip, got shape {image.shape}")
        integer = np.issubdtype(image.dtype, np.integer) and image.dtype.itemsize <= 2
        if not integer:
            self._float = True
        for b in range(self.bands):
            values = image[b]
            keep = valid if valid is not None else None
            if not integer:
                finite = np.isfinite(values)
                keep = finite if keep is None else (keep & finite)
            v = values[keep] if keep is not None else values.ravel()
            if v.size == 0:
                continue
            self._moments(b, v)
            if integer:
                self._histogram(b, v, image.dtype)
            else:
                self._sample(b, v)

    def _moments(self, b: int, v: np.ndarray) -> None:
        n = v.size
        vf = v.astype(np.float64)
        mean = float(vf.mean())
        m2 = float(((vf - mean) ** 2).sum())
        n0 = self._n[b]
        total = n0 + n
        delta = mean - self._mean[b]
        self._mean[b] += delta * n / total
        self._m2[b] += m2 + delta * delta * n0 * n / total
        self._n[b] = total
        self._min[b] = min(self._min[b], float(vf.min()))
        self._max[b] = max(self._max[b], float(vf.max()))

    def _histogram(self, b: int, v: np.ndarray, dtype: np.dtype) -> None:
        if self._hist is None:
            info = np.iinfo(dtype)
            self._offset = -int(info.min)
            self._hist = np.zeros((self.bands, int(info.max) - int(info.min) + 1), np.int64)
        counts = np.bincount(
            v.astype(np.int64).ravel() + self._offset, minlength=self._hist.shape[1]
        )
        self._hist[b, : counts.size] += counts[: self._hist.shape[1]]

    def _sample(self, b: int, v: np.ndarray) -> None:
        # Keep each value with probability reservoir / (values seen); re-thin when over budget.
        seen = int(self._n[b])
        keep_p = min(1.0, self.reservoir / max(seen, 1))
        flat = v.ravel()
        if keep_p < 1.0:
            flat = flat[self._rng.random(flat.size) < keep_p]
        self._samples[b].append(flat.astype(np.float32))
        held = sum(s.size for s in self._samples[b])
        if held > 2 * self.reservoir:
            allv = np.concatenate(self._samples[b])
            self._samples[b] = [allv[self._rng.random(allv.size) < self.reservoir / allv.size]]

    def _percentiles(self, b: int, qs: tuple[float, ...]) -> list[float]:
        if self._n[b] == 0:
            return [float("nan")] * len(qs)
        if not self._float and self._hist is not None:
            cdf = np.cumsum(self._hist[b])
            total = cdf[-1]
            return [
                float(
                    np.searchsorted(cdf, np.floor(q / 100 * (total - 1)), side="right")
                    - self._offset
                )
                for q in qs
            ]
        allv = np.concatenate(self._samples[b]) if self._samples[b] else np.empty(0, np.float32)
        return [float(x) for x in np.percentile(allv, qs, method="lower")]

    def result(self) -> StatsResult:
        """The statistics so far (NaN for a band with no valid pixel)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(self._m2 / np.maximum(self._n, 1))
        pct = [self._percentiles(b, (2.0, 98.0)) for b in range(self.bands)]
        nan_if_empty = lambda a: tuple(  # noqa: E731
            float(x) if n else float("nan") for x, n in zip(a, self._n, strict=True)
        )
        return StatsResult(
            count=tuple(int(n) for n in self._n),
            mean=nan_if_empty(self._mean),
            std=nan_if_empty(std),
            min=nan_if_empty(self._min),
            max=nan_if_empty(self._max),
            p2=tuple(p[0] for p in pct),
            p98=tuple(p[1] for p in pct),
            exact_percentiles=not self._float
            or all(sum(s.size for s in self._samples[b]) >= self._n[b] for b in range(self.bands)),
        )


def stream_stats(
    chips: Iterable[tuple[np.ndarray, np.ndarray | None]], *, db_bands: int = 0
) -> StatsResult:
    """Statistics of ``(image, valid)`` chips; the first ``db_bands`` bands are taken in dB first.

    Raises:
        DatasetError: no chip at all.
    """
    stats: BandStats | None = None
    for image, valid in chips:
        if db_bands:
            image = np.concatenate([to_db(image[:db_bands]), image[db_bands:].astype(np.float32)])
        stats = stats or BandStats(image.shape[0])
        stats.update(image, valid)
    if stats is None:
        raise DatasetError("no image to compute statistics on")
    return stats.result()
