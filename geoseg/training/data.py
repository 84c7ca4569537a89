"""Turn a :class:`DataConfig` into training and validation loaders plus what the checkpoint records.

Scenes come from the dataset kind's registry entry (:mod:`geoseg.datasets.kinds`: ``dubai``,
``geotiff``, ``spacenet6`` or one registered by the user). Normalization statistics are computed
on the training split only.
"""

from __future__ import annotations

import logging
from collections.abc import Sized
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from geoseg.classes import ClassTable
from geoseg.datasets.augment import Augment
from geoseg.datasets.kinds import dataset_kind
from geoseg.datasets.patches import PatchDataset, Scene, index_scenes
from geoseg.datasets.samplers import ClassBalancedSampler, GridSampler, RandomSampler
from geoseg.datasets.stats import StatsResult, stream_stats
from geoseg.errors import DatasetError
from geoseg.io.reader import ground_pixel_size
from geoseg.normalize import Normalization
from geoseg.training.config import DataConfig, TrainConfig

__all__ = ["DataBundle", "build_data", "scene_bundle", "training_gsd"]

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

    def loaders(
        self, batch_size: int, num_workers: int
    ) -> tuple[DataLoader[Any], DataLoader[Any] | None]:
        common: dict[str, Any] = {
            "batch_size": batch_size,
            "num_workers": num_workers,
            "persistent_workers": num_workers > 0,
        }
        train = DataLoader(
            self.train,
            sampler=self.train_sampler,
            drop_last=_count(self.train_sampler) >= batch_size,
            **common,
        )
        val = None
        if self.val is not None and self.val_sampler is not None and _count(self.val_sampler):
            val = DataLoader(self.val, sampler=self.val_sampler, **common)
        return train, val


def _count(sampler: Sampler[Any]) -> int:
    """Samples per epoch of one of our samplers (torch's ``Sampler`` type declares no ``len``)."""
    return len(cast(Sized, sampler))


def scene_stats(scenes: list[Scene], *, db_bands: int = 0) -> StatsResult:
    """Per-band statistics over every valid pixel of ``scenes`` (the first ``db_bands`` in dB)."""
    return stream_stats(
        ((image, valid) for image, _, valid in (s.arrays() for s in scenes)), db_bands=db_bands
    )


def training_gsd(scenes: list[Scene]) -> float | None:
    """The median ground pixel size (metres) of the georeferenced ``scenes``, or None."""
    sizes = [
        size
        for s in scenes
        if (size := ground_pixel_size(s.transform, s.crs, s.shape[0])) is not None
    ]
    return round(float(np.median(sizes)), 6) if sizes else None


def normalization_for(
    cfg: DataConfig, stats: StatsResult, *, dtype: str = "uint8"
) -> Normalization:
    """The normalization a config asks for, from the training split's statistics."""
    if cfg.normalization == "scale":
        return Normalization(
            kind="scale", scale=255.0 if dtype == "uint8" else 65535.0 if dtype == "uint16" else 1.0
        )
    return stats.normalization(cfg.normalization, sar_db=False)


def scene_bundle(
    cfg: TrainConfig,
    train: list[Scene],
    val: list[Scene],
    classes: ClassTable,
    *,
    sar: bool = False,
    band_names: tuple[str, ...] = (),
    db_bands: int = 0,
    description: dict[str, Any] | None = None,
    normalization: Normalization | None = None,
) -> DataBundle:
    """Loaders over scenes; normalization statistics from the training split (its first
    ``db_bands`` bands in dB, converted by the model's normalization at training and prediction),
    unless a ``normalization`` is given (that of a model being fine-tuned)."""
    d = cfg.data
    if not train:
        raise DatasetError("the training split holds no scene; check data.root and data.split")
    stats = scene_stats(train, db_bands=db_bands)
    first = train[0].arrays()[0]
    dtype = str(first.dtype)
    if normalization is not None:
        norm = normalization
    elif db_bands and d.normalization != "scale":
        norm = stats.normalization(d.normalization, sar_db=True)
    else:
        norm = normalization_for(d, stats, dtype=dtype)
    n = len(classes)
    optical = Augment(
        brightness=d.brightness,
        contrast=d.contrast,
        scale=(d.scale[0], d.scale[1]),
        saturation=d.saturation,
        blur=d.blur,
        haze=d.haze,
        jpeg=d.jpeg,
        noise=d.noise,
    )
    augment = (Augment.for_sar() if sar else optical) if d.augment else None
    train_index = index_scenes(train, n)
    if d.sampler == "balanced":
        sampler: Sampler[Any] = ClassBalancedSampler(
            train_index,
            d.patch_size,
            d.samples_per_epoch,
            power=d.balance_power,
            seed=cfg.seed,
            max_nodata=d.max_nodata,
        )
    else:
        sampler = RandomSampler(
            train_index, d.patch_size, d.samples_per_epoch, seed=cfg.seed, max_nodata=d.max_nodata
        )
    val_ds = val_sampler = None
    if val:
        val_ds = PatchDataset(val, num_classes=n, normalization=norm)
        val_sampler = GridSampler(
            index_scenes(val, n), d.patch_size, d.val_stride or d.patch_size, max_nodata=0.999
        )
    frequencies = train_index.class_frequencies()
    info = {
        "kind": d.kind,
        "root_name": d.root.rstrip("/").split("/")[-1] if d.root else "",
        "train_scenes": len(train),
        "val_scenes": len(val),
        "train_groups": sorted({s.group for s in train}),
        "val_groups": sorted({s.group for s in val}),
        "train_pixels": int(sum(s.shape[0] * s.shape[1] for s in train)),
        "class_pixels": {c.name: int(f) for c, f in zip(classes, frequencies, strict=True)},
        **(description or {}),
    }
    return DataBundle(
        train=PatchDataset(
            train, num_classes=n, normalization=norm, augment=augment, seed=cfg.seed
        ),
        train_sampler=sampler,
        val=val_ds,
        val_sampler=val_sampler,
        classes=classes,
        normalization=norm,
        stats=stats,
        band_names=band_names or tuple(f"band{i + 1}" for i in range(first.shape[0])),
        band_dtype=dtype,
        description=info,
        sar=sar,
    )


def build_data(cfg: TrainConfig, *, normalization: Normalization | None = None) -> DataBundle:
    """Loaders for ``cfg``: the scenes of its dataset kind (:mod:`geoseg.datasets.kinds`), patched
    (normalized with ``normalization`` if given, else with the training split's statistics).

    Raises:
        ConfigError: an unknown kind or a bad ``data`` key.
        DatasetError: the training split yields no sample.
    """
    scenes = dataset_kind(cfg.data.kind).scenes(cfg.data, cfg.seed)
    bundle = scene_bundle(
        cfg,
        scenes.train,
        scenes.val,
        scenes.classes,
        sar=scenes.sar,
        band_names=scenes.band_names,
        db_bands=scenes.db_bands,
        description=scenes.description,
        normalization=normalization,
    )
    bundle.nodata = scenes.nodata
    bundle.gsd = training_gsd(scenes.train)
    if scenes.band_dtype:
        bundle.band_dtype = scenes.band_dtype
    if _count(bundle.train_sampler) == 0:
        raise DatasetError(
            "the training split yields no sample; lower data.max_nodata or data.patch_size"
        )
    return bundle
