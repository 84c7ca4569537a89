"""Turn a :class:`DataConfig` into training and validation loaders plus what the checkpoint records.

Builders are registered by dataset kind (``dubai``, ``geotiff``, ``spacenet6``); each returns a
:class:`DataBundle`. Normalization statistics are computed on the training split only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import DataLoader, Dataset, Sampler

from geoseg.classes import ClassTable
from geoseg.datasets.augment import Augment
from geoseg.datasets.patches import PatchDataset, Scene, index_scenes
from geoseg.datasets.samplers import ClassBalancedSampler, GridSampler, RandomSampler
from geoseg.datasets.stats import StatsResult, stream_stats
from geoseg.errors import ConfigError, DatasetError
from geoseg.normalize import Normalization
from geoseg.training.config import DataConfig, TrainConfig

__all__ = ["DATA_BUILDERS", "DataBundle", "build_data", "register_data"]

log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    train: Dataset[Any]
    train_sampler: Sampler[Any]
    val: Dataset[Any] | None
    val_sampler: Sampler[Any] | None
    classes: ClassTable
    normalization: Normalization
    stats: StatsResult
    band_names: tuple[str, ...]
    band_dtype: str
    description: dict[str, Any] = field(default_factory=dict)
    sar: bool = False
    gsd: float | None = None
    nodata: float | None = None

    def loaders(self, batch_size: int, num_workers: int) -> tuple[DataLoader[Any], DataLoader[Any] | None]:
        common: dict[str, Any] = {"batch_size": batch_size, "num_workers": num_workers,
                                  "persistent_workers": num_workers > 0}
        train = DataLoader(self.train, sampler=self.train_sampler, drop_last=len(self.train_sampler) >= batch_size, **common)  # type: ignore[arg-type]
        val = None
        if self.val is not None and self.val_sampler is not None and len(self.val_sampler):  # type: ignore[arg-type]
            val = DataLoader(self.val, sampler=self.val_sampler, **common)
        return train, val


def scene_stats(scenes: list[Scene], *, db_bands: int = 0) -> StatsResult:
    """Per-band statistics over every valid pixel of ``scenes`` (the first ``db_bands`` in dB)."""
    return stream_stats(((image, valid) for image, _, valid in (s.arrays() for s in scenes)), db_bands=db_bands)


def normalization_for(cfg: DataConfig, stats: StatsResult, *, dtype: str = "uint8") -> Normalization:
    """The normalization a config asks for, from the training split's statistics."""
    if cfg.normalization == "scale":
        return Normalization(kind="scale", scale=255.0 if dtype == "uint8" else 65535.0 if dtype == "uint16" else 1.0)
    return stats.normalization(cfg.normalization, sar_db=False)


def scene_bundle(cfg: TrainConfig, train: list[Scene], val: list[Scene], classes: ClassTable, *, sar: bool = False,
                 band_names: tuple[str, ...] = (), db_bands: int = 0,
                 description: dict[str, Any] | None = None) -> DataBundle:
    """Loaders over scenes; normalization statistics from the training split (its first
    ``db_bands`` bands in dB, converted by the model's normalization at training and prediction)."""
    d = cfg.data
    if not train:
        raise DatasetError("the training split holds no scene; check data.root and data.split")
    stats = scene_stats(train, db_bands=db_bands)
    first = train[0].arrays()[0]
    dtype = str(first.dtype)
    if db_bands and d.normalization != "scale":
        norm = stats.normalization(d.normalization, sar_db=True)
    else:
        norm = normalization_for(d, stats, dtype=dtype)
    n = len(classes)
    augment = (Augment.for_sar() if sar else Augment(brightness=d.brightness, contrast=d.contrast)) if d.augment else None
    train_index = index_scenes(train, n)
    if d.sampler == "balanced":
        sampler: Sampler[Any] = ClassBalancedSampler(train_index, d.patch_size, d.samples_per_epoch, power=d.balance_power,
                                                     seed=cfg.seed, max_nodata=d.max_nodata)
    else:
        sampler = RandomSampler(train_index, d.patch_size, d.samples_per_epoch, seed=cfg.seed, max_nodata=d.max_nodata)
    val_ds = val_sampler = None
    if val:
        val_ds = PatchDataset(val, num_classes=n, normalization=norm)
        val_sampler = GridSampler(index_scenes(val, n), d.patch_size, d.val_stride or d.patch_size, max_nodata=0.999)
    frequencies = train_index.class_frequencies()
    info = {
        "kind": d.kind, "root_name": d.root.rstrip("/").split("/")[-1] if d.root else "",
        "train_scenes": len(train), "val_scenes": len(val),
        "train_groups": sorted({s.group for s in train}), "val_groups": sorted({s.group for s in val}),
        "train_pixels": int(sum(s.shape[0] * s.shape[1] for s in train)),
        "class_pixels": {c.name: int(f) for c, f in zip(classes, frequencies, strict=True)},
        **(description or {}),
    }
    return DataBundle(
        train=PatchDataset(train, num_classes=n, normalization=norm, augment=augment, seed=cfg.seed),
        train_sampler=sampler, val=val_ds, val_sampler=val_sampler, classes=classes, normalization=norm, stats=stats,
        band_names=band_names or tuple(f"band{i + 1}" for i in range(first.shape[0])), band_dtype=dtype,
        description=info, sar=sar,
    )


def _dubai(cfg: TrainConfig) -> DataBundle:
    from geoseg.datasets.dubai import DUBAI_CLASSES, find_dubai, read_item, split_tiles

    d = cfg.data
    if not d.root:
        raise ConfigError("data.root: give the Dubai dataset folder (the one holding 'Tile 1' ... 'Tile 8')")
    split = d.split or {}
    val, test = split.get("val", [1]), split.get("test", [8])
    if not all(isinstance(t, int) for t in [*val, *test]):
        raise ConfigError(f"data.split: for dubai, expected tile numbers like {{val: [1], test: [8]}}, got {split!r}")
    parts = split_tiles(find_dubai(d.root), val=val, test=test)
    train = [read_item(it) for it in parts["train"]]
    valid = [read_item(it) for it in parts["val"]]
    return scene_bundle(cfg, train, valid, DUBAI_CLASSES, band_names=("red", "green", "blue"),
                        description={"dataset": "Dubai aerial imagery (Humans in the Loop / MBRSC)",
                                     "split": {"val_tiles": list(val), "test_tiles": list(test)}})


def _spacenet6(cfg: TrainConfig) -> DataBundle:
    from geoseg.datasets.spacenet6 import (
        BAND_NAMES,
        SN6_CLASSES,
        SN6_EDGE_CLASSES,
        find_spacenet6,
        parse_products,
        split_by_location,
        tile_scene,
    )

    d = cfg.data
    if not d.root:
        raise ConfigError("data.root: give the SpaceNet 6 folder (the one holding AOI_11_Rotterdam/)")
    products = parse_products(d.product)
    tiles = find_spacenet6(d.root, products)
    val_fraction = float((d.split or {}).get("val", 0.2) or 0.0)
    parts = split_by_location(tiles, val_fraction, seed=cfg.seed)
    make = lambda ts: [tile_scene(t, products, target=d.target) for t in ts]  # noqa: E731
    sar = products == ["SAR-Intensity"]
    classes = SN6_EDGE_CLASSES if d.target == "footprint-edge-contact" else SN6_CLASSES
    train, val = make(parts["train"]), make(parts["val"])
    bundle = scene_bundle(cfg, train, val, classes, sar=sar, db_bands=4 if sar else 0,
                          band_names=tuple(b for p in products for b in BAND_NAMES[p]),
                          description={"dataset": "SpaceNet 6 (AOI_11_Rotterdam)", "products": products, "target": d.target,
                                       "split": {"by": "location", "val_fraction": val_fraction,
                                                 "excluded_tiles": len(parts["excluded"])}})
    return bundle


def _geotiff(cfg: TrainConfig) -> DataBundle:
    from geoseg.datasets.geotiff import expand_paths, geotiff_scenes

    d = cfg.data
    images = expand_paths(d.images, d.root)
    if not images:
        raise ConfigError(f"data.images: no file matches {d.images!r} under {d.root or '.'}")
    scenes, classes, nodata = geotiff_scenes(images, expand_paths(d.labels, d.root), label_attribute=d.label_attribute or None,
                                             classes=d.classes)
    from geoseg.datasets.geotiff import split_scenes_by_location

    val_fraction = float((d.split or {}).get("val", 0.2) or 0.0)
    parts = split_scenes_by_location(scenes, val_fraction, seed=cfg.seed)
    bundle = scene_bundle(cfg, parts["train"], parts["val"], classes,
                          description={"dataset": "GeoTIFF images with labels", "images": d.images, "labels": d.labels,
                                       "split": {"by": "location", "val_fraction": val_fraction}})
    bundle.nodata = nodata
    return bundle


DATA_BUILDERS: dict[str, Callable[[TrainConfig], DataBundle]] = {"dubai": _dubai, "spacenet6": _spacenet6, "geotiff": _geotiff}


def register_data(kind: str, builder: Callable[[TrainConfig], DataBundle]) -> None:
    DATA_BUILDERS[kind] = builder


def build_data(cfg: TrainConfig) -> DataBundle:
    kind = cfg.data.kind
    if kind not in DATA_BUILDERS:
        raise ConfigError(f"data.kind: {kind!r} is not allowed; expected one of {', '.join(sorted(DATA_BUILDERS))}")
    bundle = DATA_BUILDERS[kind](cfg)
    if len(bundle.train_sampler) == 0:  # type: ignore[arg-type]
        raise DatasetError("the training split yields no sample; lower data.max_nodata or data.patch_size")
    return bundle
