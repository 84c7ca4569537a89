"""The variants a checkpoint carries besides its float network, as its config records them.

``config.variants["int8"]`` describes a statically quantized network (see
:mod:`geoseg.inference.int8`, which rebuilds it): the scale and zero point of every activation
quantizer, named after the graph node it observes, the layers kept in float, how it was calibrated
and how closely its classes agreed with fp32. JSON only, no torch: ``geoseg models CKPT`` reads it
without loading a network.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from geoseg.errors import CheckpointError
from geoseg.models.config import ModelConfig

__all__ = ["BACKEND", "INT8", "MIN_AGREEMENT", "REDUCE_RANGE", "Int8Variant"]

INT8 = "int8"
BACKEND = "x86"  # PyTorch's quantized engine for x86 CPUs (oneDNN/FBGEMM kernels)
MIN_AGREEMENT = 0.99  # recorded agreement with fp32 below which ``auto`` never picks int8
# activations use the full 8 bits (quint8 0..255): the x86 backend's default of 7 bits avoids an
# overflow on CPUs without VNNI, and costs agreement with fp32
REDUCE_RANGE = False


@dataclass(frozen=True)
class Int8Variant:
    """A checkpoint's int8 variant, as recorded in its config (see the module).

    Attributes:
        qparams: ``{observed node: [scale, zero point]}`` of every activation quantizer.
        float_layers: module names kept in float (of :func:`quantizable`'s copy).
        calibration: which data calibrated it: ``images`` (names), ``tiles``, ``digest``.
        agreement: ``{"value": fraction of pixels whose class equals fp32's, "pixels": n,
            "on": what was compared}``, or None when unmeasured.
        miou: ``{"fp32": .., "int8": .., "on": ..}`` on held-out labels, when given.
        backend: the quantized engine (``x86``).
        reduce_range: activations in 7 bits instead of 8.
        torch: the torch version that calibrated it.
    """

    qparams: Mapping[str, Sequence[float]]
    float_layers: tuple[str, ...] = ()
    calibration: Mapping[str, Any] = field(default_factory=dict)
    agreement: Mapping[str, Any] | None = None
    miou: Mapping[str, Any] | None = None
    backend: str = BACKEND
    reduce_range: bool = REDUCE_RANGE
    torch: str = ""

    @classmethod
    def of(cls, config: ModelConfig) -> Int8Variant | None:
        """The int8 variant a config records, or None.

        Raises:
            CheckpointError: a malformed record.
        """
        record = (config.variants or {}).get(INT8)
        if record is None:
            return None
        try:
            return cls(
                qparams={str(k): (float(v[0]), int(v[1])) for k, v in record["qparams"].items()},
                float_layers=tuple(record.get("float_layers") or ()),
                calibration=dict(record.get("calibration") or {}),
                agreement=record.get("agreement"),
                miou=record.get("miou"),
                backend=str(record.get("backend", BACKEND)),
                reduce_range=bool(record.get("reduce_range", REDUCE_RANGE)),
                torch=str(record.get("torch", "")),
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise CheckpointError(
                f"the int8 variant recorded in this checkpoint is malformed ({exc!r}); calibrate "
                "it again with geoseg quantize"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "reduce_range": self.reduce_range,
            "torch": self.torch,
            "calibration": dict(self.calibration),
            "agreement": None if self.agreement is None else dict(self.agreement),
            "miou": None if self.miou is None else dict(self.miou),
            "float_layers": list(self.float_layers),
            "qparams": {k: [float(v[0]), int(v[1])] for k, v in self.qparams.items()},
        }

    @property
    def agreement_value(self) -> float | None:
        """The recorded fraction of pixels whose class agreed with fp32, if measured."""
        value = (self.agreement or {}).get("value")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def digest(self) -> str:
        """A digest of what the network is rebuilt from (scales, float layers, scheme): it keys
        the model cache, so another calibration never reuses this one's frozen network."""
        spec = {
            "backend": self.backend,
            "reduce_range": self.reduce_range,
            "float_layers": sorted(self.float_layers),
            "qparams": sorted((k, float(v[0]), int(v[1])) for k, v in self.qparams.items()),
        }
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]

    def summary(self) -> str:
        """One line a person reads: ``agrees with fp32 on 99.62% of 9 held-out images' pixels,
        mIoU 0.712 -> 0.710; calibrated on 64 tiles of 63 images``."""
        value = self.agreement_value
        parts = [
            f"agrees with fp32 on {value:.2%} of {self.agreement.get('on', 'held-out pixels')}"  # type: ignore[union-attr]
            if value is not None
            else "agreement with fp32 unknown"
        ]
        if self.miou and self.miou.get("fp32") is not None:
            parts.append(
                f"mIoU {self.miou['fp32']:.4f} (fp32) -> {self.miou['int8']:.4f} (int8) on "
                f"{self.miou.get('on', 'held-out labels')}"
            )
        cal = self.calibration
        if cal:
            parts.append(
                f"calibrated on {cal.get('tiles', '?')} tiles of {len(cal.get('images', []))} "
                "image(s)"
            )
        if self.float_layers:
            parts.append(f"kept in float: {', '.join(self.float_layers)}")
        return "; ".join(parts)
