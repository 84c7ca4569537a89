"""The registry of dataset kinds: how a layout finds its files, splits them, builds scenes and is
checked.

Training (:func:`geoseg.training.train`), evaluation (:func:`geoseg.evaluation.pairs_from_config`)
and ``geoseg dataset check|stats`` all look a kind up here, so a kind registered once works in
all of them::

    from geoseg.datasets import DatasetKind, register_dataset_kind

    register_dataset_kind(DatasetKind(
        "my-tiles",
        find=lambda source: sorted(Path(source.root).glob("*.tif")),
        scene=lambda path, source: read_my_scene(path),   # -> Scene (name: the image's path)
        classes=ClassTable.from_names(["background", "field"]),
    ))

A kind needs three things: ``find`` (the items of a dataset, e.g. files), ``scene`` (one item
to a :class:`~geoseg.datasets.scene.Scene`) and ``classes``. ``split`` defaults to a seeded split
by the fractions in ``data.split`` (``{val: 0.2, test: 0.0}``); ``scenes``, ``pairs``, ``check``
and ``stats`` default to generic versions built on ``find``, ``split`` and ``scene``. The
built-in kinds (``dubai``, ``geotiff``, ``spacenet6``) give their own, faster versions.

This module needs no torch: the built-in kinds import their readers when first called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from geoseg.classes import ClassTable
from geoseg.datasets.scene import Scene
from geoseg.errors import ConfigError, DatasetError

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.datasets.check import CheckReport
    from geoseg.datasets.stats import StatsResult

__all__ = [
    "DATASET_KINDS",
    "DataSource",
    "DatasetKind",
    "EvalPair",
    "OnError",
    "Progress",
    "SceneSet",
    "dataset_kind",
    "eval_pairs",
    "kind_names",
    "register_dataset_kind",
    "split_by_fraction",
    "split_scenes",
]

OnError = Literal["stop", "skip"]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DataSource:
    """Where a dataset lies and how it is laid out: the ``data`` keys every kind reads.

    Training's :class:`~geoseg.training.config.DataConfig` extends it with how patches are cut.

    Attributes:
        kind: a registered dataset kind (:data:`DATASET_KINDS`).
        root: the dataset folder.
        images, labels: globs under ``root`` (``geotiff``).
        label_attribute: polygon attribute holding the class (vector labels).
        classes: class names in id order, when the labels do not carry them.
        product: SpaceNet 6 product(s), e.g. ``SAR-Intensity+PS-RGB``.
        target: SpaceNet 6 targets.
        split: held-out parts: tile numbers for ``dubai`` (``{val: [1], test: [8]}``), fractions
            for the other kinds (``{val: 0.2, test: 0.0}``).
        options: settings of a kind registered outside geoseg.
    """

    kind: str = "dubai"
    root: str = ""
    images: str = "images/*.tif"
    labels: str = "labels/*.tif"
    label_attribute: str = "class"
    classes: list[str] = field(default_factory=list)
    product: str = "SAR-Intensity"
    target: Literal["footprint", "footprint-edge-contact"] = "footprint"
    split: dict[str, Any] = field(default_factory=lambda: {"val": [1], "test": [8]})
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SceneSet:
    """What training needs from a dataset: the scenes of each split and what the checkpoint records.

    Attributes:
        train, val: scenes of the training and validation splits.
        classes: the class table (ids below 255).
        band_names: one name per image band (default ``band1..``).
        sar: SAR imagery (augmented without colour jitter).
        db_bands: the first bands normalized in dB.
        nodata: the images' nodata value, recorded in the checkpoint.
        band_dtype: the image files' own dtype, recorded in the checkpoint, when the scenes hold
            pixels converted to another (default: the scenes' dtype).
        description: what the run folder and checkpoint record about the data.
    """

    train: list[Scene]
    val: list[Scene]
    classes: ClassTable
    band_names: tuple[str, ...] = ()
    sar: bool = False
    db_bands: int = 0
    nodata: float | None = None
    band_dtype: str | None = None
    description: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalPair:
    """An image and its labels: a class-id array on the image grid, or a label raster path."""

    image: str
    labels: np.ndarray | str
    name: str = ""
    footprints: list[Any] | None = None  # true building polygons in pixel coordinates, when known


Find = Callable[[DataSource], Sequence[Any]]
Split = Callable[[Sequence[Any], DataSource, int], Mapping[str, Sequence[Any]]]
MakeScene = Callable[[Any, DataSource], Scene]
Classes = ClassTable | Callable[[DataSource], ClassTable]


@dataclass(frozen=True)
class DatasetKind:
    """One dataset layout.

    Attributes:
        name: what ``data.kind`` and ``--kind`` say.
        find: the items (files, tiles...) of a dataset; raise :class:`DatasetError` when none.
        scene: one item to a :class:`Scene`; for evaluation its ``name`` is the image's path.
        classes: the class table, or a function of the :class:`DataSource` giving it.
        split: items to ``{"train", "val", "test"}``; default :func:`split_by_fraction`.
        description: one line for listings.
        scenes: the training scenes at once (default: ``find``, ``split``, ``scene``).
        pairs: held-out images with labels for ``evaluate`` (``source, split name, seed``).
        check: ``check(source, on_error, progress)`` -> :class:`~geoseg.datasets.check.CheckReport`.
        stats: ``stats(source, sar_db)`` -> :class:`~geoseg.datasets.stats.StatsResult`.
    """

    name: str
    find: Find
    scene: MakeScene
    classes: Classes
    split: Split | None = None
    description: str = ""
    scenes: Callable[[DataSource, int], SceneSet] | None = None
    pairs: Callable[[DataSource, str, int], list[EvalPair]] | None = None
    check: Callable[[DataSource, OnError, Progress | None], CheckReport] | None = None
    stats: Callable[[DataSource, bool | None], StatsResult] | None = None

    def class_table(self, source: DataSource) -> ClassTable:
        """The kind's class table for ``source``."""
        return self.classes if isinstance(self.classes, ClassTable) else self.classes(source)

    def parts(self, source: DataSource, seed: int = 0) -> dict[str, list[Any]]:
        """The items of ``source`` split into ``train``, ``val`` and ``test``."""
        items = list(self.find(source))
        if not items:
            raise DatasetError(f"{source.root or '.'}: no {self.name} item found; check data.root")
        split = self.split or split_by_fraction
        parts = {k: list(v) for k, v in split(items, source, seed).items()}
        for key in ("train", "val", "test"):
            parts.setdefault(key, [])
        return parts

    def build_scenes(self, source: DataSource, seed: int = 0) -> SceneSet:
        """Training and validation scenes (the kind's own ``scenes``, else
        ``find``/``split``/``scene``)."""
        if self.scenes is not None:
            return self.scenes(source, seed)
        parts = self.parts(source, seed)
        return SceneSet(
            [self.scene(it, source) for it in parts["train"]],
            [self.scene(it, source) for it in parts["val"]],
            self.class_table(source),
            description={"split": dict(source.split)},
        )


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


def _fraction(source: DataSource, key: str, default: float) -> float:
    value = (source.split or {}).get(key, default)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(
            f"data.split.{key}: expected a fraction in [0, 1) for the {source.kind} kind, got "
            f"{value!r}; e.g. data.split={{val: 0.2, test: 0.0}}"
        )
    return float(value)


def split_by_fraction(
    items: Sequence[Any], source: DataSource, seed: int = 0
) -> dict[str, list[Any]]:
    """A seeded split by the fractions in ``source.split`` (``val`` default 0.2, ``test`` default
    0)."""
    val, test = _fraction(source, "val", 0.2), _fraction(source, "test", 0.0)
    if val + test >= 1:
        raise ConfigError(
            f"data.split: val {val} + test {test} leaves nothing to train on; keep their sum "
            "below 1"
        )
    order = np.random.default_rng(seed).permutation(len(items))
    n_val, n_test = round(val * len(items)), round(test * len(items))
    pick = lambda idx: [items[i] for i in sorted(idx)]  # noqa: E731
    return {
        "test": pick(order[:n_test]),
        "val": pick(order[n_test : n_test + n_val]),
        "train": pick(order[n_test + n_val :]),
    }


def split_scenes(
    scenes: Sequence[Scene], val_fraction: float, *, seed: int = 0
) -> dict[str, list[Scene]]:
    """Split scenes by location (their map footprints), so overlapping scenes stay on one side."""
    from geoseg.datasets.splits import split_by_location

    idx = split_by_location([s.bounds for s in scenes], val_fraction, seed=seed)
    return {k: [scenes[i] for i in v] for k, v in idx.items()}


def eval_pairs(source: DataSource, split: str = "test", *, seed: int = 0) -> list[EvalPair]:
    """Held-out images of a dataset with their labels, for ``evaluate``.

    Raises:
        ConfigError: unknown kind.
        DatasetError: the split holds no image.
    """
    kind = dataset_kind(source.kind)
    if kind.pairs is not None:
        return kind.pairs(source, split, seed)
    part = kind.parts(source, seed)[split]
    if not part:
        raise DatasetError(
            f"the {split} split of {source.root or '.'} holds no image; check data.split"
        )
    out = []
    for item in part:
        scene = kind.scene(item, source)
        _, mask, _ = scene.arrays()
        if mask is None:
            raise DatasetError(f"{scene.name}: has no labels; evaluation needs labelled images")
        out.append(EvalPair(scene.name, mask.astype(np.int64), Path(scene.name).name))
    return out


def _lazy(target: str) -> Any:
    """A callable that imports ``module:function`` on first call (keeps this module torch-free)."""
    module, name = target.split(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


def _register_builtins() -> None:
    descriptions = {
        "dubai": "Humans in the Loop aerial imagery: 'Tile N/images/*.jpg' + 'Tile N/masks/*.png'",
        "geotiff": (
            "GeoTIFF images with label GeoTIFFs or polygons (data.images, data.labels globs)"
        ),
        "spacenet6": (
            "SpaceNet 6 Rotterdam: SAR-Intensity and optical products with building footprints"
        ),
    }
    for name, description in descriptions.items():
        module = f"geoseg.datasets.{name}"
        register_dataset_kind(
            DatasetKind(
                name,
                find=_lazy(f"{module}:find_items"),
                scene=_lazy(f"{module}:item_scene"),
                classes=_lazy(f"{module}:source_classes"),
                split=_lazy(f"{module}:split_items"),
                description=description,
                scenes=_lazy(f"{module}:source_scenes"),
                pairs=_lazy(f"{module}:source_pairs"),
                check=_lazy(f"geoseg.datasets.check:check_{name}"),
                stats=_lazy(f"geoseg.datasets.check:stats_{name}"),
            )
        )


_register_builtins()
