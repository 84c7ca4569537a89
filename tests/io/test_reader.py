from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from geoseg.errors import RasterFormatError, RasterOpenError
from geoseg.io.reader import RasterReader, ground_pixel_size, valid_mask
from geoseg.io.windows import plan_tiles


def test_window_inside_matches_rasterio(make_raster: Callable[..., Path], textured_rgb) -> None:
    data = textured_rgb(40, 50)
    path = make_raster(data)
    with RasterReader(path) as r:
        got = r.read(Window(10, 5, 20, 30))
    assert got.data.shape == (3, 30, 20)
    np.testing.assert_array_equal(got.data, data[:, 5:35, 10:30])
    assert got.valid.all()
    assert got.transform @ (0, 0) == pytest.approx(r.transform @ (10, 5))
    assert got.crs.to_epsg() == 32631


def test_boundless_read_fills_and_marks_outside_invalid(make_raster, textured_rgb) -> None:
    data = textured_rgb(10, 12)
    with RasterReader(make_raster(data), fill=7) as r:
        got = r.read(Window(-3, -2, 16, 16))
    np.testing.assert_array_equal(got.data[:, 2:12, 3:15], data)
    assert (got.data[:, :2] == 7).all() and (got.data[:, :, :3] == 7).all()
    assert got.valid[2:12, 3:15].all() and got.valid.sum() == 120


def test_selected_bands_in_model_order(make_raster, textured_rgb) -> None:
    data = textured_rgb(8, 8)
    with RasterReader(make_raster(data), bands=(3, 1)) as r:
        got = r.read(Window(0, 0, 8, 8))
    np.testing.assert_array_equal(got.data, data[[2, 0]])


def test_band_out_of_range_says_which_exist(make_raster, textured_rgb) -> None:
    with pytest.raises(
        RasterFormatError, match=r"band\(s\) \[4\] do not exist; the raster has 3 band"
    ):
        RasterReader(make_raster(textured_rgb(8, 8)), bands=(1, 4))


def test_nodata_needs_every_band(make_raster) -> None:
    data = np.full((3, 4, 4), 9, dtype=np.uint8)
    data[:, 0, 0] = 0  # all bands nodata -> invalid
    data[0, 1, 1] = 0  # one dark band -> still valid
    with RasterReader(make_raster(data, nodata=0)) as r:
        valid = r.read(Window(0, 0, 4, 4)).valid
    assert not valid[0, 0] and valid[1, 1] and valid.sum() == 15


def test_nan_is_invalid_without_a_nodata_tag(make_raster) -> None:
    data = np.ones((2, 3, 3), dtype=np.float32)
    data[1, 2, 2] = np.nan
    with RasterReader(make_raster(data)) as r:
        valid = r.read(Window(0, 0, 3, 3)).valid
    assert not valid[2, 2] and valid.sum() == 8


def test_internal_mask_is_read(tmp_path: Path, textured_rgb) -> None:
    path = tmp_path / "masked.tif"
    data = textured_rgb(16, 16)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            height=16,
            width=16,
            count=3,
            dtype="uint8",
            crs="EPSG:4326",
            transform=rasterio.transform.from_origin(0, 16, 1, 1),
        ) as dst:
            dst.write(data)
            mask = np.full((16, 16), 255, np.uint8)
            mask[:4] = 0
            dst.write_mask(mask)
    with RasterReader(path) as r:
        valid = r.read(Window(0, 0, 16, 16)).valid
    assert not valid[:4].any() and valid[4:].all()


def test_valid_mask_pure() -> None:
    a = np.array([[[0, 1], [np.nan, 2]]], dtype=np.float32)
    np.testing.assert_array_equal(valid_mask(a, 0), [[False, True], [False, True]])


def test_threaded_reads_equal_serial_reads(make_raster, textured_rgb) -> None:
    data = textured_rgb(300, 260)
    plan = plan_tiles(300, 260, 64, 0.25)
    windows = [t.window for t in plan]
    with RasterReader(make_raster(data)) as r:
        serial = [g.data for g in r.read_many(windows, workers=0)]
        threaded = [g.data for g in r.read_many(windows, workers=3, prefetch=5)]
    assert len(serial) == len(windows)
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a, b)


def test_truncated_file_fails_on_read_with_a_clear_message(
    make_raster, textured_rgb, tmp_path: Path
) -> None:
    path = make_raster(
        textured_rgb(256, 256), compress="deflate", tiled=True, blockxsize=64, blockysize=64
    )
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(RasterOpenError, match="truncated or corrupt"), RasterReader(cut) as r:
        r.read(Window(0, 0, 256, 256))


def test_reads_over_http_range_requests(http_root, textured_rgb) -> None:
    root, url = http_root
    from tests.conftest import write_raster

    data = textured_rgb(64, 64)
    write_raster(root / "scene.tif", data, tiled=True, blockxsize=32, blockysize=32)
    with RasterReader(f"{url}/scene.tif") as r:
        got = r.read(Window(8, 8, 32, 32))
    np.testing.assert_array_equal(got.data, data[:, 8:40, 8:40])


def test_missing_url_is_a_clear_error(http_root) -> None:
    _, url = http_root
    with pytest.raises(RasterOpenError, match="expected a raster GDAL can open"):
        RasterReader(f"{url}/nope.tif")


def test_ground_pixel_size_in_metres() -> None:
    utm = Affine(0.5, 0, 600000, 0, -0.5, 5750000)
    assert ground_pixel_size(utm, "EPSG:32631", 100) == 0.5
    feet = Affine(2.0, 0, 0, 0, -2.0, 0)
    assert ground_pixel_size(feet, "EPSG:2263", 100) == pytest.approx(2 * 0.3048006, rel=1e-6)
    # degrees: metres along the parallel at the centre row (60 deg N halves a degree's width)
    deg = Affine(1e-5, 0, 4.0, 0, -1e-5, 60.0 + 5e-4)
    assert ground_pixel_size(deg, "EPSG:4326", 100) == pytest.approx(0.5566, rel=1e-3)
    assert ground_pixel_size(Affine.identity(), None, 100) is None


def test_close_waits_for_reads_in_flight(make_raster, textured_rgb, monkeypatch) -> None:
    """A consumer that stops early (Ctrl-C) and closes the reader must not close a handle under a
    reading thread: GDAL crashes (SIGSEGV) on such a handle."""
    import threading
    import time

    r = RasterReader(make_raster(textured_rgb(64, 64)))
    plain = RasterReader.read
    running = threading.Event()
    done: list[float] = []

    def slow(self: RasterReader, window: Window):  # type: ignore[no-untyped-def]
        running.set()
        time.sleep(0.2)
        out = plain(self, window)
        done.append(time.monotonic())
        return out

    monkeypatch.setattr(RasterReader, "read", slow)
    stream = r.read_many([Window(0, 0, 8, 8)] * 6, workers=2, prefetch=4)
    next(stream)  # the others are being read now; the consumer stops here, stream still alive
    running.wait()
    r.close()
    closed = time.monotonic()
    time.sleep(0.6)  # long enough for any read still running to finish
    assert done and all(t <= closed for t in done)
