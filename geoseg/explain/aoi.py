"""An area of interest: polygons read once, rasterized per tile onto the raster's grid."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geoseg.errors import ExplainError
from geoseg.io.windows import tile_transform

__all__ = ["AreaOfInterest"]


@dataclass
class AreaOfInterest:
    """Polygons in the raster's CRS, and the raster's transform to rasterize them with.

    Attributes:
        geometries: shapely geometries in the raster's CRS.
        transform: the raster's affine transform.
        window: the raster window bounding the polygons.
    """

    geometries: list[Any]
    transform: Affine
    window: Window

    @classmethod
    def read(
        cls,
        path: str | os.PathLike[str],
        transform: Affine,
        crs: CRS | None,
        height: int,
        width: int,
    ) -> AreaOfInterest:
        """Read polygons (any OGR format), reprojected to ``crs``.

        Raises:
            ExplainError: unreadable file, no polygon, or polygons outside the raster.
        """
        import geopandas as gpd
        from rasterio.windows import from_bounds

        try:
            frame = gpd.read_file(path)
        except Exception as exc:
            raise ExplainError(
                f"{path}: cannot read the area of interest ({str(exc).splitlines()[0][:200]}); "
                "expected polygons (.gpkg, .geojson...)"
            ) from None
        frame = frame[
            frame.geometry.notna() & frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])
        ]
        if frame.empty:
            raise ExplainError(
                f"{path}: holds no polygon; expected the area of interest as polygons"
            )
        if crs is not None and frame.crs is not None and frame.crs != crs:
            frame = frame.to_crs(crs)
        left, bottom, right, top = frame.total_bounds
        win = from_bounds(left, bottom, right, top, transform=transform)
        c0, r0 = max(int(np.floor(win.col_off)), 0), max(int(np.floor(win.row_off)), 0)
        c1 = min(int(np.ceil(win.col_off + win.width)), width)
        r1 = min(int(np.ceil(win.row_off + win.height)), height)
        if c1 <= c0 or r1 <= r0:
            raise ExplainError(
                f"{path}: the area of interest does not overlap the raster; expected polygons "
                "over it (same CRS or reprojectable)"
            )
        return cls(list(frame.geometry), transform, Window(c0, r0, c1 - c0, r1 - r0))

    def mask(self, window: Window) -> np.ndarray:
        """``(rows, cols)`` bool: pixels of ``window`` whose centre lies inside the polygons."""
        from rasterio.features import geometry_mask

        shape = (int(window.height), int(window.width))
        return geometry_mask(
            self.geometries,
            out_shape=shape,
            transform=tile_transform(window, self.transform),
            invert=True,
        )
