"""Augmentations applied identically to an image, its label mask and its validity mask.

Numpy on ``(bands, rows, cols)`` images and ``(rows, cols)`` masks. Geometry is drawn once per
sample from a seeded generator and applied to every array, so labels never drift from pixels.
SAR keeps its geometry: only the left-right flip is allowed (an up-down flip or a rotation would
swap near and far range and change the look direction's meaning).

For models meant to travel beyond the sensor and place they were trained on, the optical
augmentations also imitate other imagery: a different ground sample distance (``scale``: the patch
is cut from a larger or smaller window and resampled), other colour balance and saturation, blur,
haze and JPEG compression artefacts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Augment", "Sample", "gaussian_blur", "jpeg_roundtrip", "resize_sample"]

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
        scale: ``(low, high)``: cut the patch from a window ``f`` times its size, ``f`` drawn
            log-uniformly, and resample it back (``f`` = 2 imitates a sensor with twice the pixel
            size). ``(1, 1)`` switches it off.
        saturation: pull the bands towards (or push them away from) their mean by
            ``U(1 - s, 1 + s)``.
        blur: probability of a Gaussian blur with sigma ``U(0.3, 1.5)`` pixels.
        haze: probability of veiling the patch with a bright, flat haze (5-40 %).
        jpeg: probability of JPEG compression at quality ``U(25, 90)`` (8-bit, 3-band imagery only).
        noise: standard deviation of Gaussian noise added to the normalized image.
        sar: SAR imagery: only ``hflip`` is applied, whatever else is asked.
    """

    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    brightness: float = 0.0
    contrast: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    saturation: float = 0.0
    blur: float = 0.0
    haze: float = 0.0
    jpeg: float = 0.0
    noise: float = 0.0
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

    def zoom(self, rng: np.random.Generator) -> float:
        """The window-to-patch size factor of one sample (1.0 when ``scale`` is off or for SAR)."""
        low, high = self.scale
        if self.sar or (low == 1.0 and high == 1.0):
            return 1.0
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))

    def raw(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sensor artefacts on the raw pixels, before normalization: JPEG compression."""
        if self.sar or self.jpeg <= 0 or rng.random() >= self.jpeg:
            return image
        if image.dtype != np.uint8 or image.shape[0] != 3:
            return image
        return jpeg_roundtrip(image, int(rng.integers(25, 91)))

    def photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Jitter a normalized float image (per band, then saturation, haze, blur, noise) and return
        it."""
        if self.sar:
            return image
        bands = image.shape[0]
        if self.contrast > 0:
            image *= rng.uniform(1 - self.contrast, 1 + self.contrast, size=(bands, 1, 1)).astype(
                image.dtype
            )
        if self.brightness > 0:
            image += rng.uniform(-self.brightness, self.brightness, size=(bands, 1, 1)).astype(
                image.dtype
            )
        if self.saturation > 0 and bands > 1:
            grey = image.mean(axis=0, keepdims=True)
            image = grey + (image - grey) * np.float32(
                rng.uniform(1 - self.saturation, 1 + self.saturation)
            )
        if self.haze > 0 and rng.random() < self.haze:
            veil = np.float32(rng.uniform(0.05, 0.4))
            airlight = np.quantile(image, 0.99, axis=(1, 2), keepdims=True).astype(
                image.dtype
            ) + np.float32(0.5)
            image = image * (1 - veil) + airlight * veil
        if self.blur > 0 and rng.random() < self.blur:
            image = gaussian_blur(image, float(rng.uniform(0.3, 1.5)))
        if self.noise > 0:
            image = image + rng.normal(0.0, self.noise, size=image.shape).astype(image.dtype)
        return image


def resize_sample(sample: Sample, size: int) -> Sample:
    """Resample every array of ``sample`` to ``size`` x ``size``: the image bilinearly (antialiased
    when shrinking), masks by nearest neighbour, so class ids stay ids."""
    import torch
    import torch.nn.functional as F

    out: Sample = {}
    for key, arr in sample.items():
        if not isinstance(arr, np.ndarray) or arr.ndim < 2 or arr.shape[-2:] == (size, size):
            out[key] = arr
            continue
        if key == "image":
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
            shrink = arr.shape[-1] > size
            r = F.interpolate(
                t, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
            )[0].numpy()
            if np.issubdtype(arr.dtype, np.integer):
                info = np.iinfo(arr.dtype)
                r = np.clip(np.rint(r), info.min, info.max)
            out[key] = r.astype(arr.dtype)
        else:
            rows = (np.arange(size) + 0.5) * arr.shape[-2] / size
            cols = (np.arange(size) + 0.5) * arr.shape[-1] / size
            out[key] = np.ascontiguousarray(
                arr[..., rows.astype(int)[:, None], cols.astype(int)[None, :]]
            )
    return out


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each band of ``(bands, rows, cols)`` with a separable Gaussian (reflected edges)."""
    radius = max(1, int(3 * sigma + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    rows = sum(kernel[i] * padded[:, i : i + image.shape[1], :] for i in range(kernel.size))
    return sum(kernel[i] * rows[:, :, i : i + image.shape[2]] for i in range(kernel.size)).astype(
        image.dtype
    )


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """A ``(3, rows, cols)`` uint8 image after JPEG compression at ``quality``."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.moveaxis(image, 0, -1)).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.moveaxis(np.asarray(Image.open(buffer).convert("RGB")), -1, 0).copy()
