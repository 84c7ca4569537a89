"""Augmentations that imitate other sensors: scale jitter, saturation, haze, blur, JPEG, noise."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.classes import IGNORE_INDEX
from geoseg.datasets.augment import Augment, gaussian_blur, jpeg_roundtrip, resize_sample
from geoseg.datasets.patches import PatchDataset, Scene
from geoseg.datasets.samplers import Patch
from geoseg.normalize import Normalization

FIXED = {"hflip": False, "vflip": False, "rot90": False}


def blocks(rows: int = 256, cols: int = 256) -> Scene:
    """Classes in 16-px blocks; the image's first band is 40 times the class id, so pixels name
    their label."""
    ids = (np.arange(rows)[:, None] // 16 + np.arange(cols)[None, :] // 16) % 5
    image = np.stack(
        [ids * 40, np.full_like(ids, 100), np.arange(cols)[None, :].repeat(rows, 0) % 256]
    ).astype(np.uint8)
    return Scene(image=image, mask=ids.astype(np.uint8))


def test_scale_jitter_keeps_labels_on_their_pixels() -> None:
    ds = PatchDataset(
        [blocks()],
        num_classes=5,
        normalization=Normalization(kind="none"),
        augment=Augment(scale=(0.5, 2.0), **FIXED),
        seed=0,
    )
    for row, col in [(64, 64), (0, 0), (200, 200)]:
        got = ds[Patch(0, min(row, 256 - 48), min(col, 256 - 48), 48)]
        image, mask = got["image"].numpy(), got["mask"].numpy()
        assert image.shape == (3, 48, 48) and mask.shape == (48, 48)
        assert set(np.unique(mask)) <= set(range(5))
        named = np.rint(image[0] / 40.0)  # the label each pixel's value names
        agree = {
            (dy, dx): float((np.roll(named, (dy, dx), axis=(0, 1)) == mask)[4:-4, 4:-4].mean())
            for dy in (-2, -1, 0, 1, 2)
            for dx in (-2, -1, 0, 1, 2)
        }
        assert agree[0, 0] > 0.7 and agree[0, 0] == max(
            agree.values()
        )  # aligned, off only on block edges


def test_scale_jitter_changes_the_ground_footprint() -> None:
    """The third band counts columns: a zoomed-out patch spans more of them."""
    s = blocks()
    spans = []
    for seed in range(12):
        ds = PatchDataset(
            [s],
            num_classes=5,
            normalization=Normalization(kind="none"),
            augment=Augment(scale=(0.5, 2.0), **FIXED),
            seed=seed,
        )
        cols = ds[Patch(0, 100, 100, 48)]["image"].numpy()[2]
        spans.append(float(cols.max() - cols.min()))
    assert min(spans) < 35 and max(spans) > 60  # 0.5x: ~24 columns, 2x: ~96 of the 48 shown


def test_resize_sample_uses_nearest_for_masks() -> None:
    mask = np.array([[0, 1], [2, IGNORE_INDEX]], np.uint8)
    out = resize_sample(
        {"image": np.zeros((1, 2, 2), np.uint8), "mask": mask, "valid": mask > 0}, 4
    )
    assert out["mask"].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]]
    assert (
        out["valid"].dtype == bool
        and out["image"].dtype == np.uint8
        and out["image"].shape == (1, 4, 4)
    )


def test_photometric_ops_do_what_they_say() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 64, 64)).astype(np.float32)
    hazy = Augment(haze=1.0).photometric(image.copy(), np.random.default_rng(1))
    assert (
        hazy.std() < image.std() and hazy.mean() > image.mean()
    )  # a bright veil flattens contrast
    blurred = gaussian_blur(image, 1.5)
    assert (
        blurred.shape == image.shape
        and np.abs(np.diff(blurred, axis=2)).mean() < 0.5 * np.abs(np.diff(image, axis=2)).mean()
    )
    flat = Augment(saturation=1.0).photometric(image.copy(), np.random.default_rng(2))
    spread = np.abs(flat - flat.mean(0)).mean() / np.abs(image - image.mean(0)).mean()
    assert spread != pytest.approx(1.0)
    same = Augment(saturation=0.3, blur=0.5, haze=0.5, noise=0.1)
    a = same.photometric(image.copy(), np.random.default_rng(5))
    assert np.array_equal(a, same.photometric(image.copy(), np.random.default_rng(5)))  # seeded


def test_jpeg_only_for_8_bit_rgb() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, size=(3, 32, 32), dtype=np.uint8)
    out = jpeg_roundtrip(rgb, 30)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and not np.array_equal(out, rgb)
    always = Augment(jpeg=1.0)
    assert not np.array_equal(always.raw(rgb, np.random.default_rng(0)), rgb)
    u16 = rgb.astype(np.uint16)
    assert always.raw(u16, np.random.default_rng(0)) is u16  # other imagery is left alone
    assert Augment(jpeg=1.0, sar=True).raw(rgb, np.random.default_rng(0)) is rgb


def test_sar_never_gets_the_optical_imitations() -> None:
    aug = Augment(scale=(0.5, 2.0), saturation=1.0, blur=1.0, haze=1.0, noise=0.5, sar=True)
    img = np.ones((2, 8, 8), np.float32)
    assert aug.zoom(np.random.default_rng(0)) == 1.0
    assert np.array_equal(aug.photometric(img.copy(), np.random.default_rng(0)), img)
