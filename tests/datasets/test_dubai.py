"""The Dubai dataset: colour decoding (RGB and palette PNGs), layout errors, splits by tile."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from geoseg.classes import IGNORE_INDEX
from geoseg.datasets.dubai import DUBAI_CLASSES, decode_mask, find_dubai, load_dubai, split_tiles
from geoseg.errors import DatasetError
from tests.datasets.conftest import COLOURS, dubai_labels


def test_decode_by_mask_colours() -> None:
    rgb = np.array([[c for c in COLOURS] + [(0, 0, 0), (1, 2, 3)]], np.uint8)
    assert decode_mask(rgb).tolist() == [[0, 1, 2, 3, 4, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]
    assert decode_mask(rgb, keep_unlabeled=True)[0, 5] == 5
    assert DUBAI_CLASSES.names == ["building", "land", "road", "vegetation", "water"]
    # models carry colours people can tell apart; the PNGs' own colours only decode labels
    assert DUBAI_CLASSES.classes[0].hex() == "#e6194b"
    assert decode_mask(np.array([[[0x3C, 0x10, 0x98]]], np.uint8))[0, 0] == 0


def test_rgb_and_palette_masks_decode_alike(dubai_root) -> None:
    items = find_dubai(dubai_root.parent)  # any folder above the tiles works
    assert {it.tile for it in items} == {1, 2, 3} and len(items) == 6
    for it in items:
        with Image.open(it.mask) as im:
            got = decode_mask(np.asarray(im.convert("RGB")), keep_unlabeled=True)
        k = int(it.image.stem[-3:])
        assert np.array_equal(got, dubai_labels(96, 112, seed=10 * it.tile + k).astype(np.uint8)), (
            it.mask
        )


def test_scenes_are_identity_referenced(dubai_root) -> None:
    scenes = load_dubai(dubai_root, tiles=[1])
    assert len(scenes) == 2
    s = scenes[0]
    assert s.image.shape == (3, 96, 112) and s.image.dtype == np.uint8
    assert s.transform.is_identity and s.crs is None
    assert s.group == "Tile 1"
    assert (s.mask[:5, :5] == IGNORE_INDEX).all()


def test_split_by_tile_folder(dubai_root) -> None:
    parts = split_tiles(find_dubai(dubai_root), val=[2], test=[3])
    assert {it.tile for it in parts["train"]} == {1}
    assert {it.tile for it in parts["val"]} == {2}
    assert {it.tile for it in parts["test"]} == {3}


def test_layout_errors(tmp_path) -> None:
    with pytest.raises(DatasetError, match="no 'Tile N' folder"):
        find_dubai(tmp_path)
    (tmp_path / "Tile 1" / "images").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "Tile 1" / "images" / "a.jpg")
    with pytest.raises(DatasetError, match="no mask of the same name"):
        find_dubai(tmp_path)


def test_every_real_mask_decodes(shared_data) -> None:
    """All 72 masks of the real dataset: only known colours or black, counts as published."""
    items = find_dubai(shared_data / "dubai-aerial-semseg")
    assert len(items) == 72
    total = np.zeros(256, np.int64)
    for it in items:
        with Image.open(it.mask) as im:
            total += np.bincount(
                decode_mask(np.asarray(im.convert("RGB")), keep_unlabeled=True).ravel(),
                minlength=256,
            )
    assert total[:6].tolist() == [13177546, 51850363, 9261912, 10206379, 13482196, 501691]
    assert total[IGNORE_INDEX] == 552156  # black, unannotated
