"""The values a dataset kind takes and gives: where the data lies (:class:`DataSource`), the
scenes training needs (:class:`SceneSet`), held-out images with labels (:class:`EvalPair`).
No torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from geoseg.classes import ClassTable
from geoseg.datasets.scene import Scene

__all__ = ["DataSource", "EvalPair", "OnError", "Progress", "SceneSet"]

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
