"""Scenes held in memory and the patch dataset that cuts them on the fly.

A :class:`Scene` is one image with its label mask and validity mask, georeferenced or not (an
identity transform and no CRS are first-class). :class:`PatchDataset` is a TorchGeo
``NonGeoDataset`` indexed by :class:`~geoseg.datasets.samplers.Patch` keys: it crops, augments
(image, mask and validity together), normalizes with the same
:class:`~geoseg.normalize.Normalization` the checkpoint records, and returns
``{"image", "mask", "valid"}`` tensors. Invalid pixels carry ``ignore_index`` in the mask, so losses
and metrics skip them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchgeo.datasets import NonGeoDataset

from geoseg.classes import IGNORE_INDEX
from geoseg.datasets.augment import Augment, resize_sample
from geoseg.datasets.samplers import Patch, PatchIndex
from geoseg.datasets.scene import Scene
from geoseg.normalize import Normalization

__all__ = ["PatchDataset", "Scene", "index_scenes"]


def index_scenes(scenes: Sequence[Scene], num_classes: int = 0, cell: int = 16) -> PatchIndex:
    """The sampler summary (nodata, class counts) of ``scenes``."""
    return PatchIndex(
        [s.shape for s in scenes],
        [s.mask for s in scenes],
        [s.valid for s in scenes],
        num_classes=num_classes,
        cell=cell,
    )


class PatchDataset(NonGeoDataset):
    """Patches of in-memory scenes, cut, augmented and normalized on the fly."""

    def __init__(
        self,
        scenes: Sequence[Scene],
        *,
        num_classes: int,
        normalization: Normalization | None = None,
        augment: Augment | None = None,
        seed: int = 0,
    ) -> None:
        self.scenes = list(scenes)
        self.num_classes = num_classes
        self.normalization = normalization or Normalization(kind="none")
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.scenes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def crop(self, p: Patch) -> dict[str, np.ndarray]:
        """The raw arrays of one patch: image, mask (uint8, ignore filled in), valid."""
        img, msk, vld = self.scenes[p.scene].arrays()
        rs, cs = slice(p.row, p.row + p.size), slice(p.col, p.col + p.size)
        image = img[:, rs, cs]
        valid = np.ones((p.size, p.size), bool) if vld is None else vld[rs, cs]
        if msk is None:
            mask = np.full((p.size, p.size), IGNORE_INDEX, np.uint8)
        else:
            mask = msk[rs, cs].astype(np.uint8, copy=True)
            mask[(mask >= self.num_classes) | ~valid] = IGNORE_INDEX
        return {"image": image, "mask": mask, "valid": valid}

    def zoomed(self, p: Patch, factor: float) -> Patch:
        """The window ``factor`` times the size of ``p`` around its centre, inside its scene."""
        rows, cols = self.scenes[p.scene].shape
        size = max(1, min(round(p.size * factor), rows, cols))
        row = min(max(0, p.row + (p.size - size) // 2), rows - size)
        col = min(max(0, p.col + (p.size - size) // 2), cols - size)
        return Patch(p.scene, row, col, size)

    def __getitem__(self, p: Patch) -> dict[str, torch.Tensor]:  # type: ignore[override]
        rng = np.random.default_rng([self.seed, self.epoch, p.scene, p.row, p.col])
        if self.augment is not None:
            window = self.zoomed(p, self.augment.zoom(rng))
            arrays = resize_sample(self.crop(window), p.size)
            arrays = self.augment.geometry(arrays, rng)
            arrays["image"] = self.augment.raw(arrays["image"], rng)
        else:
            arrays = self.crop(p)
        image = self.normalization.apply(arrays["image"])
        image[:, ~arrays["valid"]] = 0.0
        if self.augment is not None:
            image = self.augment.photometric(image, rng)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "mask": torch.from_numpy(arrays["mask"].astype(np.int64)),
            "valid": torch.from_numpy(np.ascontiguousarray(arrays["valid"])),
        }
