"""Class tables: ids, names and RGB colours that travel from checkpoints to rasters and polygons.

Also the one place that knows how a class table is stored in a raster (a ``CLASS_NAMES`` JSON tag
plus a GDAL colour table, see :func:`class_tags` and :func:`class_table_of`) and which label value
losses and metrics skip (:data:`IGNORE_INDEX`). Needs neither torch nor rasterio.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from geoseg.errors import GeosegError

__all__ = [
    "CLASS_NAMES_TAG",
    "IGNORE_INDEX",
    "MASK_NODATA",
    "ClassInfo",
    "ClassTable",
    "class_table_of",
    "class_tags",
    "classes_of",
    "default_palette",
]

MASK_NODATA = 255  # the class mask value for "no data"; class ids stay below it
IGNORE_INDEX = MASK_NODATA  # the label value excluded from losses and metrics
CLASS_NAMES_TAG = "CLASS_NAMES"  # the GDAL metadata item that holds a mask's class table as JSON

# A qualitative palette (distinct on satellite imagery); class i gets _PALETTE[i % len].
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
)


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct RGB colours, background (class 0) black."""
    return [_PALETTE[i % len(_PALETTE)] for i in range(n)]


@dataclass(frozen=True)
class ClassInfo:
    """One class: its pixel value, name and display colour ``(r, g, b)``."""

    id: int
    name: str
    color: tuple[int, int, int]

    def hex(self) -> str:
        """Colour as ``#rrggbb``."""
        return "#{:02x}{:02x}{:02x}".format(*self.color)


def _parse_color(value: Any, where: str) -> tuple[int, int, int]:
    if isinstance(value, str):
        text = value.lstrip("#")
        if len(text) == 6:
            try:
                return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
            except ValueError:
                pass
    elif (
        isinstance(value, Sequence)
        and len(value) in (3, 4)
        and all(isinstance(v, int) and 0 <= v <= 255 for v in value)
    ):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise GeosegError(
        f"{where}: expected a colour as '#rrggbb' or [r, g, b] in 0..255, got {value!r}"
    )


@dataclass(frozen=True)
class ClassTable:
    """An ordered table of classes with unique ids (all < 255: 255 is the mask's nodata)."""

    classes: tuple[ClassInfo, ...]

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if len(set(ids)) != len(ids):
            raise GeosegError(f"class ids must be unique, got {ids}")
        if any(not 0 <= i < 255 for i in ids):
            raise GeosegError(f"class ids must be in 0..254 (255 marks nodata in masks), got {ids}")

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self) -> Iterator[ClassInfo]:
        return iter(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @classmethod
    def from_names(cls, names: Iterable[str]) -> ClassTable:
        """Classes ``0..n-1`` with the given names and the default palette."""
        names = list(names)
        return cls(
            tuple(
                ClassInfo(i, n, c)
                for i, (n, c) in enumerate(zip(names, default_palette(len(names)), strict=True))
            )
        )

    @classmethod
    def default(cls, n: int) -> ClassTable:
        """Classes named ``class_0 .. class_{n-1}``."""
        return cls.from_names(f"class_{i}" for i in range(n))

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready list of ``{"id", "name", "color"}``."""
        return [{"id": c.id, "name": c.name, "color": c.hex()} for c in self.classes]

    @classmethod
    def from_list(cls, items: Sequence[Mapping[str, Any]]) -> ClassTable:
        """Inverse of :meth:`to_list`; colours may be ``'#rrggbb'`` or ``[r, g, b]``."""
        out = []
        palette = default_palette(len(items))
        for i, item in enumerate(items):
            where = f"class #{i}"
            try:
                cid = int(item.get("id", i))
                name = str(item["name"])
            except (KeyError, TypeError, ValueError):
                raise GeosegError(
                    f"{where}: expected {{'id': int, 'name': str, 'color': '#rrggbb'}}, got "
                    f"{item!r}"
                ) from None
            color = _parse_color(item["color"], where) if "color" in item else palette[i]
            out.append(ClassInfo(cid, name, color))
        return cls(tuple(out))

    def to_json(self) -> str:
        return json.dumps(self.to_list())

    @classmethod
    def from_json(cls, text: str) -> ClassTable:
        return cls.from_list(json.loads(text))

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """GDAL colour table: class id -> RGBA; nodata (255) transparent."""
        cmap = {c.id: (*c.color, 255) for c in self.classes}
        cmap[MASK_NODATA] = (0, 0, 0, 0)
        return cmap


def class_tags(table: ClassTable) -> dict[str, str]:
    """The raster metadata that stores ``table`` (read back by :func:`class_table_of`)."""
    return {CLASS_NAMES_TAG: table.to_json()}


def class_table_of(
    tags: Mapping[str, str], colormap: Mapping[int, Sequence[int]] | None
) -> ClassTable | None:
    """A class table from a mask's ``CLASS_NAMES`` tag, else from its colour table, else None."""
    if CLASS_NAMES_TAG in tags:
        try:
            return ClassTable.from_json(tags[CLASS_NAMES_TAG])
        except (ValueError, GeosegError):
            pass
    if colormap:
        ids = sorted(
            i for i, c in colormap.items() if i != MASK_NODATA and (len(c) < 4 or c[3] > 0)
        )
        if ids and len(ids) < 255:
            return ClassTable(
                tuple(
                    ClassInfo(
                        i,
                        f"class_{i}",
                        (int(colormap[i][0]), int(colormap[i][1]), int(colormap[i][2])),
                    )
                    for i in ids
                )
            )
    return None


class _TaggedRaster(Protocol):
    def tags(self) -> dict[str, str]: ...

    def colormap(self, bidx: int) -> dict[int, tuple[int, ...]]: ...


def classes_of(dataset: _TaggedRaster) -> ClassTable | None:
    """The class table an open raster (a rasterio dataset) carries in band 1, or None."""
    try:
        cmap: Mapping[int, Sequence[int]] | None = dataset.colormap(1)
    except ValueError:
        cmap = None
    return class_table_of(dataset.tags(), cmap)
