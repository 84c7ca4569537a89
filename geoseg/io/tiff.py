"""A minimal TIFF directory walker: where the IFDs and the pixel data sit in a file.

Used to check the Cloud-Optimized GeoTIFF layout (directories first, then overview data from the
smallest overview up, then the full-resolution data) of local files that carry no GDAL layout
marker. Reads headers only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from itertools import pairwise
from typing import BinaryIO

__all__ = ["IFDLayout", "cog_layout_problems", "read_ifd_layout"]

_TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    16: 8,
    17: 8,
    18: 8,
}
_INT_FORMATS = {1: "B", 3: "H", 4: "I", 16: "Q", 6: "b", 8: "h", 9: "i", 17: "q", 18: "Q"}
_OFFSET_TAGS = (273, 324)  # StripOffsets, TileOffsets


@dataclass(frozen=True)
class IFDLayout:
    """One image file directory: its own offset and the offsets of its first and last data block."""

    ifd_offset: int
    first_data: int | None
    last_data: int | None
    is_mask: bool = False


def _read_values(f: BinaryIO, bo: str, big: bool, ftype: int, count: int, raw: bytes) -> list[int]:
    size = _TYPE_SIZES.get(ftype, 1) * count
    inline = 8 if big else 4
    if size > inline:
        (off,) = struct.unpack(bo + ("Q" if big else "I"), raw)
        f.seek(off)
        data = f.read(size)
    else:
        data = raw[:size]
    fmt = _INT_FORMATS.get(ftype)
    if fmt is None:
        return []
    return list(struct.unpack(f"{bo}{count}{fmt}", data))


def read_ifd_layout(f: BinaryIO, max_ifds: int = 64) -> list[IFDLayout]:
    """Walk the main IFD chain of an open TIFF file (binary mode).

    Raises:
        ValueError: when the bytes are not a TIFF header.
    """
    f.seek(0)
    head = f.read(16)
    if head[:2] not in (b"II", b"MM"):
        raise ValueError("not a TIFF file")
    bo = "<" if head[:2] == b"II" else ">"
    (magic,) = struct.unpack(bo + "H", head[2:4])
    big = magic == 43
    next_ifd = (
        struct.unpack(bo + "Q", head[8:16])[0] if big else struct.unpack(bo + "I", head[4:8])[0]
    )
    out: list[IFDLayout] = []
    while next_ifd and len(out) < max_ifds:
        f.seek(next_ifd)
        if big:
            (n,) = struct.unpack(bo + "Q", f.read(8))
            entry, fmt = 20, bo + "HHQ8s"
        else:
            (n,) = struct.unpack(bo + "H", f.read(2))
            entry, fmt = 12, bo + "HHI4s"
        table = f.read(n * entry)
        after = f.read(8 if big else 4)
        offsets: list[int] = []
        subfile = 0
        for i in range(n):
            tag, ftype, count, raw = struct.unpack(fmt, table[i * entry : (i + 1) * entry])
            if tag in _OFFSET_TAGS:
                offsets = [o for o in _read_values(f, bo, big, ftype, count, raw) if o]
            elif tag == 254:  # NewSubfileType: bit 2 marks a transparency mask
                subfile = (_read_values(f, bo, big, ftype, count, raw) or [0])[0]
        out.append(
            IFDLayout(
                next_ifd,
                min(offsets) if offsets else None,
                max(offsets) if offsets else None,
                bool(subfile & 4),
            )
        )
        next_ifd = (
            struct.unpack(bo + ("Q" if big else "I"), after)[0]
            if len(after) == (8 if big else 4)
            else 0
        )
    return out


def cog_layout_problems(layout: list[IFDLayout]) -> list[str]:
    """COG layout rules: IFDs ahead of all data, smaller overviews' data before larger images'."""
    problems = []
    if not layout:
        return ["no image directory"]
    ifds = [d.ifd_offset for d in layout]
    if ifds != sorted(ifds):
        problems.append("image directories are not in increasing file order")
    every = [d.first_data for d in layout if d.first_data is not None]
    if every and max(ifds) > min(every):
        problems.append("image directories are not all ahead of the pixel data")
    firsts = [d.first_data for d in layout if d.first_data is not None and not d.is_mask]
    if len(firsts) > 1 and any(a < b for a, b in pairwise(firsts)):
        problems.append("overview data is not stored before the full-resolution data")
    return problems
