"""SpaceNet 6: layout, products, SAR nodata, orientation, targets, split by location."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from geoseg.classes import IGNORE_INDEX
from geoseg.datasets.spacenet6 import (
    find_spacenet6,
    load_tile,
    split_by_location,
    targets_from_footprint,
)
from geoseg.errors import DatasetError


def test_fixture_has_the_official_names_and_types(sn6_root) -> None:
    aoi = sn6_root / "AOI_11_Rotterdam"
    sar = sorted((aoi / "SAR-Intensity").glob("*.tif"))
    assert (
        sar[0].name
        == "SN6_Train_AOI_11_Rotterdam_SAR-Intensity_20190804111224_20190804111453_tile_1.tif"
    )
    with rasterio.open(sar[0]) as src:
        assert (src.count, src.dtypes[0], src.crs.to_epsg()) == (4, "float32", 32631)
    with rasterio.open(next((aoi / "PS-RGB").glob("*.tif"))) as src:
        assert (src.count, src.dtypes[0]) == (3, "uint8")
    with rasterio.open(next((aoi / "RGBNIR").glob("*.tif"))) as src:
        assert (src.count, src.dtypes[0], src.res) == (4, "uint16", (2.0, 2.0))


def test_find_tiles_with_products_buildings_and_orientation(sn6_root) -> None:
    tiles = find_spacenet6(sn6_root, ["SAR-Intensity", "PS-RGB"])
    assert [t.tile for t in tiles] == [1, 2, 3, 4]
    assert [t.orientation for t in tiles] == [1, 0, 0, 1]
    assert all(t.buildings is not None for t in tiles)


def test_sar_nodata_and_stack_on_the_sar_grid(sn6_root) -> None:
    tile = find_spacenet6(sn6_root, ["SAR-Intensity", "RGBNIR"])[1]
    image, labels, valid, geo = load_tile(tile, ["SAR-Intensity", "RGBNIR"], flip_orientation=False)
    assert image.shape == (8, 120, 120)  # 2 m RGBNIR warped onto the 0.5 m SAR grid
    wedge = np.add.outer(np.arange(120), np.arange(120)) < 25  # no SAR
    wedge[:8] = True  # the optical strip edge (zero in every band)
    assert not valid[wedge].any() and valid[~wedge].all()
    assert (labels[~valid] == IGNORE_INDEX).all()
    assert geo["crs"].to_epsg() == 32631


def test_buildings_burnt_from_geojson_in_another_crs(sn6_root) -> None:
    tile = find_spacenet6(sn6_root, ["PS-RGB"])[1]
    _, labels, _, _ = load_tile(tile, ["PS-RGB"])
    truth = np.zeros((120, 120), np.uint8)
    for r0, c0, r1, c1 in [(20, 20, 40, 50), (43, 20, 70, 48), (60, 70, 100, 110)]:
        truth[r0:r1, c0:c1] = 1
    ok = labels != IGNORE_INDEX
    assert (labels[ok] == truth[ok]).mean() > 0.995


def test_orientation_flip_rotates_image_and_labels_together(sn6_root) -> None:
    tile = find_spacenet6(sn6_root)[0]
    assert tile.orientation == 1
    a_img, a_lab, a_val, _ = load_tile(tile, flip_orientation=False)
    b_img, b_lab, b_val, _ = load_tile(tile, flip_orientation=True)
    assert np.array_equal(b_img, a_img[:, ::-1, ::-1])
    assert np.array_equal(b_lab, a_lab[::-1, ::-1]) and np.array_equal(b_val, a_val[::-1, ::-1])


def test_edge_and_contact_targets() -> None:
    fp = np.zeros((20, 30), bool)
    inst = np.zeros((20, 30), int)
    fp[5:15, 2:12] = True
    inst[5:15, 2:12] = 1
    fp[5:15, 14:24] = True
    inst[5:15, 14:24] = 2
    t = targets_from_footprint(fp, inst, edge_width=1, contact_distance=2)
    assert t[10, 7] == 1  # interior
    assert t[5, 7] == 2 and t[10, 2] == 2  # edges
    assert t[10, 12] == 3 and t[10, 13] == 3  # the 2-px gap between the two buildings
    assert t[0, 0] == 0


def test_split_by_location_never_straddles(sn6_root) -> None:
    tiles = find_spacenet6(sn6_root)
    parts = split_by_location(tiles, 0.5, seed=0)
    train, val = {t.tile for t in parts["train"]}, {t.tile for t in parts["val"]}
    assert not train & val
    assert {1, 2} <= train or {1, 2} <= val  # tiles 1 and 2 overlap: same side
    assert len(val) == 2


def test_layout_errors(tmp_path, sn6_root) -> None:
    with pytest.raises(DatasetError, match="no SpaceNet 6 layout"):
        find_spacenet6(tmp_path)
    with pytest.raises(DatasetError, match="unknown SpaceNet 6 product 'SAR'"):
        find_spacenet6(sn6_root, ["SAR"])


def test_real_ps_rgb_tile(shared_data, tmp_path) -> None:
    """The real SN6 PS-RGB tile in the official layout: 37 % nodata at the strip edge."""
    src = shared_data / "spacenet6-rotterdam-samples" / "PS-RGB"
    aoi = tmp_path / "AOI_11_Rotterdam"
    aoi.mkdir()
    (aoi / "PS-RGB").symlink_to(src, target_is_directory=True)
    (tile,) = find_spacenet6(tmp_path, ["PS-RGB"])
    assert tile.tile == 3721 and tile.buildings is None
    image, _, valid, _ = load_tile(tile, ["PS-RGB"])
    assert image.shape == (3, 900, 900)
    assert abs((~valid).mean() - 0.372) < 0.01
