"""A dataset kind: one class that knows a layout, TorchGeo style (finder, classes, split, scenes,
held-out pairs, check and statistics together).

Subclass :class:`DatasetKind` and give ``find``, ``scene`` and ``classes``; everything else has a
generic version built on those three::

    class BrightRoofs(DatasetKind):
        name = "bright-roofs"
        description = "GeoTIFFs whose bright pixels are roofs"

        def find(self, source):
            return sorted(Path(source.root).glob("*.tif"))

        def scene(self, item, source):
            return read_my_scene(item)          # -> Scene (name: the image's path)

        def classes(self, source):
            return ClassTable.from_names(["other", "roof"])

    register_dataset_kind(BrightRoofs())

A kind can also be made from functions, without a class:
``DatasetKind("bright-roofs", find=..., scene=..., classes=...)``. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoseg.classes import ClassTable
from geoseg.datasets.scene import Scene
from geoseg.datasets.source import DataSource, EvalPair, OnError, Progress, SceneSet
from geoseg.errors import ConfigError, DatasetError

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.datasets.check import CheckReport
    from geoseg.datasets.stats import StatsResult

__all__ = ["DatasetKind", "split_by_fraction", "split_scenes"]

Find = Callable[[DataSource], Sequence[Any]]
MakeScene = Callable[[Any, DataSource], Scene]
Classes = ClassTable | Callable[[DataSource], ClassTable]
Split = Callable[[Sequence[Any], DataSource, int], Mapping[str, Sequence[Any]]]


class DatasetKind:
    """One dataset layout (see the module). Subclasses set ``name`` and ``description`` and
    override the methods; or pass functions to the constructor.

    Args:
        name: what ``data.kind`` and ``--kind`` say.
        find, scene, classes: functions (or a class table) standing in for the methods.
        split, scenes, pairs, check, stats: optional functions standing in for those methods.
        description: one line for listings.
    """

    name: str = ""
    description: str = ""

    def __init__(
        self,
        name: str | None = None,
        find: Find | None = None,
        scene: MakeScene | None = None,
        classes: Classes | None = None,
        split: Split | None = None,
        description: str | None = None,
        scenes: Callable[[DataSource, int], SceneSet] | None = None,
        pairs: Callable[[DataSource, str, int], list[EvalPair]] | None = None,
        check: Callable[[DataSource, OnError, Progress | None], CheckReport] | None = None,
        stats: Callable[[DataSource, bool | None], StatsResult] | None = None,
    ) -> None:
        if name is not None:
            self.name = name
        if description is not None:
            self.description = description
        given: dict[str, Any] = {
            "find": find,
            "scene": scene,
            "classes": classes,
            "split": split,
            "scenes": scenes,
            "pairs": pairs,
            "check": check,
            "stats": stats,
        }
        self._given: dict[str, Any] = {k: v for k, v in given.items() if v is not None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- what a kind must say ----------------------------------------------------------------

    def find(self, source: DataSource) -> Sequence[Any]:
        """The items (files, tiles...) of a dataset; raises :class:`DatasetError` when none."""
        if "find" in self._given:
            return self._given["find"](source)
        raise NotImplementedError(f"dataset kind {self.name!r} does not say how to find its items")

    def scene(self, item: Any, source: DataSource) -> Scene:
        """One item as a :class:`Scene` (for evaluation its ``name`` is the image's path)."""
        if "scene" in self._given:
            return self._given["scene"](item, source)
        raise NotImplementedError(f"dataset kind {self.name!r} does not say how to read an item")

    def classes(self, source: DataSource) -> ClassTable:
        """The class table of ``source``."""
        given = self._given.get("classes")
        if isinstance(given, ClassTable):
            return given
        if given is not None:
            return given(source)
        raise NotImplementedError(f"dataset kind {self.name!r} does not say its classes")

    # -- what has a generic version -------------------------------------------------------------

    def split(
        self, items: Sequence[Any], source: DataSource, seed: int = 0
    ) -> Mapping[str, Sequence[Any]]:
        """Items to ``{"train", "val", "test"}``; default :func:`split_by_fraction`."""
        if "split" in self._given:
            return self._given["split"](items, source, seed)
        return split_by_fraction(items, source, seed)

    def parts(self, source: DataSource, seed: int = 0) -> dict[str, list[Any]]:
        """The items of ``source`` split into ``train``, ``val`` and ``test``."""
        items = list(self.find(source))
        if not items:
            raise DatasetError(f"{source.root or '.'}: no {self.name} item found; check data.root")
        parts = {k: list(v) for k, v in self.split(items, source, seed).items()}
        for key in ("train", "val", "test"):
            parts.setdefault(key, [])
        return parts

    def scenes(self, source: DataSource, seed: int = 0) -> SceneSet:
        """Training and validation scenes (default: ``find``, ``split``, ``scene``)."""
        if "scenes" in self._given:
            return self._given["scenes"](source, seed)
        parts = self.parts(source, seed)
        return SceneSet(
            [self.scene(it, source) for it in parts["train"]],
            [self.scene(it, source) for it in parts["val"]],
            self.classes(source),
            description={"split": dict(source.split)},
        )

    def pairs(self, source: DataSource, split: str = "test", seed: int = 0) -> list[EvalPair]:
        """Held-out images with their labels, for ``evaluate``.

        Raises:
            DatasetError: the split holds no image, or an image has no labels.
        """
        if "pairs" in self._given:
            return self._given["pairs"](source, split, seed)
        part = self.parts(source, seed)[split]
        if not part:
            raise DatasetError(
                f"the {split} split of {source.root or '.'} holds no image; check data.split"
            )
        out = []
        for item in part:
            scene = self.scene(item, source)
            _, mask, _ = scene.arrays()
            if mask is None:
                raise DatasetError(f"{scene.name}: has no labels; evaluation needs labelled images")
            out.append(EvalPair(scene.name, mask.astype(np.int64), Path(scene.name).name))
        return out

    def check(
        self, source: DataSource, on_error: OnError = "stop", progress: Progress | None = None
    ) -> CheckReport:
        """Read every item once and report what training would meet (``geoseg dataset
        check``); default: read each scene."""
        if "check" in self._given:
            return self._given["check"](source, on_error, progress)
        from geoseg.datasets.check import check_scenes

        return check_scenes(source, on_error, progress, kind=self)

    def stats(self, source: DataSource, sar_db: bool | None = None) -> StatsResult:
        """Per-band statistics of the images (``geoseg dataset stats``); default: stream every
        scene."""
        if "stats" in self._given:
            return self._given["stats"](source, sar_db)
        from geoseg.datasets.stats import stream_stats

        scenes = (self.scene(item, source) for item in self.find(source))
        return stream_stats(
            ((image, valid) for image, _, valid in (s.arrays() for s in scenes)),
            db_bands=4 if sar_db else 0,
        )

    # -- names kept for code written against the earlier registry -------------------------------

    def class_table(self, source: DataSource) -> ClassTable:
        """:meth:`classes` (its earlier name)."""
        return self.classes(source)

    def build_scenes(self, source: DataSource, seed: int = 0) -> SceneSet:
        """:meth:`scenes` (its earlier name)."""
        return self.scenes(source, seed)


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
