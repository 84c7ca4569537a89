"""Input normalization recorded in checkpoints and applied before the model: pure numpy, no
torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from geoseg.errors import CheckpointError

__all__ = ["Normalization"]

Kind = Literal["none", "scale", "meanstd", "percentile"]


@dataclass(frozen=True)
class Normalization:
    """How raw band values become model inputs.

    Order of operations: optional SAR linear-to-dB (``10 * log10``), then one of ``scale``
    (divide by ``scale``), ``meanstd`` (``(x - mean) / std`` per band) or ``percentile`` (clip to
    ``[low, high]`` per band, then map to ``[0, 1]``).

    Attributes:
        kind: ``"none"``, ``"scale"``, ``"meanstd"`` or ``"percentile"``.
        mean: per-band means (``meanstd``).
        std: per-band standard deviations (``meanstd``).
        low: per-band low clip values, e.g. 2nd percentiles (``percentile``).
        high: per-band high clip values, e.g. 98th percentiles (``percentile``).
        scale: divisor for ``scale`` (e.g. 255 for 8-bit imagery).
        sar_db: convert linear SAR intensity to decibels first.
    """

    kind: Kind = "scale"
    mean: tuple[float, ...] = field(default_factory=tuple)
    std: tuple[float, ...] = field(default_factory=tuple)
    low: tuple[float, ...] = field(default_factory=tuple)
    high: tuple[float, ...] = field(default_factory=tuple)
    scale: float = 255.0
    sar_db: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("none", "scale", "meanstd", "percentile"):
            raise CheckpointError(
                f"normalization kind must be none, scale, meanstd or percentile, got {self.kind!r}"
            )
        if self.kind == "meanstd" and (
            len(self.mean) != len(self.std) or not self.mean or min(self.std) <= 0
        ):
            raise CheckpointError(
                f"meanstd needs one mean and one positive std per band, got mean={self.mean} "
                f"std={self.std}"
            )
        if self.kind == "percentile" and (len(self.low) != len(self.high) or not self.low):
            raise CheckpointError(
                f"percentile needs one low and one high per band, got low={self.low} "
                f"high={self.high}"
            )
        if self.kind == "scale" and self.scale == 0:
            raise CheckpointError(
                "scale normalization needs a non-zero scale, e.g. 255 for 8-bit imagery"
            )

    @property
    def bands(self) -> int | None:
        """Number of bands the statistics were made for (None when band-agnostic)."""
        if self.kind == "meanstd":
            return len(self.mean)
        if self.kind == "percentile":
            return len(self.low)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        known = {
            k: (tuple(v) if isinstance(v, list) else v)
            for k, v in d.items()
            if k in cls.__dataclass_fields__
        }
        return cls(**known)  # type: ignore[arg-type]

    def apply(self, data: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Normalize a ``(bands, rows, cols)`` array into float32 (optionally into ``out``)."""
        x = np.asarray(data, dtype=np.float32)
        if out is not None:
            out[...] = x
            x = out
        elif x is data:
            x = x.copy()
        if self.sar_db:
            np.maximum(x, 1e-10, out=x)
            np.log10(x, out=x)
            x *= 10.0
        if self.kind == "scale":
            x *= np.float32(1.0 / self.scale)
        elif self.kind == "meanstd":
            x -= _column(self.mean, x.shape[0])
            x *= 1.0 / _column(self.std, x.shape[0])
        elif self.kind == "percentile":
            lo, hi = _column(self.low, x.shape[0]), _column(self.high, x.shape[0])
            np.clip(x, lo, hi, out=x)
            x -= lo
            x *= 1.0 / np.maximum(hi - lo, 1e-12)
        return x


def _column(values: Sequence[float], bands: int) -> np.ndarray:
    if len(values) != bands:
        raise CheckpointError(
            f"normalization has statistics for {len(values)} band(s) but the input has {bands}"
        )
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)
