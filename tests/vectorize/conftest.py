from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import shapely

from geoseg.classes import ClassTable
from tests.conftest import write_raster

CLASSES = ClassTable.from_names(["background", "building", "road", "water"])


def landcover(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Blobs of classes 0-3 with rectangles (buildings) and a few single pixels."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.normal(size=shape), 3)
    m = np.digitize(f, np.quantile(f, [0.45, 0.7, 0.85])).astype(np.uint8)
    for _ in range(shape[0] * shape[1] // 400):
        r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        m[r : r + rng.integers(2, 8), c : c + rng.integers(2, 8)] = 1
    speck = rng.random(shape) < 0.002
    m[speck] = rng.integers(0, 4, int(speck.sum()))
    return m


@pytest.fixture
def make_mask(tmp_path: Path) -> Callable[..., Path]:
    """``make_mask(array, name=..., classes=CLASSES, **profile)``: a class-mask GeoTIFF like predict
    writes."""

    def make(
        data: np.ndarray,
        name: str = "mask.tif",
        classes: ClassTable | None = CLASSES,
        **kwargs: Any,
    ) -> Path:
        kwargs.setdefault("nodata", 255)
        path = write_raster(tmp_path / name, data, **kwargs)
        if classes is not None:
            import rasterio

            with rasterio.open(path, "r+") as ds:
                ds.update_tags(CLASS_NAMES=classes.to_json())
        return path

    return make


def read(path: Path, layer: str | None = None) -> Any:
    """The written layer as a GeoDataFrame (the first layer unless named)."""
    layer = layer or pyogrio.list_layers(path)[0][0]
    return pyogrio.read_dataframe(path, layer=layer)


def normalized(geoms: Any) -> list[bytes]:
    """A comparable, order-free form of a set of polygons."""
    return sorted(shapely.to_wkb(shapely.normalize(np.asarray(geoms)), output_dimension=2))
