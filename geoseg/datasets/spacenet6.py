"""SpaceNet 6 (Multi-Sensor All-Weather Mapping, Rotterdam) in its official layout.

::

    <root>/AOI_11_Rotterdam/SAR-Intensity/SN6_Train_AOI_11_Rotterdam_SAR-Intensity_<start>_<stop>_tile_<n>.tif
    <root>/AOI_11_Rotterdam/{PS-RGB,PS-RGBNIR,RGBNIR,PAN}/SN6_Train_AOI_11_Rotterdam_<product>_<start>_<stop>_tile_<n>.tif
    <root>/AOI_11_Rotterdam/geojson_buildings/SN6_Train_AOI_11_Rotterdam_Buildings_<start>_<stop>_tile_<n>.geojson
    <root>/AOI_11_Rotterdam/SummaryData/SAR_orientations.txt     ("<start>_<stop> 0|1" per line)

A sample is SAR-Intensity (HH, HV, VH, VV), an optical product, or both stacked on the SAR grid
(optical is warped onto it when grids differ). SAR stays linear here; the model's
:class:`~geoseg.normalize.Normalization` converts it to dB (``sar_db``) and clips it, at training
and at prediction alike. Zero or NaN SAR pixels (outside the swath) and all-zero optical pixels are
nodata. Buildings are burnt from the tile's GeoJSON (any CRS); the target is the footprint, or
footprint + edge + contact (the winning recipe's three channels, encoded here as classes
0 background, 1 building, 2 edge, 3 contact so that a softmax loss can learn them).
Tiles of strips imaged looking the other way (orientation 1) can be rotated by 180° to a common
look direction. Splits go by location: tiles that overlap in space stay on one side.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from geoseg.classes import IGNORE_INDEX, ClassInfo, ClassTable
from geoseg.datasets.check import CheckReport, _handle, _start
from geoseg.datasets.kind import DatasetKind
from geoseg.datasets.scene import Scene
from geoseg.datasets.source import DataSource, EvalPair, OnError, Progress, SceneSet
from geoseg.datasets.stats import StatsResult, stream_stats
from geoseg.errors import ConfigError, DatasetError, GeosegError
from geoseg.io.open import grid_of, open_raster, warped_onto

__all__ = [
    "PRODUCTS",
    "SN6_CLASSES",
    "SN6_EDGE_CLASSES",
    "SN6Tile",
    "find_spacenet6",
    "load_tile",
    "split_by_location",
    "targets_from_footprint",
]

PRODUCTS = {"SAR-Intensity": 4, "PS-RGB": 3, "PS-RGBNIR": 4, "RGBNIR": 4, "PAN": 1}
BAND_NAMES = {
    "SAR-Intensity": ("HH", "HV", "VH", "VV"),
    "PS-RGB": ("red", "green", "blue"),
    "PS-RGBNIR": ("red", "green", "blue", "nir"),
    "RGBNIR": ("red", "green", "blue", "nir"),
    "PAN": ("pan",),
}
_NAME = re.compile(
    r"^SN6_(?P<split>Train|Test_Public)_AOI_11_Rotterdam_(?P<product>[A-Za-z-]+)_(?P<start>"
    r"\d{14})_(?P<stop>\d{14})_tile_(?P<tile>\d+)\.(tif|geojson)$"
)

SN6_CLASSES = ClassTable(
    (ClassInfo(0, "background", (0, 0, 0)), ClassInfo(1, "building", (230, 25, 75)))
)
SN6_EDGE_CLASSES = ClassTable(
    (
        ClassInfo(0, "background", (0, 0, 0)),
        ClassInfo(1, "building", (230, 25, 75)),
        ClassInfo(2, "edge", (255, 225, 25)),
        ClassInfo(3, "contact", (0, 130, 200)),
    )
)


@dataclass(frozen=True)
class SN6Tile:
    """One tile: its files per product, its buildings file, strip and orientation."""

    tile: int
    strip: str
    files: dict[str, Path] = field(hash=False)
    buildings: Path | None = field(default=None, hash=False)
    orientation: int = 0


def _aoi(root: Path) -> Path:
    for cand in (root, root / "AOI_11_Rotterdam", *root.glob("**/AOI_11_Rotterdam")):
        if cand.is_dir() and any((cand / p).is_dir() for p in PRODUCTS):
            return cand
    raise DatasetError(
        f"{root}: no SpaceNet 6 layout found; expected <root>/AOI_11_Rotterdam/SAR-Intensity/"
        "SN6_Train_AOI_11_Rotterdam_SAR-Intensity_<start>_<stop>_tile_<n>.tif "
        "(and PS-RGB/, geojson_buildings/...)"
    )


def parse_products(text: str) -> list[str]:
    """``"SAR-Intensity+PS-RGB"`` to ``["SAR-Intensity", "PS-RGB"]`` (checked by
    :func:`find_spacenet6`)."""
    return [p.strip() for p in text.split("+") if p.strip()]


def read_orientations(path: Path) -> dict[str, int]:
    """``SAR_orientations.txt``: strip id (``<start>_<stop>``) to 0 or 1."""
    out: dict[str, int] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1"):
            raise DatasetError(f"{path}:{n}: expected '<start>_<stop> 0|1', got {line!r}")
        out[parts[0]] = int(parts[1])
    return out


def find_spacenet6(
    root: str | os.PathLike[str], products: Sequence[str] = ("SAR-Intensity",)
) -> list[SN6Tile]:
    """Every tile that has all ``products`` (and its buildings GeoJSON when present).

    Raises:
        DatasetError: wrong layout, an unknown product, or no tile with every product.
    """
    unknown = [p for p in products if p not in PRODUCTS]
    if unknown:
        raise DatasetError(
            f"unknown SpaceNet 6 product {unknown[0]!r}; expected some of {', '.join(PRODUCTS)}"
        )
    aoi = _aoi(Path(root))
    found: dict[tuple[str, int], dict[str, Path]] = defaultdict(dict)
    for product in products:
        folder = aoi / product
        if not folder.is_dir():
            raise DatasetError(
                f"{aoi}: no {product}/ folder; this SpaceNet 6 copy holds "
                f"{', '.join(sorted(p.name for p in aoi.iterdir() if p.is_dir()))}"
            )
        for f in folder.glob("*.tif"):
            m = _NAME.match(f.name)
            if m and m["product"] == product:
                found[(f"{m['start']}_{m['stop']}", int(m["tile"]))][product] = f
    buildings: dict[tuple[str, int], Path] = {}
    for f in (
        (aoi / "geojson_buildings").glob("*.geojson")
        if (aoi / "geojson_buildings").is_dir()
        else []
    ):
        m = _NAME.match(f.name)
        if m:
            buildings[(f"{m['start']}_{m['stop']}", int(m["tile"]))] = f
    orient_file = aoi / "SummaryData" / "SAR_orientations.txt"
    orientations = read_orientations(orient_file) if orient_file.is_file() else {}
    tiles = [
        SN6Tile(tile, strip, files, buildings.get((strip, tile)), orientations.get(strip, 0))
        for (strip, tile), files in sorted(found.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        if len(files) == len(products)
    ]
    if not tiles:
        raise DatasetError(
            f"{aoi}: no tile has every product of {list(products)}; file names must follow "
            "SN6_Train_AOI_11_Rotterdam_<product>_<start>_<stop>_tile_<n>.tif"
        )
    return tiles


def targets_from_footprint(
    footprint: np.ndarray,
    instances: np.ndarray | None = None,
    *,
    edge_width: int = 2,
    contact_distance: int = 4,
) -> np.ndarray:
    """Footprint (+ instance ids) to classes 0 background, 1 building, 2 edge, 3 contact.

    Edge: building pixels within ``edge_width`` of a non-building pixel. Contact: pixels (building
    or not) within ``contact_distance`` of two different buildings.
    """
    from scipy import ndimage

    fp = footprint.astype(bool)
    out = fp.astype(np.uint8)
    eroded = ndimage.binary_erosion(fp, iterations=edge_width, border_value=1)
    out[fp & ~eroded] = 2
    if instances is not None and instances.max() > 1:
        near = np.zeros(fp.shape, np.int32)
        struct = ndimage.generate_binary_structure(2, 1)
        for i in np.unique(instances[instances > 0]):
            grown = ndimage.binary_dilation(
                instances == i, structure=struct, iterations=contact_distance
            )
            near += grown
        out[near >= 2] = 3
    return out


def building_polygons(tile: SN6Tile, crs: CRS | None) -> list[Any]:
    """The tile's building footprints (non-empty), reprojected to ``crs``; [] without a GeoJSON."""
    import geopandas as gpd

    if tile.buildings is None:
        return []
    try:
        gdf = gpd.read_file(tile.buildings)
    except Exception as exc:
        raise DatasetError(f"{tile.buildings}: cannot read the buildings GeoJSON ({exc})") from None
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if len(gdf) and gdf.crs is not None and crs is not None and gdf.crs != crs:
        gdf = gdf.to_crs(crs)
    return list(gdf.geometry)


def _burn(
    tile: SN6Tile, shape: tuple[int, int], transform: Affine, crs: CRS | None
) -> tuple[np.ndarray, np.ndarray]:
    """Instance ids (1..n) burnt from the tile's buildings GeoJSON onto the grid."""
    from rasterio.features import rasterize

    inst = np.zeros(shape, np.int32)
    polygons = building_polygons(tile, crs)
    if polygons:
        inst = rasterize(
            ((g, i + 1) for i, g in enumerate(polygons)),
            out_shape=shape,
            transform=transform,
            dtype="int32",
            fill=0,
        )
    return inst, inst > 0


def load_tile(
    tile: SN6Tile,
    products: Sequence[str] = ("SAR-Intensity",),
    *,
    target: str = "footprint",
    flip_orientation: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, object]]:
    """(image, labels, valid, geo) of a tile, on the grid of its first product.

    Image bands follow ``products`` (float32); labels are class ids (``IGNORE_INDEX`` where the
    image has no data); ``geo`` holds ``crs`` and ``transform`` of the (unrotated) grid.
    """
    first = tile.files[products[0]]
    bands: list[np.ndarray] = []
    valid: np.ndarray | None = None
    with open_raster(first) as ref:
        grid = grid_of(ref)
        crs, transform, shape = ref.crs, ref.transform, (ref.height, ref.width)
    for product in products:
        with open_raster(tile.files[product]) as src:
            if src.count != PRODUCTS[product]:
                raise DatasetError(
                    f"{tile.files[product].name}: {product} should have {PRODUCTS[product]} "
                    f"band(s), has {src.count}"
                )
            if (src.crs, src.transform, (src.height, src.width)) != (crs, transform, shape):
                with warped_onto(src, grid) as vrt:
                    data = vrt.read().astype(np.float32)
            else:
                data = src.read().astype(np.float32)
        ok = np.isfinite(data).all(0) & (data != 0).any(0)
        if product == "SAR-Intensity":
            ok &= (data > 0).all(0)
        valid = ok if valid is None else valid & ok
        bands.append(np.nan_to_num(data, nan=0.0))
    image = np.concatenate(bands)
    instances, footprint = _burn(tile, shape, transform, crs)
    labels = (
        targets_from_footprint(footprint, instances)
        if target == "footprint-edge-contact"
        else footprint.astype(np.uint8)
    )
    assert valid is not None
    labels[~valid] = IGNORE_INDEX
    if flip_orientation and tile.orientation == 1:
        image, labels, valid = image[:, ::-1, ::-1], labels[::-1, ::-1], valid[::-1, ::-1]
    return (
        np.ascontiguousarray(image),
        np.ascontiguousarray(labels),
        np.ascontiguousarray(valid),
        {"crs": crs, "transform": transform},
    )


def tile_scene(
    tile: SN6Tile,
    products: Sequence[str],
    *,
    target: str = "footprint",
    flip_orientation: bool = True,
) -> Scene:
    """A lazily loaded :class:`Scene` of one tile (pixels are read when a patch needs them)."""
    with open_raster(tile.files[products[0]]) as ref:
        size, transform, crs = (ref.height, ref.width), ref.transform, ref.crs

    def load() -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        image, labels, valid, _ = load_tile(
            tile, products, target=target, flip_orientation=flip_orientation
        )
        return image, labels, valid

    return Scene(
        image=None,
        loader=load,
        size=size,
        name=str(tile.files[products[0]]),
        group=f"tile {tile.tile}",
        transform=transform,
        crs=crs.to_string() if crs else None,
    )


def _bounds(tile: SN6Tile) -> tuple[float, float, float, float]:
    with open_raster(next(iter(tile.files.values()))) as src:
        b = src.bounds
    return b.left, b.bottom, b.right, b.top


def split_by_location(
    tiles: Sequence[SN6Tile], val_fraction: float = 0.2, *, seed: int = 0
) -> dict[str, list[SN6Tile]]:
    """Train/val split in which no validation tile overlaps a training tile (see :mod:`.splits`)."""
    from geoseg.datasets.splits import split_by_location as split

    idx = split([_bounds(t) for t in tiles], val_fraction, seed=seed)
    return {k: [tiles[i] for i in v] for k, v in idx.items()}


def pixel_footprints(tile: SN6Tile, geo: dict[str, Any]) -> list[Any] | None:
    """True footprints of a tile in its pixel coordinates (``geo``: its CRS and transform); None
    without a GeoJSON."""
    if tile.buildings is None:
        return None
    import shapely

    inv = ~geo["transform"]
    return [
        shapely.affinity.affine_transform(g, [inv.a, inv.b, inv.d, inv.e, inv.xoff, inv.yoff])
        for g in building_polygons(tile, geo["crs"])
    ]


def _products(source: DataSource) -> list[str]:
    if not source.root:
        raise ConfigError(
            "data.root: give the SpaceNet 6 folder (the one holding AOI_11_Rotterdam/)"
        )
    return parse_products(source.product)


def _val_fraction(source: DataSource) -> float:
    return float((source.split or {}).get("val", 0.2) or 0.0)


class SpaceNet6Kind(DatasetKind):
    """The ``spacenet6`` kind: SpaceNet 6 Rotterdam, split by location."""

    name = "spacenet6"
    description = (
        "SpaceNet 6 Rotterdam: SAR-Intensity and optical products with building footprints"
    )

    def classes(self, source: DataSource) -> ClassTable:
        """Background and building, plus edge and contact for ``footprint-edge-contact``."""
        return SN6_EDGE_CLASSES if source.target == "footprint-edge-contact" else SN6_CLASSES

    def find(self, source: DataSource) -> list[SN6Tile]:
        """Every tile that has all products of ``source.product``."""
        return find_spacenet6(source.root, _products(source))

    def split(
        self, items: Sequence[SN6Tile], source: DataSource, seed: int = 0
    ) -> dict[str, list[SN6Tile]]:
        """Split by location; there is no separate test part (``test`` is the validation part)."""
        parts = split_by_location(items, _val_fraction(source), seed=seed)
        return {**parts, "test": parts["val"]}

    def scene(self, item: SN6Tile, source: DataSource) -> Scene:
        """A lazily read scene of one tile."""
        return tile_scene(item, _products(source), target=source.target)

    def scenes(self, source: DataSource, seed: int = 0) -> SceneSet:
        """Training and validation scenes (read lazily), split by location; SAR normalized in
        dB."""
        products = _products(source)
        parts = self.split(find_spacenet6(source.root, products), source, seed)
        sar = products == ["SAR-Intensity"]
        make = lambda ts: [tile_scene(t, products, target=source.target) for t in ts]  # noqa: E731
        return SceneSet(
            make(parts["train"]),
            make(parts["val"]),
            self.classes(source),
            sar=sar,
            db_bands=4 if sar else 0,
            band_names=tuple(b for p in products for b in BAND_NAMES[p]),
            description={
                "dataset": "SpaceNet 6 (AOI_11_Rotterdam)",
                "products": products,
                "target": source.target,
                "split": {
                    "by": "location",
                    "val_fraction": _val_fraction(source),
                    "excluded_tiles": len(parts["excluded"]),
                },
            },
        )

    def pairs(self, source: DataSource, split: str = "test", seed: int = 0) -> list[EvalPair]:
        """Held-out tiles (the validation part for ``test`` and ``val``) with labels and true
        footprints."""
        products = _products(source)
        if len(products) > 1:
            raise DatasetError(
                "evaluation runs on one product file per tile; stacked products are not "
                "supported yet"
            )
        part = self.split(find_spacenet6(source.root, products), source, seed)[
            "val" if split != "train" else "train"
        ]
        pairs = []
        for t in part:
            _, tile_ids, _, geo = load_tile(
                t, products, target=source.target, flip_orientation=False
            )
            pairs.append(
                EvalPair(
                    str(t.files[products[0]]),
                    tile_ids.astype(np.int64),
                    t.files[products[0]].name,
                    footprints=pixel_footprints(t, geo),
                )
            )
        return pairs

    def check(
        self, source: DataSource, on_error: OnError = "stop", progress: Progress | None = None
    ) -> CheckReport:
        """Every tile read once: products, footprints, grids."""
        base, report, counts = _start(source)
        nodata = total = 0
        products = parse_products(source.product)
        tiles = find_spacenet6(base, products)
        report.images = len(tiles)
        report.labels = sum(t.buildings is not None for t in tiles)
        report.files = report.images * len(products) + report.labels
        report.groups = dict(Counter(f"orientation {t.orientation}" for t in tiles))
        missing = [t.tile for t in tiles if t.buildings is None]
        if missing:
            report.problems.append(
                f"{len(missing)} tile(s) have no buildings GeoJSON (first: tile {missing[0]})"
            )
        for k, t in enumerate(tiles):
            try:
                _, lab, valid, info = load_tile(t, products, flip_orientation=False)
            except (GeosegError, OSError) as exc:
                _handle(report, str(t.files[products[0]]), exc, on_error)
                continue
            geo: dict[str, Any] = dict(info)
            crs = geo["crs"].to_string() if geo["crs"] else "none"
            res = f"{abs(geo['transform'].a):.3g} m"
            report.add_grid(crs, res)
            nodata += int((~valid).sum())
            total += valid.size
            counts.update(dict(zip(*np.unique(lab[valid], return_counts=True), strict=True)))
            if progress:
                progress(k + 1, len(tiles))
        report.nodata_fraction = nodata / max(total, 1)
        report.class_pixels = {
            "background": int(counts.get(0, 0)),
            "building": int(counts.get(1, 0)),
        }
        return report

    def stats(self, source: DataSource, sar_db: bool | None = None) -> StatsResult:
        """Statistics of the tiles (SAR in dB unless ``sar_db`` is False)."""
        products = parse_products(source.product)
        db = (products[0] == "SAR-Intensity") if sar_db is None else sar_db
        chips = (
            load_tile(t, products, flip_orientation=False)
            for t in find_spacenet6(source.root, products)
        )
        return stream_stats(
            ((image, valid) for image, _, valid, _ in chips), db_bands=4 if db else 0
        )
