"""Datasets: one registry of dataset kinds, scenes, checks and TorchGeo datasets.

Torch-free at import: the registry (:mod:`geoseg.datasets.kinds`), :class:`Scene`,
:func:`check_dataset`, :func:`dataset_stats`, :func:`stream_stats` and :func:`to_db` load eagerly;
the Dubai reader (:func:`find_dubai`, :func:`read_item`), :class:`Augment` and the TorchGeo datasets
and samplers (:func:`geotiff_dataset`, :class:`NodataFilter`, :class:`PatchDataset`...) load on
first use.

Example::

    from geoseg.datasets import check_dataset
    print("\\n".join(check_dataset("/data/dubai", "dubai").lines()))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geoseg._lazy import lazy_attributes
from geoseg.datasets.check import CheckReport
from geoseg.datasets.dubai import DubaiKind
from geoseg.datasets.geotiff_kind import GeoTiffKind
from geoseg.datasets.kinds import (
    DATASET_KINDS,
    DatasetKind,
    DataSource,
    EvalPair,
    SceneSet,
    check_dataset,
    dataset_kind,
    dataset_stats,
    eval_pairs,
    kind_names,
    register_dataset_kind,
    split_by_fraction,
    split_scenes,
)
from geoseg.datasets.scene import Scene
from geoseg.datasets.spacenet6 import SpaceNet6Kind
from geoseg.datasets.stats import StatsResult, stream_stats, to_db

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.datasets._torchgeo import (
        SampleGeo,
        make_query,
        sample_geo,
        sample_image,
        sample_mask,
    )
    from geoseg.datasets.augment import Augment
    from geoseg.datasets.dubai import DUBAI_CLASSES, find_dubai, read_item
    from geoseg.datasets.geosamplers import NodataFilter, ValidityIndex
    from geoseg.datasets.geotiff import geotiff_dataset, to_training_sample
    from geoseg.datasets.patches import PatchDataset
    from geoseg.datasets.samplers import ClassBalancedSampler, GridSampler, Patch, RandomSampler

__all__ = [
    "DATASET_KINDS",
    "DUBAI_CLASSES",
    "Augment",
    "CheckReport",
    "ClassBalancedSampler",
    "DataSource",
    "DatasetKind",
    "DubaiKind",
    "EvalPair",
    "GeoTiffKind",
    "GridSampler",
    "NodataFilter",
    "Patch",
    "PatchDataset",
    "RandomSampler",
    "SampleGeo",
    "Scene",
    "SceneSet",
    "SpaceNet6Kind",
    "StatsResult",
    "ValidityIndex",
    "check_dataset",
    "dataset_kind",
    "dataset_stats",
    "eval_pairs",
    "find_dubai",
    "geotiff_dataset",
    "kind_names",
    "make_query",
    "read_item",
    "register_dataset_kind",
    "sample_geo",
    "sample_image",
    "sample_mask",
    "split_by_fraction",
    "split_scenes",
    "stream_stats",
    "to_db",
    "to_training_sample",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "._torchgeo": "SampleGeo make_query sample_geo sample_image sample_mask",
        ".augment": "Augment",
        ".dubai": "DUBAI_CLASSES find_dubai read_item",
        ".geosamplers": "NodataFilter ValidityIndex",
        ".geotiff": "geotiff_dataset to_training_sample",
        ".patches": "PatchDataset",
        ".samplers": "ClassBalancedSampler GridSampler Patch RandomSampler",
    },
    __all__,
)
