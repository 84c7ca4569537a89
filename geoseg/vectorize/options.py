"""``VectorizeOptions``: how a class mask becomes polygons, as one frozen, validated value.

The command line (``geoseg vectorize``, ``geoseg predict --vector``), the Python API, the many-
raster and Dask paths and the provenance a polygon file records all take one of these, so the
defaults and the choice lists (:data:`LAYOUTS`, :data:`CONNECTIVITIES`, the formats of
:data:`~geoseg.vectorize.sinks.FORMATS`) live in one place the CLI, the app and the docs read.
No torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from geoseg._options import KnownFields
from geoseg.errors import GeosegError, RasterFormatError

__all__ = ["CONNECTIVITIES", "LAYOUTS", "VectorizeOptions"]

LAYOUTS = ("single", "per-class")  # one layer, or one layer per class (GeoPackage)
CONNECTIVITIES = (4, 8)  # whether pixels touching at a corner belong to one polygon


def _names(value: str | Sequence[int | str] | None) -> tuple[int | str, ...] | None:
    """``"1,road"`` or ``[1, "road"]`` -> ``(1, "road")``; None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[int | str] = []
    for item in items:
        text = str(item).strip()
        if text:
            out.append(int(text) if text.lstrip("-").isdigit() else text)
    return tuple(out)


@dataclass(frozen=True)
class VectorizeOptions(KnownFields):
    """How a class mask becomes polygons. ``None`` means "the default behaviour".

    Attributes:
        layout: one of :data:`LAYOUTS`: ``single`` layer or ``per-class`` layers (GeoPackage).
        connectivity: one of :data:`CONNECTIVITIES`: 8 joins pixels touching at a corner.
        sieve: merge regions smaller than this many pixels into their largest neighbour first.
        min_area: drop polygons smaller than this (m²).
        fill_holes: fill holes smaller than this (m²).
        simplify: coverage-preserving tolerance in map units, or ``"<n>px"`` in pixels.
        regularize: square up building footprints: True for classes named building(s), or class
            ids/names.
        exclude: class ids or names that make no polygons (``None``: a class named background;
            ``()``: none, every class gets polygons).
        keep_crs: GeoJSON: keep the mask's CRS instead of reprojecting to EPSG:4326.
        layer: layer name (``None``: the file's stem).
        block_size: block edge in pixels (rounded to the mask's internal tiles).
        workers: parallel workers (``None``: all cores; 0 or 1 works in one process).

    Raises:
        RasterFormatError: for any value out of range, with the valid choices.
    """

    FIELDS_ARE: ClassVar[str] = "vectorize option"
    UNKNOWN_ERROR: ClassVar[type[GeosegError]] = RasterFormatError

    layout: str = "single"
    connectivity: int = 4
    sieve: int | None = None
    min_area: float | None = None
    fill_holes: float | None = None
    simplify: float | str | None = None
    regularize: bool | tuple[int | str, ...] = False
    exclude: tuple[int | str, ...] | None = None
    keep_crs: bool = False
    layer: str | None = None
    block_size: int = 2048
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise RasterFormatError(
                f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}"
            )
        if self.connectivity not in CONNECTIVITIES or isinstance(self.connectivity, bool):
            raise RasterFormatError(
                f"connectivity must be {' or '.join(map(str, CONNECTIVITIES))}, got "
                f"{self.connectivity!r}"
            )
        for name, low in (("sieve", 1), ("block_size", 16), ("workers", 0)):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise RasterFormatError(f"{name} must be an integer >= {low}, got {value!r}")
        for name in ("min_area", "fill_holes"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, int | float) and math.isfinite(value) and value >= 0
            ):
                raise RasterFormatError(f"{name} must be a number of m² >= 0, got {value!r}")
        _check_tolerance(self.simplify)
        if not isinstance(self.regularize, bool):
            object.__setattr__(self, "regularize", _names(self.regularize) or ())
        object.__setattr__(self, "exclude", _names(self.exclude))

    def record(self) -> dict[str, Any]:
        """The options that shape the polygons, JSON-ready (what a polygon file's provenance
        records; layout, layer, blocks and workers change no geometry)."""
        return {
            "connectivity": self.connectivity,
            "sieve": self.sieve,
            "min_area": self.min_area,
            "fill_holes": self.fill_holes,
            "simplify": self.simplify,
            "regularize": self.regularize
            if isinstance(self.regularize, bool)
            else list(self.regularize),
            "exclude": None if self.exclude is None else list(self.exclude),
        }

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> VectorizeOptions:
        """Build from loose values (CLI text, a YAML mapping): ``connectivity`` as text,
        ``exclude`` and ``regularize`` as ``"1,road"``; keys whose value is ``None`` keep the
        default.

        Raises:
            RasterFormatError: an unknown key (listing the known ones) or a bad value.
        """
        cls._refuse_unknown(values)
        kwargs = {k: v for k, v in values.items() if v is not None}
        for key in ("connectivity", "sieve", "block_size", "workers"):
            if isinstance(kwargs.get(key), str):
                try:
                    kwargs[key] = int(kwargs[key])
                except ValueError:
                    raise RasterFormatError(
                        f"{key} must be an integer, got {kwargs[key]!r}"
                    ) from None
        return cls(**kwargs)

    @classmethod
    def of(
        cls, options: VectorizeOptions | Mapping[str, Any] | None = None, **overrides: Any
    ) -> VectorizeOptions:
        """``options`` (a value, a mapping of fields, or the defaults) with keyword overrides
        applied: ``vectorize_raster(mask, dst, options, min_area=10)``."""
        if isinstance(options, Mapping):
            options = cls.parse(options)
        return cls._overridden(options, overrides)


def _check_tolerance(value: float | str | None) -> None:
    """A simplify tolerance: a number >= 0 (map units) or ``"<n>px"``."""
    if value is None:
        return
    text = str(value).strip()
    number = text[:-2] if text.endswith("px") else text
    try:
        tolerance = float(number)
    except ValueError:
        tolerance = math.nan
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise RasterFormatError(
            f"simplify: expected a number >= 0 in map units or pixels like '1.5px', got {value!r}"
        )
