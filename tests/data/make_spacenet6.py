"""Seeded SpaceNet 6 fixture: the official names, band counts, dtypes and EPSG:32631, tiny pixels.

Four 120x120 tiles at 0.5 m near Rotterdam, over three locations: tiles 1 and 2 cover the same
ground from two strips (one imaged looking the other way), tiles 3 and 4 lie apart. SAR-Intensity
is linear float32 with a zero (no data) wedge; buildings are rectangles in EPSG:4326 GeoJSON.
Run ``python tests/data/make_spacenet6.py DIR`` to write one by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

STRIPS = {"20190804111224_20190804111453": 1, "20190822070610_20190822070846": 0}
# tile number -> (strip, x origin, y origin) in EPSG:32631
TILES = {
    1: ("20190804111224_20190804111453", 592736.0, 5747555.0),
    2: ("20190822070610_20190822070846", 592756.0, 5747545.0),  # overlaps tile 1
    3: ("20190822070610_20190822070846", 593200.0, 5747555.0),
    4: ("20190804111224_20190804111453", 593700.0, 5747555.0),
}
SIZE, RES = 120, 0.5


def _write(
    path: Path, data: np.ndarray, transform: rasterio.Affine, nodata: float | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs="EPSG:32631",
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)


def make_spacenet6(root: str | Path, *, seed: int = 0) -> Path:
    """Write the fixture under ``root`` and return ``root/AOI_11_Rotterdam``."""
    rng = np.random.default_rng(seed)
    aoi = Path(root) / "AOI_11_Rotterdam"
    to_lonlat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
    for tile, (strip, x0, y0) in TILES.items():
        transform = from_origin(x0, y0, RES, RES)
        stem = f"SN6_Train_AOI_11_Rotterdam_{{}}_{strip}_tile_{tile}"
        # buildings: 3 rectangles, two of them 3 px apart (a contact zone)
        rects = [(10 + 5 * tile, 20, 40, 50), (43, 20, 70, 48), (60, 70, 100, 110)]
        footprint = np.zeros((SIZE, SIZE), bool)
        for r0, c0, r1, c1 in rects:
            footprint[r0:r1, c0:c1] = True
        sar = rng.gamma(2.0, 0.02, size=(4, SIZE, SIZE)).astype(np.float32)
        sar[:, footprint] *= 8.0  # buildings are bright
        wedge = np.add.outer(np.arange(SIZE), np.arange(SIZE)) < 25
        sar[:, wedge] = 0.0
        if STRIPS[strip] == 1:
            sar = sar[:, ::-1, ::-1].copy()  # looking the other way, as SN6 stores it
            sar[:, np.add.outer(np.arange(SIZE), np.arange(SIZE)) < 25] = 0.0
        _write(aoi / "SAR-Intensity" / f"{stem.format('SAR-Intensity')}.tif", sar, transform)
        rgb = rng.integers(40, 120, size=(3, SIZE, SIZE), dtype=np.uint8)
        rgb[:, footprint] = 200
        rgb[:, :8, :] = 0  # the strip edge: no data
        _write(aoi / "PS-RGB" / f"{stem.format('PS-RGB')}.tif", rgb, transform, nodata=0)
        rgbn = (rgb.astype(np.uint16) * 8)[[0, 1, 2, 2]]
        _write(aoi / "PS-RGBNIR" / f"{stem.format('PS-RGBNIR')}.tif", rgbn, transform)
        ms = rgbn[:, ::4, ::4].copy()
        _write(
            aoi / "RGBNIR" / f"{stem.format('RGBNIR')}.tif",
            ms,
            from_origin(x0, y0, RES * 4, RES * 4),
        )
        _write(aoi / "PAN" / f"{stem.format('PAN')}.tif", rgbn[:1].copy(), transform)
        features = []
        for i, (r0, c0, r1, c1) in enumerate(rects):
            ring = [
                transform * (c, r) for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0))
            ]
            lonlat = [list(to_lonlat.transform(x, y)) for x, y in ring]
            features.append(
                {
                    "type": "Feature",
                    "properties": {"TileBuildingId": i, "Polygon_Area": 0.0},
                    "geometry": {"type": "Polygon", "coordinates": [lonlat]},
                }
            )
        gj = (
            aoi
            / "geojson_buildings"
            / f"SN6_Train_AOI_11_Rotterdam_Buildings_{strip}_tile_{tile}.geojson"
        )
        gj.parent.mkdir(parents=True, exist_ok=True)
        gj.write_text(
            json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8"
        )
    summary = aoi / "SummaryData"
    summary.mkdir(parents=True, exist_ok=True)
    (summary / "SAR_orientations.txt").write_text(
        "".join(f"{s} {o}\n" for s, o in STRIPS.items()), encoding="utf-8"
    )
    return aoi


if __name__ == "__main__":
    print(make_spacenet6(sys.argv[1] if len(sys.argv) > 1 else "spacenet6-fixture"))
