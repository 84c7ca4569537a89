"""Raster I/O: the only layer that opens raster files. Needs no torch.

Pure window arithmetic (:mod:`geoseg.io.windows`), windowed reads that return pixels with their
georeferencing (:mod:`geoseg.io.reader`), atomic COG writing (:mod:`geoseg.io.writer`) and raster
descriptions (:mod:`geoseg.io.info`).
"""

from geoseg.io.info import describe_raster
from geoseg.io.open import open_raster
from geoseg.io.reader import GeoArray, RasterReader, valid_mask
from geoseg.io.windows import Tile, TilePlan, plan_tiles, resolve_overlap, tile_transform
from geoseg.io.writer import COGWriter, check_destination, write_qml

__all__ = [
    "COGWriter",
    "GeoArray",
    "RasterReader",
    "Tile",
    "TilePlan",
    "check_destination",
    "describe_raster",
    "open_raster",
    "plan_tiles",
    "resolve_overlap",
    "tile_transform",
    "valid_mask",
    "write_qml",
]
