"""Samplers: seeded, nodata-aware, class-balanced, grid coverage; stats and augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.classes import IGNORE_INDEX
from geoseg.datasets.augment import Augment
from geoseg.datasets.patches import PatchDataset, Scene, index_scenes
from geoseg.datasets.samplers import ClassBalancedSampler, GridSampler, Patch, RandomSampler
from geoseg.datasets.stats import BandStats, to_db
from geoseg.errors import DatasetError
from geoseg.normalize import Normalization


def scene(rows: int = 128, cols: int = 160, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    mask = np.zeros((rows, cols), np.uint8)
    mask[10:14, 100:104] = 1  # a rare class: 16 px
    valid = np.ones((rows, cols), bool)
    valid[:, :64] = False  # the left 40 % has no data
    image = rng.integers(0, 255, size=(3, rows, cols)).astype(np.uint8)
    return Scene(image=image, mask=mask, valid=valid)


def test_random_sampler_is_seeded_and_skips_nodata() -> None:
    idx = index_scenes([scene()], 2)
    a = list(RandomSampler(idx, 32, 50, seed=1, max_nodata=0.0))
    b = list(RandomSampler(idx, 32, 50, seed=1, max_nodata=0.0))
    assert a == b
    assert all(p.col >= 64 for p in a)  # no chip touches the nodata half
    s = RandomSampler(idx, 32, 50, seed=1)
    s.set_epoch(1)
    assert list(s) != list(RandomSampler(idx, 32, 50, seed=1))


def test_grid_sampler_covers_every_pixel() -> None:
    idx = index_scenes([scene(100, 70)], 2)
    cover = np.zeros((100, 70), int)
    for p in GridSampler(idx, 32, 32):
        cover[p.row : p.row + 32, p.col : p.col + 32] += 1
    assert cover.min() >= 1
    assert len(GridSampler(idx, 32, 32, max_nodata=0.0)) < len(GridSampler(idx, 32, 32))


def test_class_balanced_oversamples_the_rare_class() -> None:
    idx = index_scenes([scene()], 2)
    size = 32
    hits = lambda ps: np.mean(  # noqa: E731
        [p.row <= 12 < p.row + size and p.col <= 102 < p.col + size for p in ps]
    )
    rare_random = hits(list(RandomSampler(idx, size, 400, seed=0)))
    rare_balanced = hits(list(ClassBalancedSampler(idx, size, 400, power=0.0, seed=0)))
    assert rare_balanced > 0.4 > rare_random


def test_patch_larger_than_scene_is_refused() -> None:
    with pytest.raises(DatasetError, match="larger than scene"):
        RandomSampler(index_scenes([scene(20, 20)]), 32, 1)


def test_patch_dataset_augments_image_mask_and_validity_together() -> None:
    s = scene()
    s.mask[:, 80:82] = IGNORE_INDEX
    ds = PatchDataset(
        [s], num_classes=2, normalization=Normalization(kind="scale"), augment=Augment(), seed=3
    )
    plain = PatchDataset([s], num_classes=2, normalization=Normalization(kind="scale"))
    p = Patch(0, 0, 48, 64)
    got, ref = ds[p], plain[p]
    # the same geometric transform maps the reference onto every augmented array
    ref_img = ref["image"].numpy()
    for k in range(4):
        for flip in (False, True):
            cand = np.rot90(ref_img[:, :, ::-1] if flip else ref_img, k, axes=(1, 2))
            if np.allclose(cand, got["image"].numpy()):
                m = np.rot90(ref["mask"].numpy()[:, ::-1] if flip else ref["mask"].numpy(), k)
                v = np.rot90(ref["valid"].numpy()[:, ::-1] if flip else ref["valid"].numpy(), k)
                assert np.array_equal(m, got["mask"].numpy()) and np.array_equal(
                    v, got["valid"].numpy()
                )
                break
        else:
            continue
        break
    else:
        pytest.fail("augmented image is no flip/rotation of the original")
    assert (ref["mask"].numpy()[:, :16] == IGNORE_INDEX).all()  # invalid pixels are ignored


def test_sar_augmentation_only_flips_left_right() -> None:
    aug = Augment.for_sar()
    arr = np.arange(16.0).reshape(1, 4, 4)
    seen = set()
    for seed in range(20):
        out = aug.geometry({"image": arr}, np.random.default_rng(seed))["image"]
        assert np.array_equal(out, arr) or np.array_equal(out, arr[:, :, ::-1])
        seen.add(out.tobytes())
    assert len(seen) == 2
    img = np.ones((1, 4, 4), np.float32)
    assert np.array_equal(
        Augment(brightness=0.5, sar=True).photometric(img.copy(), np.random.default_rng(0)), img
    )


def test_streaming_stats_match_numpy() -> None:
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 255, size=(2, 30, 40)).astype(np.uint8) for _ in range(5)]
    valid = [rng.random((30, 40)) > 0.2 for _ in range(5)]
    s = BandStats(2)
    for c, v in zip(chips, valid, strict=True):
        s.update(c, v)
    r = s.result()
    for b in range(2):
        values = np.concatenate([c[b][v] for c, v in zip(chips, valid, strict=True)]).astype(
            np.float64
        )
        assert r.count[b] == values.size
        assert r.mean[b] == pytest.approx(values.mean())
        assert r.std[b] == pytest.approx(values.std())
        assert r.p2[b] == np.percentile(values, 2, method="lower")
        assert r.p98[b] == np.percentile(values, 98, method="lower")
    assert r.exact_percentiles


def test_float_stats_skip_nan_and_sar_db() -> None:
    lin = np.array([[[1.0, 10.0, 100.0, 0.0, np.nan]]], np.float32)
    db = to_db(lin)
    assert db[0, 0, :3].tolist() == pytest.approx([0.0, 10.0, 20.0])
    assert np.isnan(db[0, 0, 3:]).all()
    s = BandStats(1)
    s.update(db)
    r = s.result()
    assert r.count == (3,) and r.mean[0] == pytest.approx(10.0)
    assert r.normalization("percentile", sar_db=True).sar_db
