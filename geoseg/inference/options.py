"""``PredictOptions``: how a raster goes through a model, as one frozen, validated value.

Every entry point that runs a model over a raster (``predict_raster``, ``predict_block``,
``evaluate``, and the code built on them) takes one of these, so the defaults live in one place
and a value is checked once, with the fix in the message. The CLI builds it through
:meth:`PredictOptions.parse`, the same parser a script uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast, get_args

from geoseg._options import KnownFields
from geoseg.errors import GeosegError, TilingError
from geoseg.inference.blending import BLEND_KERNELS, Kernel

__all__ = [
    "PRECISIONS",
    "TTA_MODES",
    "Precision",
    "PredictOptions",
    "parse_bands",
    "parse_overlap",
    "parse_scale",
]

Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

# test-time augmentation: (quarter turns, horizontal flip) applied to each batch, undone on the
# output
TTA_MODES: dict[str, list[tuple[int, bool]]] = {
    "none": [(0, False)],
    "flip": [(0, False), (0, True)],
    "d4": [(k, f) for k in range(4) for f in (False, True)],
}


def parse_overlap(value: str | float | int | None) -> float | int | None:
    """``"128"`` -> 128 pixels; ``"0.25"`` -> a quarter of the tile; ``None`` stays ``None``.

    Raises:
        TilingError: for text that is not a number, a negative number, or a number >= 1 that is
            not whole pixels (``1.5``).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TilingError(
            f"overlap must be pixels (e.g. 128) or a fraction (e.g. 0.25), got {value!r}"
        )
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TilingError(
            f"overlap must be pixels (e.g. 128) or a fraction (e.g. 0.25), got {value!r}"
        ) from None
    if number < 0:
        raise TilingError(f"overlap must be >= 0, got {value!r}; e.g. 0.25 or 128")
    if number < 1:
        return number
    if not number.is_integer():
        raise TilingError(
            f"overlap={value!r} is neither whole pixels nor a fraction in [0, 1); e.g. 128 or 0.25"
        )
    return int(number)


def parse_scale(
    value: str | tuple[float, float] | list[float] | None,
) -> tuple[float, float] | str | None:
    """``"0,10000"`` -> ``(0.0, 10000.0)``; ``"auto"`` (a 2-98 % percentile stretch) stays; None
    stays.

    Raises:
        TilingError: for anything else, or a low value not below the high one.
    """
    if value is None or value == "auto":
        return value
    parts: list[Any] = value.split(",") if isinstance(value, str) else list(value)
    try:
        low, high = (float(v) for v in parts)
    except (TypeError, ValueError):
        raise TilingError(f"scale must be LOW,HIGH (e.g. 0,10000) or auto, got {value!r}") from None
    if not (low < high) or not all(map(lambda v: abs(v) < float("inf"), (low, high))):
        raise TilingError(f"scale needs finite LOW < HIGH, got {value!r}; e.g. 0,10000")
    return low, high


def parse_bands(text: str) -> tuple[int, ...] | tuple[str, ...]:
    """``"3,2,1"`` -> ``(3, 2, 1)`` (1-based band numbers); ``"red,green,nir"`` ->
    ``("red", "green", "nir")`` (band names: a STAC item's assets, or a raster's band
    descriptions).

    Raises:
        TilingError: numbers mixed with names, or nothing.
    """
    parts = [v.strip() for v in text.split(",") if v.strip()]
    if parts and all(p.lstrip("-").isdigit() for p in parts):
        return _checked_bands(tuple(int(p) for p in parts))
    return _checked_bands(tuple(parts))


def _checked_bands(value: Any) -> tuple[int, ...] | tuple[str, ...]:
    bands = tuple(value) if not isinstance(value, str) else (value,)
    numbers = all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in bands)
    names = all(isinstance(b, str) and b.strip() and not b.strip().isdigit() for b in bands)
    if not bands or not (numbers or names):
        raise TilingError(
            "bands are 1-based numbers such as 3,2,1 or band names such as red,green,nir (not "
            f"both), got {value!r}"
        )
    return bands if numbers else tuple(str(b).strip().lower() for b in bands)


@dataclass(frozen=True)
class PredictOptions(KnownFields):
    """How a raster goes through a model. ``None`` means "the checkpoint's value".

    Attributes:
        tile_size: tile edge in pixels; a multiple of the model's output stride.
        overlap: pixels (int) or a fraction of the tile (float in [0, 1)).
        blend: a kernel name from :data:`~geoseg.inference.BLEND_KERNELS` or a callable
            ``kernel(tile, overlap) -> (tile, tile)`` array (``None``: the model's tiling's,
            ``gaussian``, or ``core`` for a model exported for QGIS Deepness).
        batch_size: tiles per forward pass (``None``: 2 on CPU, 8 on CUDA).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (on CPU: the checkpoint's int8 variant when its recorded agreement
            with fp32 is >= 99 %; else the fastest precision whose argmax agrees with fp32 on
            >= 99.5 %), ``fp32``, ``bf16``, ``fp16`` or ``int8`` (CPU, a calibrated checkpoint:
            ``geoseg quantize``).
        tta: test-time augmentation, a key of :data:`~geoseg.inference.runtime.TTA_MODES`.
        bands: input bands in the model's order (``None``: all, or for a STAC item the model's
            band names): 1-based numbers, or names (``("red", "green", "nir")``) that pick a STAC
            item's assets by common name, or a raster's bands by description.
        workers: threads reading tiles ahead (0: read in the calling thread).
        scale: map input values ``(low, high)`` linearly onto the range the model was trained
            on (clipped), or ``"auto"``: each band's 2-98 % percentiles, sampled over the whole
            raster. ``None``: feed values as they are.
        resample_to_model: predict at the model's ground sample distance (the input resampled
            to it), then bring the outputs back onto the input's grid.
        strict: refuse input that differs from the training data (dtype, value range, pixel
            size, complex values) instead of warning.
        extra: options for code built on top of prediction (free-form, copied, not validated).

    Raises:
        TilingError: for any value out of range, with the valid choices.
    """

    FIELDS_ARE: ClassVar[str] = "prediction option"
    UNKNOWN_ERROR: ClassVar[type[GeosegError]] = TilingError

    tile_size: int | None = None
    overlap: float | int | None = None
    blend: str | Kernel | None = None
    batch_size: int | None = None
    device: str = "auto"
    precision: Precision = "auto"
    tta: str = "none"
    bands: tuple[int, ...] | tuple[str, ...] | None = None
    workers: int = 2
    scale: tuple[float, float] | str | None = None
    resample_to_model: bool = False
    strict: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        def positive(name: str, value: int | None, low: int) -> None:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise TilingError(f"{name} must be an integer >= {low}, got {value!r}")

        positive("tile_size", self.tile_size, 1)
        positive("batch_size", self.batch_size, 1)
        positive("workers", self.workers, 0)
        object.__setattr__(self, "overlap", parse_overlap(self.overlap))
        if self.blend is not None and not callable(self.blend) and self.blend not in BLEND_KERNELS:
            raise TilingError(
                f"unknown blend {self.blend!r}; expected one of "
                f"{', '.join(sorted(BLEND_KERNELS))} or a callable"
            )
        if self.precision not in PRECISIONS:
            raise TilingError(
                f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}"
            )
        if self.tta not in TTA_MODES:
            raise TilingError(f"unknown tta {self.tta!r}; expected one of {', '.join(TTA_MODES)}")
        if not isinstance(self.device, str):
            object.__setattr__(self, "device", str(self.device))
        if self.bands is not None:
            object.__setattr__(self, "bands", _checked_bands(self.bands))
        object.__setattr__(self, "scale", parse_scale(self.scale))
        for flag in ("resample_to_model", "strict"):
            if not isinstance(getattr(self, flag), bool):
                raise TilingError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        object.__setattr__(self, "extra", dict(self.extra))

    def tile_size_for(self, config: Any) -> int:
        """The tile edge a run of the model ``config`` describes uses: this one, else the
        checkpoint's (the one place that rule is written)."""
        return int(self.tile_size or config.tile_size)

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> PredictOptions:
        """Build from loose values (CLI text, a YAML mapping): ``overlap`` as text, ``bands`` as
        ``"3,2,1"``; keys whose value is ``None`` keep the default.

        Raises:
            TilingError: an unknown key (listing the known ones) or a bad value.
        """
        cls._refuse_unknown(values)
        kwargs = {k: v for k, v in values.items() if v is not None}
        if isinstance(kwargs.get("bands"), str):
            kwargs["bands"] = parse_bands(kwargs["bands"])
        for key in ("tile_size", "batch_size", "workers"):
            if isinstance(kwargs.get(key), str):
                try:
                    kwargs[key] = int(kwargs[key])
                except ValueError:
                    raise TilingError(f"{key} must be an integer, got {kwargs[key]!r}") from None
        for key in ("resample_to_model", "strict"):
            if isinstance(kwargs.get(key), str):
                text = kwargs[key].strip().lower()
                if text not in ("true", "false", "yes", "no", "1", "0"):
                    raise TilingError(f"{key} must be true or false, got {kwargs[key]!r}")
                kwargs[key] = text in ("true", "yes", "1")
        if "precision" in kwargs:
            kwargs["precision"] = cast(Precision, str(kwargs["precision"]))
        return cls(**kwargs)

    @classmethod
    def of(cls, options: PredictOptions | None = None, **overrides: Any) -> PredictOptions:
        """``options`` (or the defaults) with keyword overrides applied: the calling convention of
        every entry point, ``predict_raster(src, dst, model, options, tile_size=256)``."""
        return cls._overridden(options, overrides)
