"""Many inputs, one output set each: expanding paths, globs, folders and ``@list.txt`` files, and
naming the outputs in one folder (local or ``s3://``)."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from geoseg.errors import RasterOpenError, WriteError
from geoseg.io.stac import is_stac, stac_inputs
from geoseg.io.storage import is_object_url, join, list_objects

__all__ = ["RASTER_SUFFIXES", "OutputSet", "expand_inputs", "output_set"]

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
_URL = ("http://", "https://", "s3://", "/vsi")


def _folder(path: Path) -> list[str]:
    found = sorted(
        str(p)
        for p in path.iterdir()
        if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES and not p.name.startswith(".")
    )
    if not found:
        raise RasterOpenError(
            f"{path}: a folder without rasters; expected files ending in "
            f"{', '.join(RASTER_SUFFIXES)}"
        )
    return found


def _one(item: str) -> list[str]:
    if is_stac(item):  # an item, an ItemCollection or a catalog: its items
        return stac_inputs(item)
    if item.startswith("@"):
        listing = Path(item[1:])
        if not listing.is_file():
            raise RasterOpenError(
                f"{item}: expected a text file of paths or URLs, one a line, after '@'; {listing} "
                "does not exist"
            )
        lines = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines()]
        return [out for line in lines if line and not line.startswith("#") for out in _one(line)]
    if is_object_url(item):
        if item.endswith("/") or any(ch in item.rsplit("/", 1)[-1] for ch in "*?["):
            prefix, _, pattern = item.rpartition("/")
            urls = list_objects(prefix + "/", pattern or None)
            urls = [u for u in urls if pattern or u.lower().endswith(RASTER_SUFFIXES)]
            if not urls:
                raise RasterOpenError(
                    f"{item}: no object matches; expected rasters under that prefix"
                )
            return urls
        return [item]
    if item.startswith(_URL):
        return [item]
    if any(ch in item for ch in "*?["):
        found = sorted(glob.glob(item, recursive=True))
        if not found:
            raise RasterOpenError(
                f"{item}: the pattern matches no file; check it (quote it so the shell does not "
                "expand it)"
            )
        return found
    path = Path(item)
    if path.is_dir():
        return _folder(path)
    if not path.exists():
        raise RasterOpenError(
            f"{item}: no such file; expected a raster, a folder of rasters, a glob or @list.txt"
        )
    return [item]


def expand_inputs(items: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Rasters named by paths, URLs (``http(s)://``, ``s3://``), globs (``tiles/*.tif``), folders
    (their rasters), ``@list.txt`` (a path or URL per line, ``#`` comments) and STAC JSON (an
    item; the items of an ItemCollection, as ``items.json#ID``, or of a static catalog), in
    order, without duplicates.

    Raises:
        RasterOpenError: an item that names nothing.
    """
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        for path in _one(str(item)):
            if path not in seen:
                seen.add(path)
                out.append(path)
    return out


@dataclass(frozen=True)
class OutputSet:
    """The outputs of one input: the class mask and the optional extras (paths or ``s3://``
    URLs)."""

    src: str
    mask: str
    probabilities: str | None = None
    confidence: str | None = None
    vector: str | None = None

    @property
    def paths(self) -> list[str]:
        return [
            p
            for p in (self.mask, self.probabilities, self.confidence, self.vector)
            if p is not None
        ]


def _stem(src: str) -> str:
    base, _, fragment = src.partition("#")
    if fragment:  # an item of an ItemCollection: its id
        return fragment
    name = base.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    for suffix in RASTER_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name.rsplit(".", 1)[0] if "." in name else name


def output_set(
    src: str,
    outdir: str | os.PathLike[str],
    *,
    probabilities: bool = False,
    confidence: bool = False,
    vector: str | None = None,
) -> OutputSet:
    """Outputs of ``src`` in ``outdir``: ``<stem>_classes.tif``, ``<stem>_probabilities.tif``,
    ``<stem>_confidence.tif`` and ``<stem>_polygons<vector>`` (``vector`` is an extension such as
    ``.gpkg``)."""
    stem = _stem(src)

    def name(suffix: str) -> str:
        return join(outdir, f"{stem}{suffix}")

    ext = None if vector is None else ("." + vector.lstrip(".").rsplit(".", 1)[-1].lower())
    return OutputSet(
        src,
        name("_classes.tif"),
        name("_probabilities.tif") if probabilities else None,
        name("_confidence.tif") if confidence else None,
        name(f"_polygons{ext}") if ext else None,
    )


def check_output_sets(sets: list[OutputSet]) -> None:
    """Two inputs with one output name, or an output that is an input, are refused.

    Raises:
        WriteError: with the clashing names and the fix.
    """
    owner: dict[str, str] = {}
    inputs = {os.path.abspath(s.src) if not s.src.startswith(_URL) else s.src for s in sets}
    for s in sets:
        for p in s.paths:
            key = p if p.startswith(_URL) else os.path.abspath(p)
            if key in inputs:
                raise WriteError(
                    f"{p}: is an input as well as an output; choose another output folder"
                )
            if key in owner:
                raise WriteError(
                    f"{owner[key]} and {s.src} would both write {p}; their names are the same, so "
                    "predict them into different output folders"
                )
            owner[key] = s.src
