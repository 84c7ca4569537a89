"""Is this input what the model was made for? Compare it with the checkpoint, then adapt it.

A checkpoint records the dtype, normalization and ground sample distance of its training
imagery. :func:`check_input` samples the raster (a bounded grid of windows) and compares its
dtype, value range, band count and pixel size with them. Differences are said in one line
(:class:`~geoseg.errors.InputCompatibilityWarning`), or refused with ``strict``
(:class:`~geoseg.errors.InputCompatibilityError`), with the option that fixes each one.

:class:`InputAdapter` is what every tile goes through before the model's normalization: complex
values become magnitude (or intensity, for SAR checkpoints that convert to dB), and ``scale``
maps the input's range onto the training range. Pure numpy.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np

from geoseg.errors import InputCompatibilityError, InputCompatibilityWarning
from geoseg.inference.options import PredictOptions
from geoseg.io.reader import RasterReader
from geoseg.models.config import ModelConfig

__all__ = ["InputAdapter", "check_input", "training_range"]

log = logging.getLogger(__name__)

GSD_TOLERANCE = 2.0  # pixel sizes within this factor of the training GSD pass
PERCENTILES = (2.0, 98.0)  # the stretch of --scale auto, and the range the check reports


def training_range(config: ModelConfig) -> tuple[float, float] | None:
    """The raw value range the model was trained on, as far as its checkpoint tells.

    8-bit training data: 0..255. Otherwise from the normalization: ``scale`` 0..scale,
    ``percentile`` the clip limits, ``meanstd`` mean +- 3 std (in dB for SAR). None when the
    checkpoint says nothing useful (``none``).
    """
    norm = config.normalization
    if config.band_dtype == "uint8" and not norm.sar_db:
        return 0.0, 255.0
    if norm.kind == "scale":
        return (0.0, float(norm.scale)) if norm.scale > 0 else (float(norm.scale), 0.0)
    if norm.kind == "percentile":
        return float(min(norm.low)), float(max(norm.high))
    if norm.kind == "meanstd":
        lows = [m - 3 * s for m, s in zip(norm.mean, norm.std, strict=True)]
        highs = [m + 3 * s for m, s in zip(norm.mean, norm.std, strict=True)]
        return float(min(lows)), float(max(highs))
    return None


@dataclass(frozen=True)
class InputAdapter:
    """What a tile goes through between reading and normalization.

    Attributes:
        complex_mode: ``none``; ``magnitude`` (``|z|``); ``intensity`` (``|z|^2``, for SAR
            checkpoints that take linear intensity to dB).
        low: per-band input value mapped onto ``target[0]`` (None: no rescaling).
        high: per-band input value mapped onto ``target[1]``.
        target: the training range the input is mapped onto.
    """

    complex_mode: Literal["none", "magnitude", "intensity"] = "none"
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    target: tuple[float, float] = (0.0, 255.0)

    @property
    def identity(self) -> bool:
        return self.complex_mode == "none" and self.low is None

    def __call__(self, data: np.ndarray) -> np.ndarray:
        """``(bands, rows, cols)`` raw values -> real values in the model's training range."""
        if self.complex_mode != "none" or np.iscomplexobj(data):
            mag = np.abs(data).astype(np.float32)
            data = mag * mag if self.complex_mode == "intensity" else mag
        if self.low is None or self.high is None:
            return data
        x = np.asarray(data, dtype=np.float32).copy()
        lo = np.asarray(self.low, np.float32).reshape(-1, 1, 1)
        hi = np.asarray(self.high, np.float32).reshape(-1, 1, 1)
        np.clip(x, lo, hi, out=x)
        x -= lo
        x *= np.float32(self.target[1] - self.target[0]) / np.maximum(hi - lo, np.float32(1e-12))
        x += np.float32(self.target[0])
        return x


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def check_input(
    reader: RasterReader, config: ModelConfig, options: PredictOptions, name: str = ""
) -> InputAdapter:
    """Compare the raster with what the model was trained on; warn or refuse; return the adapter.

    Args:
        reader: the open input, with the bands the model will get selected.
        config: the model's checkpoint config.
        options: ``scale``, ``resample_to_model`` and ``strict`` matter here.
        name: the input's name, for messages.

    Returns:
        The :class:`InputAdapter` every tile goes through.

    Raises:
        InputCompatibilityError: with ``options.strict``, when anything differs.
    """
    name = name or reader.path
    problems: list[str] = []
    fixes: list[str] = []
    dtype = np.dtype(reader.dtype)
    complex_mode: Literal["none", "magnitude", "intensity"] = "none"
    if np.issubdtype(dtype, np.complexfloating):
        complex_mode = "intensity" if config.normalization.sar_db else "magnitude"
        used = (
            "intensity |z|^2 (in dB, as the SAR model expects)"
            if complex_mode == "intensity"
            else "magnitude |z|"
        )
        problems.append(
            f"complex values ({', '.join(sorted({reader.dtypes[b - 1] for b in reader.bands}))}), "
            f"used as their {used}"
        )
        fixes.append(
            "convert to the product the model was trained on first (e.g. SAR intensity), or "
            f"accept the {complex_mode} geoseg uses"
        )
    adapter = InputAdapter(complex_mode=complex_mode)
    sample = reader.sample()
    values = adapter(sample.data)[:, sample.valid] if sample.valid.any() else None
    if values is not None and config.normalization.sar_db:
        values = 10 * np.log10(np.maximum(values.astype(np.float64), 1e-10))
    percentiles = (
        np.percentile(values, PERCENTILES, axis=1) if values is not None and values.size else None
    )
    target = training_range(config)
    trained = config.band_dtype
    scale = options.scale
    if scale is not None:
        if scale == "auto":
            if percentiles is None:
                low, high = (0.0,) * len(reader.bands), (1.0,) * len(reader.bands)
            else:
                raw = adapter(sample.data)[:, sample.valid].astype(np.float64)
                p = np.percentile(raw, PERCENTILES, axis=1)
                low, high = (
                    tuple(float(v) for v in p[0]),
                    tuple(float(max(v, u + 1e-6)) for u, v in zip(p[0], p[1], strict=True)),
                )
        else:
            lo, hi = cast(tuple[float, float], scale)
            low, high = (float(lo),) * len(reader.bands), (float(hi),) * len(reader.bands)
        adapter = InputAdapter(complex_mode, low, high, target or (0.0, 1.0))
        log.info("input values %s..%s mapped onto %s..%s", low, high, *(target or (0.0, 1.0)))
    else:
        if (
            trained is not None
            and not np.issubdtype(dtype, np.complexfloating)
            and dtype != np.dtype(trained)
        ):
            problems.append(f"dtype {dtype.name} (model: {trained})")
        if target is not None and percentiles is not None:
            p2, p98 = float(percentiles[0].min()), float(percentiles[1].max())
            lo, hi = target
            width = hi - lo
            if p98 > hi + 0.5 * width or p98 < lo + 0.02 * width or p2 < lo - 0.5 * width:
                problems.append(
                    f"values {_fmt(p2)}..{_fmt(p98)} (2-98 %; model: {_fmt(lo)}..{_fmt(hi)})"
                )
        flat = percentiles is not None and float(percentiles[0].min()) == float(
            percentiles[1].max()
        )
        if flat and percentiles is not None and any(p.startswith("values") for p in problems):
            # a constant image: no --scale can stretch one value onto a range
            value = _fmt(float(percentiles[0].min()))
            fixes.append(
                f"every sampled pixel holds {value}: check that the input is not blank, or mark "
                f"that value as nodata (gdal_edit.py -a_nodata {value} FILE)"
            )
        elif any(p.startswith(("dtype", "values")) for p in problems):
            hint = ""
            if percentiles is not None:
                hint = (
                    "--scale "
                    f"{_fmt(float(percentiles[0].min()))},{_fmt(float(percentiles[1].max()))} "
                    "or "
                )
            fixes.append(
                f"{hint}--scale auto (a 2-98 % stretch) maps the values onto the model's range"
            )
    pixel = reader.pixel_size
    if config.gsd and pixel and not options.resample_to_model:
        ratio = pixel / config.gsd
        if ratio > GSD_TOLERANCE or ratio < 1 / GSD_TOLERANCE:
            problems.append(f"pixel size {_fmt(pixel)} m (model: {_fmt(config.gsd)} m)")
            fixes.append("--resample-to-model predicts at the model's pixel size")
    if problems:
        message = (
            f"{name}: input unlike the model's training data: {'; '.join(problems)}; the map may "
            f"be confidently wrong. Fix: {'; '.join(fixes)}"
        )
        if options.strict:
            raise InputCompatibilityError(message + " (refused because of --strict)")
        warnings.warn(
            message + ", or --strict to refuse such input", InputCompatibilityWarning, stacklevel=3
        )
    return adapter
