"""The registry of dataset kinds: training (:func:`geoseg.training.train`), evaluation
(:func:`geoseg.evaluation.pairs_from_config`) and ``geoseg dataset check|stats`` look a kind up
here, so a kind registered once works in all of them::

    from geoseg.datasets import DatasetKind, register_dataset_kind

    class MyTiles(DatasetKind):                 # TorchGeo style: one class per layout
        name = "my-tiles"
        def find(self, source): return sorted(Path(source.root).glob("*.tif"))
        def scene(self, item, source): return read_my_scene(item)   # -> Scene
        def classes(self, source): return ClassTable.from_names(["background", "field"])

    register_dataset_kind(MyTiles())
    # or, from functions: DatasetKind("my-tiles", find=..., scene=..., classes=...)

A kind needs three things: ``find`` (the items of a dataset, e.g. files), ``scene`` (one item to a
:class:`~geoseg.datasets.scene.Scene`) and ``classes``. ``split`` defaults to a seeded split by
the fractions in ``data.split`` (``{val: 0.2, test: 0.0}``); ``scenes``, ``pairs``, ``check`` and
``stats`` default to generic versions built on them (:class:`~geoseg.datasets.kind.DatasetKind`).
The built-in kinds are classes too: :class:`~geoseg.datasets.dubai.DubaiKind`,
:class:`~geoseg.datasets.geotiff_kind.GeoTiffKind`,
:class:`~geoseg.datasets.spacenet6.SpaceNet6Kind`.

This module needs no torch: the built-in kinds import their readers when first used.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geoseg.datasets.check import CheckReport
from geoseg.datasets.dubai import DubaiKind, stats_dubai
from geoseg.datasets.geotiff_kind import GeoTiffKind
from geoseg.datasets.kind import DatasetKind, split_by_fraction, split_scenes
from geoseg.datasets.source import DataSource, EvalPair, OnError, Progress, SceneSet
from geoseg.datasets.spacenet6 import SpaceNet6Kind
from geoseg.datasets.stats import StatsResult
from geoseg.errors import ConfigError, DatasetError

__all__ = [
    "DATASET_KINDS",
    "DataSource",
    "DatasetKind",
    "EvalPair",
    "OnError",
    "Progress",
    "SceneSet",
    "check_dataset",
    "dataset_kind",
    "dataset_stats",
    "eval_pairs",
    "kind_names",
    "register_dataset_kind",
    "split_by_fraction",
    "split_scenes",
]


DATASET_KINDS: dict[str, DatasetKind] = {}


def register_dataset_kind(kind: DatasetKind, *, replace: bool = False) -> DatasetKind:
    """Make ``kind`` known to training configs, ``evaluate`` and ``geoseg dataset``.

    Raises:
        ConfigError: the name is taken (pass ``replace=True`` to replace it).
    """
    if not kind.name or not isinstance(kind.name, str):
        raise ConfigError(f"a dataset kind needs a name, got {kind.name!r}")
    if kind.name in DATASET_KINDS and not replace:
        raise ConfigError(
            f"dataset kind {kind.name!r} is already registered; pass replace=True to replace it"
        )
    DATASET_KINDS[kind.name] = kind
    return kind


def kind_names() -> list[str]:
    """The registered kind names, sorted."""
    return sorted(DATASET_KINDS)


def dataset_kind(name: str) -> DatasetKind:
    """The registered kind called ``name``.

    Raises:
        ConfigError: no such kind; the message lists the known ones.
    """
    kind = DATASET_KINDS.get(name)
    if kind is None:
        raise ConfigError(
            f"data.kind: {name!r} is not allowed; expected one of {', '.join(kind_names())} "
            "(or register yours with geoseg.datasets.register_dataset_kind)"
        )
    return kind


def eval_pairs(source: DataSource, split: str = "test", *, seed: int = 0) -> list[EvalPair]:
    """Held-out images of a dataset with their labels, for ``evaluate``.

    Raises:
        ConfigError: unknown kind.
        DatasetError: the split holds no image.
    """
    return dataset_kind(source.kind).pairs(source, split, seed)


def check_dataset(
    root: str | os.PathLike[str],
    kind: str,
    *,
    images: str = "images/*.tif",
    labels: str = "labels/*.tif",
    product: str = "SAR-Intensity",
    on_error: OnError = "stop",
    progress: Progress | None = None,
    source: DataSource | None = None,
) -> CheckReport:
    """Read every file of a dataset once and report what a training run would meet.

    Args:
        root: the dataset folder.
        kind: a registered dataset kind (``dubai``, ``geotiff``, ``spacenet6`` or one of yours).
        images, labels: globs under ``root`` (``geotiff``).
        product: SpaceNet 6 product(s).
        on_error: ``"stop"`` at the first unreadable file, or ``"skip"`` it and list it.
        progress: called with ``(files done, files in all)``.
        source: the whole data description instead (``root`` and ``kind`` still win).

    Raises:
        ConfigError: an unknown kind.
        DatasetError: the folder is missing or empty, the layout is not the ``kind`` asked for, or
            (with ``on_error="stop"``) a file cannot be read.
    """
    entry = dataset_kind(kind)
    base = Path(root)
    if not base.exists():
        raise DatasetError(f"{base}: no such folder")
    if base.is_dir() and not any(base.iterdir()):
        raise DatasetError(f"{base}: the folder is empty; expected a {kind} dataset")
    src = _source(root, kind, source, images=images, labels=labels, product=product)
    return entry.check(src, on_error, progress)


def _source(
    root: str | os.PathLike[str], kind: str, source: DataSource | None, **fields: Any
) -> DataSource:
    if source is None:
        return DataSource(kind=kind, root=str(root), **fields)
    return dataclasses.replace(source, kind=kind, root=str(root))


def dataset_stats(
    root: str | os.PathLike[str],
    kind: str,
    *,
    images: str = "images/*.tif",
    product: str = "SAR-Intensity",
    tiles: Sequence[int] | None = None,
    sar_db: bool | None = None,
    source: DataSource | None = None,
) -> StatsResult:
    """Per-band mean, std and 2/98 percentiles over every valid image pixel (SAR in dB by default).

    ``tiles`` keeps only those Dubai tiles. Kinds without their own statistics stream their scenes.
    """
    entry = dataset_kind(kind)
    src = _source(root, kind, source, images=images, product=product)
    if tiles is not None and kind == "dubai":
        return stats_dubai(src, sar_db, tiles=tiles)
    return entry.stats(src, sar_db)


for _kind in (DubaiKind(), GeoTiffKind(), SpaceNet6Kind()):
    register_dataset_kind(_kind)
