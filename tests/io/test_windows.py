from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from geoseg.errors import TilingError
from geoseg.io.windows import axis_starts, clip_window, plan_tiles, resolve_overlap, tile_transform


@st.composite
def _grid(draw: st.DrawFn) -> tuple[int, int, int]:
    """A tile size and a raster of at most 6 tiles (and 700 px) per side: up to ~2,600 tiles at 90 %
    overlap, so one example costs milliseconds while edges, tiny rasters and strides are all
    drawn."""
    tile = draw(st.integers(1, 256))
    side = st.integers(1, min(700, 6 * tile))
    return draw(side), draw(side), tile


@settings(max_examples=300, deadline=None)
@given(grid=_grid(), frac=st.floats(0, 0.9), edge=st.sampled_from(["shift", "pad", "pad-start"]))
def test_plan_covers_every_pixel_with_full_tiles(
    grid: tuple[int, int, int], frac: float, edge: Literal["shift", "pad", "pad-start"]
) -> None:
    height, width, tile = grid
    plan = plan_tiles(height, width, tile, frac, edge=edge)
    cover = np.zeros((height, width), dtype=np.int32)
    for t in plan:
        w = t.window
        assert (w.height, w.width) == (tile, tile)  # every tile has the full size
        if edge == "shift" and height >= tile:
            assert w.row_off >= 0 and w.row_off + tile <= height  # inside the raster
        if edge == "shift" and width >= tile:
            assert w.col_off >= 0 and w.col_off + tile <= width
        cover[max(w.row_off, 0) : w.row_off + tile, max(w.col_off, 0) : w.col_off + tile] += 1
    assert cover.min() >= 1
    # consecutive tiles overlap by at least the asked overlap
    for starts in (plan.row_starts, plan.col_starts):
        gaps = np.diff(starts)
        assert (gaps <= plan.stride).all() and (gaps >= 1).all()
    assert len(list(plan)) == len(plan) == plan.shape[0] * plan.shape[1]
    if edge != "shift":  # a regular stride, reaching past one edge only
        for starts, size in ((plan.row_starts, height), (plan.col_starts, width)):
            assert set(np.diff(starts)) <= {plan.stride}
            first, end = starts[0], starts[-1] + tile
            if edge == "pad":  # from the first pixel, past the last
                assert first == 0 and end >= size
            else:  # up to the last pixel, from before the first
                assert end == size and first <= 0


def test_edge_modes_per_axis_lay_the_deepness_grid() -> None:
    """QGIS Deepness' grid: regular from the left edge and up from the bottom edge."""
    assert axis_starts(900, 512, 384, "pad") == (0, 384, 768)
    assert axis_starts(900, 512, 384, "pad-start") == (-380, 4, 388)
    assert axis_starts(900, 512, 384, "shift") == (0, 384, 388)
    assert axis_starts(300, 512, 384, "pad-start") == (-212,)
    assert axis_starts(512, 512, 384, "pad-start") == (0,)
    plan = plan_tiles(900, 640, 512, 128, edge=("pad-start", "pad"))
    assert (plan.row_starts, plan.col_starts) == ((-380, 4, 388), (0, 384))
    assert plan.tile(0, 1).window == Window(384, -380, 512, 512)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 900), tile=st.integers(8, 128), data=st.data())
def test_block_tiles_are_exactly_those_intersecting(
    size: int, tile: int, data: st.DataObject
) -> None:
    plan = plan_tiles(size, size, tile, 0.25)
    r0 = data.draw(st.integers(0, size - 1))
    h = data.draw(st.integers(1, size - r0))
    block = Window(r0, r0, h, h)
    chosen = {t.index for t in plan.tiles(block)}
    expected = {
        t.index
        for t in plan
        if t.window.row_off < r0 + h
        and t.window.row_off + tile > r0
        and t.window.col_off < r0 + h
        and t.window.col_off + tile > r0
    }
    assert chosen == expected


def test_rows_final_after_is_the_next_tile_row_start() -> None:
    plan = plan_tiles(1000, 300, 256, 64)
    assert plan.row_starts == (0, 192, 384, 576, 744)
    assert [plan.rows_final_after(i) for i in range(5)] == [192, 384, 576, 744, 1000]


def test_overlap_as_pixels_or_fraction() -> None:
    assert resolve_overlap(512, 0.25) == 128
    assert resolve_overlap(512, 128) == 128
    assert resolve_overlap(512, 0) == 0


@pytest.mark.parametrize(
    ("overlap", "match"),
    [
        (512, "does not fit a tile of 512"),
        (-1, "does not fit"),
        (1.5, "neither whole pixels nor a fraction"),
        (True, "pixels"),
    ],
)
def test_bad_overlap_says_what_fits(overlap: float, match: str) -> None:
    with pytest.raises(TilingError, match=match):
        resolve_overlap(512, overlap)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(TilingError, match="at least 1 row"):
        plan_tiles(0, 10, 4)
    with pytest.raises(TilingError, match="positive"):
        plan_tiles(10, 10, 0)
    with pytest.raises(TilingError, match="edge must be"):
        axis_starts(100, 10, 5, "wrap")  # type: ignore[arg-type]


def test_small_raster_gets_one_tile_reaching_past_the_edge() -> None:
    plan = plan_tiles(5, 3, 64)
    assert [t.window for t in plan] == [Window(0, 0, 64, 64)]


def test_tile_transform_keeps_rotation() -> None:
    t = Affine(17.32, 5.0, 100.0, 10.0, -8.66, 200.0)
    tt = tile_transform(Window(4, 2, 8, 8), t)
    assert tt @ (0, 0) == pytest.approx(t @ (4, 2))
    assert (tt.a, tt.b, tt.d, tt.e) == (t.a, t.b, t.d, t.e)


@pytest.mark.parametrize(
    ("window", "grow", "expected"),
    [
        (Window(-5, -3, 20, 10), 0, Window(0, 0, 15, 7)),  # reaches past the top-left corner
        (Window(90, 45, 20, 10), 0, Window(90, 45, 10, 5)),  # past the bottom-right corner
        (Window(10, 10, 5, 5), 2, Window(8, 8, 9, 9)),  # grown by a halo, inside
        (Window(0, 0, 5, 5), 3, Window(0, 0, 8, 8)),  # grown, clipped at the corner
        (Window(200, 10, 5, 5), 0, Window(200, 10, 0, 5)),  # outside: zero width
    ],
)
def test_clip_window(window: Window, grow: int, expected: Window) -> None:
    got = clip_window(window, 50, 100, grow=grow)
    assert (got.col_off, got.row_off, got.height) == (
        expected.col_off,
        expected.row_off,
        expected.height,
    )
    assert got.width == expected.width
