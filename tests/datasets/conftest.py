"""Small datasets made in code: a Dubai-layout folder, a SpaceNet 6 fixture, GeoTIFF pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from PIL import Image

from tests.conftest import write_raster
from tests.data.make_spacenet6 import make_spacenet6

# mask colours of the real dataset, in class-id order, then unlabeled
COLOURS = [
    (0x3C, 0x10, 0x98),
    (0x84, 0x29, 0xF6),
    (0x6E, 0xC1, 0xE4),
    (0xFE, 0xDD, 0x3A),
    (0xE2, 0xA9, 0x29),
    (0x9B, 0x9B, 0x9B),
]


def dubai_labels(rows: int, cols: int, seed: int) -> np.ndarray:
    """Blocky class ids 0-5 with a black (unannotated) corner marked 255."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 6, size=(rows // 16 + 1, cols // 16 + 1))
    ids = np.kron(coarse, np.ones((16, 16), int))[:rows, :cols]
    ids[:5, :5] = 255
    return ids


def write_dubai(
    root: Path,
    tiles: tuple[int, ...] = (1, 2, 3),
    parts: int = 2,
    size: tuple[int, int] = (96, 112),
) -> Path:
    """The Dubai layout: 'Tile N/images/*.jpg', 'Tile N/masks/*.png'; Tile 2 masks are palette
    PNGs."""
    base = root / "Semantic segmentation dataset"
    for t in tiles:
        for k in range(1, parts + 1):
            ids = dubai_labels(*size, seed=10 * t + k)
            rgb = np.zeros((*size, 3), np.uint8)
            for i, c in enumerate(COLOURS):
                rgb[ids == i] = c
            image = (rgb // 2 + 40).astype(np.uint8)
            (base / f"Tile {t}" / "images").mkdir(parents=True, exist_ok=True)
            (base / f"Tile {t}" / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(
                base / f"Tile {t}" / "images" / f"image_part_{k:03d}.jpg", quality=95
            )
            mask = Image.fromarray(rgb)
            if t == 2:
                mask = mask.quantize(colors=8, method=Image.Quantize.MAXCOVERAGE)
            mask.save(base / f"Tile {t}" / "masks" / f"image_part_{k:03d}.png")
    return base


@pytest.fixture(scope="session")
def dubai_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dubai(tmp_path_factory.mktemp("dubai"))


@pytest.fixture(scope="session")
def sn6_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sn6")
    make_spacenet6(root)
    return root


@pytest.fixture(scope="session")
def geotiff_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An RGB image in EPSG:32631 (1 m) and class labels on the same grid, with nodata stripes."""
    root = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(3)
    labels = np.kron(rng.integers(0, 3, size=(8, 8)), np.ones((16, 16), int)).astype(np.uint8)
    image = np.stack([labels * 60 + 20 + i for i in range(3)]).astype(np.uint8)
    image[:, :, :10] = 0  # no data on the left edge
    t = Affine(1.0, 0, 600000.0, 0, -1.0, 5750000.0)
    (root / "images").mkdir()
    (root / "labels").mkdir()
    img = write_raster(root / "images" / "a.tif", image, transform=t, nodata=0)
    lab = write_raster(root / "labels" / "a.tif", labels, transform=t, nodata=255)
    return img, lab
