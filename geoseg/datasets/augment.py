"""Augmentations applied identically to an image, its label mask and its validity mask.

Pure numpy on ``(bands, rows, cols)`` images and ``(rows, cols)`` masks. Geometry is drawn once per
sample from a seeded generator and applied to every array, so labels never drift from pixels.
SAR keeps its geometry: only the left-right flip is allowed (an up-down flip or a rotation would
swap near and far range and change the look direction's meaning).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Augment", "Sample"]

Sample = dict[str, np.ndarray]


@dataclass(frozen=True)
class Augment:
    """Random flips, 90° rotations and (optionally) photometric jitter.

    Attributes:
        hflip: flip left-right with probability 0.5.
        vflip: flip up-down with probability 0.5 (optical only).
        rot90: rotate by a random multiple of 90° (optical only; needs square chips).
        brightness: add ``U(-b, b)`` per band to the normalized image (optical only).
        contrast: multiply the normalized image by ``U(1 - c, 1 + c)`` per band (optical only).
        sar: SAR imagery: only ``hflip`` is applied, whatever else is asked.
    """

    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    brightness: float = 0.0
    contrast: float = 0.0
    sar: bool = False

    @classmethod
    def for_sar(cls) -> Augment:
        return cls(hflip=True, vflip=False, rot90=False, sar=True)

    def geometry(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Flip/rotate every array in ``sample`` the same way (image first axis is bands)."""
        flip_lr = self.hflip and rng.random() < 0.5
        flip_ud = not self.sar and self.vflip and rng.random() < 0.5
        turns = int(rng.integers(4)) if (not self.sar and self.rot90) else 0
        out: Sample = {}
        for key, arr in sample.items():
            if not isinstance(arr, np.ndarray) or arr.ndim < 2:
                out[key] = arr
                continue
            a = arr
            if flip_lr:
                a = a[..., :, ::-1]
            if flip_ud:
                a = a[..., ::-1, :]
            if turns and a.shape[-1] == a.shape[-2]:
                a = np.rot90(a, turns, axes=(-2, -1))
            out[key] = np.ascontiguousarray(a)
        return out

    def photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Jitter a normalized float image in place (per band) and return it."""
        if self.sar or (self.brightness <= 0 and self.contrast <= 0):
            return image
        bands = image.shape[0]
        if self.contrast > 0:
            image *= rng.uniform(1 - self.contrast, 1 + self.contrast, size=(bands, 1, 1)).astype(image.dtype)
        if self.brightness > 0:
            image += rng.uniform(-self.brightness, self.brightness, size=(bands, 1, 1)).astype(image.dtype)
        return image
