from __future__ import annotations

import numpy as np
import pytest
import shapely
from rasterio import features

from geoseg.vectorize.polygonize import polygonize_block
from geoseg.vectorize.regularize import regularize
from geoseg.vectorize.seams import drop_collinear
from tests.vectorize.conftest import landcover


def gdal_polygons(
    m: np.ndarray, connectivity: int, mask: np.ndarray | None = None
) -> list[tuple[shapely.Geometry, int]]:
    return [
        (shapely.geometry.shape(g), int(v))
        for g, v in features.shapes(m, mask=mask, connectivity=connectivity)
    ]


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("seed", range(4))
def test_same_regions_as_gdal_polygonize(seed: int, connectivity: int) -> None:
    m = landcover((61, 83), seed)
    pieces, _ = polygonize_block(m, row_off=0, col_off=0, connectivity=connectivity)
    ref = gdal_polygons(m, connectivity)
    assert len(pieces) == len(ref)
    assert shapely.is_valid(pieces.geoms).all()
    for c in range(4):
        mine = shapely.union_all(pieces.geoms[pieces.values == c])
        theirs = shapely.union_all([g for g, v in ref if v == c])
        assert shapely.symmetric_difference(mine, theirs).area == 0
        assert pieces.pixels[pieces.values == c].sum() == (m == c).sum()
    np.testing.assert_array_equal(shapely.area(pieces.geoms), pieces.pixels)


def test_holes_inside_holes_and_a_loop_closing_at_a_corner() -> None:
    m = np.zeros((9, 9), np.uint8)
    m[1:8, 1:8] = 1
    m[2:7, 2:7] = 0
    m[3:6, 3:6] = 1
    m[4, 4] = 0
    loop = np.array(
        [[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 1]], np.uint8
    )  # loop meets at a corner
    for mask in (m, loop):
        for conn in (4, 8):
            pieces, _ = polygonize_block(mask, row_off=0, col_off=0, connectivity=conn)
            assert shapely.is_valid(pieces.geoms).all(), shapely.is_valid_reason(pieces.geoms)
            assert len(pieces) == len(gdal_polygons(mask, conn))
            np.testing.assert_array_equal(shapely.area(pieces.geoms), pieces.pixels)


def test_diagonal_pixels_join_only_with_8_connectivity() -> None:
    m = np.eye(5, dtype=np.uint8)
    four, _ = polygonize_block(m, row_off=0, col_off=0, connectivity=4, exclude=frozenset({0}))
    eight, _ = polygonize_block(m, row_off=0, col_off=0, connectivity=8, exclude=frozenset({0}))
    assert len(four) == 5 and len(eight) == 1
    assert (
        eight.geoms[0].geom_type == "MultiPolygon"
        and eight.geoms[0].is_valid
        and eight.pixels[0] == 5
    )


def test_nodata_and_excluded_classes_make_no_polygons_and_offsets_apply() -> None:
    m = np.array([[255, 1, 1], [0, 2, 2]], np.uint8)
    pieces, edges = polygonize_block(m, row_off=10, col_off=20, nodata=255, exclude=frozenset({0}))
    assert sorted(pieces.values.tolist()) == [1, 2]
    assert shapely.bounds(shapely.union_all(pieces.geoms)).tolist() == [21, 10, 23, 12]
    assert edges["top"].tolist()[0] == -1 and edges["left"].tolist() == [-1, -1]


def test_confidence_is_summed_per_region() -> None:
    m = np.array([[1, 1, 2], [1, 2, 2]], np.uint8)
    conf = np.array([[0.5, 0.7, 1.0], [0.9, 0.2, 0.3]])
    pieces, _ = polygonize_block(m, row_off=0, col_off=0, confidence=conf)
    sums = dict(zip(pieces.values.tolist(), pieces.conf_sum.tolist(), strict=True))  # type: ignore[union-attr]
    assert sums[1] == pytest.approx(2.1) and sums[2] == pytest.approx(1.5)


def test_simplify_keeps_the_block_outline_and_shared_edges() -> None:
    m = landcover((64, 64), 3)
    pieces, _ = polygonize_block(m, row_off=0, col_off=0, simplify_px=1.5)
    assert shapely.is_valid(pieces.geoms).all()
    assert shapely.coverage_is_valid(pieces.geoms)  # no gaps or overlaps between neighbours
    assert shapely.union_all(pieces.geoms).equals(shapely.box(0, 0, 64, 64))
    assert sum(len(shapely.get_coordinates(g)) for g in pieces.geoms) < sum(
        len(shapely.get_coordinates(g)) for g, _ in gdal_polygons(m, 4)
    )


def test_drop_collinear_keeps_the_shape() -> None:
    g = shapely.Polygon(
        [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2), (0, 2), (0, 1), (0, 0)],
        [[(0.5, 0.5), (0.5, 1), (1, 1), (1, 0.5), (0.5, 0.5)]],
    )
    out = drop_collinear(np.array([g]))[0]
    assert out.equals(g) and len(out.exterior.coords) == 5


def test_regularize_squares_a_rasterized_rotated_building() -> None:
    true = shapely.affinity.rotate(shapely.box(20, 20, 60, 44), 23, origin="center")
    m = features.rasterize([(true, 1)], out_shape=(80, 80))
    pieces, _ = polygonize_block(m, row_off=0, col_off=0, exclude=frozenset({0}))
    out = regularize(pieces.geoms[0], 1.5)
    assert out.is_valid and len(out.exterior.coords) - 1 <= 8
    xy = np.asarray(out.exterior.coords)
    d = np.diff(np.vstack([xy, xy[1:2]]), axis=0)
    cos = np.abs((d[:-1] * d[1:]).sum(1)) / (
        np.linalg.norm(d[:-1], axis=1) * np.linalg.norm(d[1:], axis=1)
    )
    assert cos.max() < 1e-6  # every corner a right angle
    assert out.intersection(true).area / out.union(true).area > 0.9
