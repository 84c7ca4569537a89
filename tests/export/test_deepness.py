"""A model exported for QGIS Deepness runs in geoseg as the plugin runs it: the same tile grid,
the same pixels fed to the network, the same tile kept for each pixel.

``deepness_tiles`` and ``deepness_predict`` restate the plugin's documented rules (Deepness 0.6:
``ProcessingOverlap.get_overlap_px``, ``extent_utils.calculate_extended_processing_extent``,
``MapProcessor.__init__``, ``TileParams.get_slice_on_full_image_for_copying``, and QGIS's raster
block reads) in numpy, for a whole north-up layer processed at its own pixel size. The real plugin
runs in ``tests/qgis/test_deepness.py`` where it is installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoseg.errors import CheckpointError
from geoseg.export import export_onnx, read_metadata
from geoseg.export.metadata import deepness_config, deepness_overlap
from geoseg.inference import open_session, predict_block
from geoseg.models.checkpoint import LoadedModel
from geoseg.models.config import ModelConfig
from tests.inference.conftest import config_for, conv3_model

ort = pytest.importorskip("onnxruntime")


def deepness_tiles(
    height: int, width: int, tile: int, percent: int
) -> tuple[list[int], list[int], np.ndarray]:
    """Deepness' tiles over a ``height x width`` layer: the tiles' start rows and columns in the
    raster's pixels, and for each raster pixel the index (row-major) of the tile whose result it
    keeps."""
    overlap = int(tile * percent / 100 * 2) // 2  # ProcessingOverlap.get_overlap_px
    stride = tile - overlap

    def missing(size: int) -> int:  # calculate_extended_processing_extent
        if size <= tile:
            return tile - size
        return (stride - (size - tile) % stride) % stride

    # the extent grows at xMaximum (the right) and yMaximum (the top, north); tiles start at its
    # top-left corner, so raster row 0 lies `missing(height)` rows below the first tile's top
    ext_h, ext_w = height + missing(height), width + missing(width)
    ny, nx = round((ext_h - tile) / stride) + 1, round((ext_w - tile) / stride) + 1
    top = ext_h - height
    rows = [j * stride - top for j in range(ny)]
    cols = [i * stride for i in range(nx)]
    # TileParams.get_slice_on_full_image_for_copying, on the extended image, later tiles last
    half = max((tile - stride) // 2, 0)
    owner = np.full((ext_h, ext_w), -1)
    for j in range(ny):
        for i in range(nx):
            y0, y1 = j * stride + half, j * stride + tile - half
            x0, x1 = i * stride + half, i * stride + tile - half
            y0, x0 = (y0 - half if j == 0 else y0), (x0 - half if i == 0 else x0)
            y1, x1 = (y1 + half if j == ny - 1 else y1), (x1 + half if i == nx - 1 else x1)
            owner[y0:y1, x0:x1] = j * nx + i
    return rows, cols, owner[top : top + height, :width]


def deepness_predict(onnx: Path, raster: Path, percent: int) -> np.ndarray:
    """Deepness' class probabilities ``(classes, rows, cols)``: each tile read as QGIS reads it
    (stored values, nodata pixels included; the nodata value, or 0, past the raster's edges),
    standardized as the metadata says, and each pixel taken from the tile that keeps it."""
    meta = read_metadata(onnx)
    mean = np.array(json.loads(meta["standardization_mean"]), np.float32)[:, None, None]
    std = np.array(json.loads(meta["standardization_std"]), np.float32)[:, None, None]
    tile = json.loads(meta["tile_size"])
    with rasterio.open(raster) as src:
        data, nodata = src.read(), src.nodata
    _, height, width = data.shape
    rows, cols, owner = deepness_tiles(height, width, tile, percent)
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    out = np.zeros((len(json.loads(meta["class_names"])), height, width), np.float32)
    for j, r in enumerate(rows):
        for i, c in enumerate(cols):
            block = np.full((data.shape[0], tile, tile), nodata or 0, data.dtype)
            r0, c0, r1, c1 = max(r, 0), max(c, 0), min(r + tile, height), min(c + tile, width)
            block[:, r0 - r : r1 - r, c0 - c : c1 - c] = data[:, r0:r1, c0:c1]
            x = (block.astype(np.float32) * np.float32(1 / 255) - mean) / std
            probs = session.run(None, {"image": x[None]})[0][0]
            keep = owner[r0:r1, c0:c1] == j * len(cols) + i
            out[:, r0:r1, c0:c1][:, keep] = probs[:, r0 - r : r1 - r, c0 - c : c1 - c][:, keep]
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 5x5-receptive-field model (64 px tiles, 16 px overlap) exported: (dynamic, Deepness)."""
    out = tmp_path_factory.mktemp("deepness")
    model = LoadedModel(conv3_model(), config_for(tile=64, overlap=16).replace(gsd=0.5))
    res = export_onnx(model, out / "m.onnx", fixed=out / "m.deepness.onnx")
    assert res.fixed is not None
    return res.path, res.fixed


@pytest.mark.parametrize(
    ("tile", "overlap", "percent"),
    [
        (512, 32, 25),  # the bundled models: 6.25 % is no whole percentage; 25 % is 128 px
        (64, 16, 25),
        (640, 32, 5),  # 5 % of 640 is 32 px
        (300, 20, 8),  # 7 % would be 21 px, odd: Deepness would cut 10 px from one side only
        (200, 30, 15),
        (512, 0, 0),
        (512, 200, 50),
        (101, 10, 0),  # no whole percentage of 101 px is whole pixels but 0
    ],
)
def test_overlap_is_a_whole_even_number_of_pixels_and_a_whole_percentage(
    tile: int, overlap: int, percent: int
) -> None:
    assert deepness_overlap(tile, overlap) == percent
    pixels = tile * percent / 100
    assert pixels == int(pixels) and pixels % 2 == 0 and pixels == int(pixels * 2) // 2


def test_the_deepness_file_records_the_plugins_tiling(exported: tuple[Path, Path]) -> None:
    dynamic, fixed = exported
    meta = read_metadata(fixed)
    config = ModelConfig.from_json(meta["geoseg_config"])
    assert (config.tiling, config.tile_size, config.overlap) == ("deepness", 64, 16)
    assert (json.loads(meta["tile_size"]), json.loads(meta["tiles_overlap"])) == (64, 25)
    # the dynamic file runs as the checkpoint does, and carries no Deepness keys
    plain = read_metadata(dynamic)
    assert set(plain) == {"geoseg_config", "geoseg_output"}
    assert json.loads(plain["geoseg_config"])["overlap"] == 16
    assert "tiling" not in json.loads(plain["geoseg_config"])
    bundled = deepness_config(config_for(tile=512, overlap=32))
    assert (bundled.tiling, bundled.overlap) == ("deepness", 128)


@pytest.mark.parametrize(
    ("height", "width"),
    [(64, 64), (30, 50), (100, 170), (113, 64), (65, 200), (200, 65), (1, 1), (160, 160)],
)
def test_geoseg_lays_the_tiles_deepness_lays(
    exported: tuple[Path, Path], make_raster, textured_rgb, height: int, width: int
) -> None:
    src = make_raster(textured_rgb(height, width), name=f"{height}x{width}.tif")
    rows, cols, owner = deepness_tiles(height, width, 64, 25)
    with open_session(src, exported[1], device="cpu") as session:
        plan, weights = session.plan, session.weights
    assert (list(plan.row_starts), list(plan.col_starts), plan.overlap) == (rows, cols, 16)
    # every pixel takes most of its weight from the tile whose result Deepness keeps there
    best = np.zeros((height, width), np.float32)
    chosen = np.full((height, width), -1)
    for t in plan:
        r, c = int(t.window.row_off), int(t.window.col_off)
        r0, c0, r1, c1 = max(r, 0), max(c, 0), min(r + 64, height), min(c + 64, width)
        w = weights[r0 - r : r1 - r, c0 - c : c1 - c]
        better = w > best[r0:r1, c0:c1]
        chosen[r0:r1, c0:c1][better] = t.index
        best[r0:r1, c0:c1] = np.maximum(best[r0:r1, c0:c1], w)
    assert (chosen == owner).all()


def test_geoseg_feeds_the_pixels_qgis_reads(exported: tuple[Path, Path], make_raster) -> None:
    data = np.full((3, 40, 90), 200, np.uint8)
    data[:, 5:10, 5:10] = 7  # nodata inside the raster keeps its stored value
    src = make_raster(data, name="nd7.tif", nodata=7)
    with open_session(src, exported[1], device="cpu") as session:
        first = session.plan.tile(0, 0).window
        assert (int(first.row_off), int(first.col_off)) == (-24, 0)
        x, valid = session.read_tile(first)  # type: ignore[misc]
    raw = np.rint(x * 255).astype(int)  # the model's normalization is x / 255
    assert (raw[:, :24] == 7).all()  # past the top edge: the nodata value
    assert (raw[:, 29:34, 5:10] == 7).all() and not valid[29:34, 5:10].any()
    assert (raw[:, 24:, 10:] == 200).all() and valid[24:, 10:].all()


@pytest.mark.parametrize(
    ("height", "width", "nodata"), [(100, 170, 0), (40, 90, None), (130, 130, 0)]
)
def test_geoseg_predicts_what_deepness_predicts(
    exported: tuple[Path, Path], make_raster, textured_rgb, height: int, width: int, nodata
) -> None:
    data = textured_rgb(height, width)
    if nodata is not None:
        data[:, : height // 3, : width // 2] = nodata  # a corner without data, as in the sample
    src = make_raster(data, name=f"p{height}x{width}.tif", nodata=nodata)
    theirs = deepness_predict(exported[1], src, 25)
    ours = predict_block(src, exported[1], Window(0, 0, width, height), device="cpu", workers=1)
    valid = ours.valid
    np.testing.assert_allclose(ours.data[:, valid], theirs[:, valid], atol=1e-6)
    assert (ours.data.argmax(0)[valid] == theirs.argmax(0)[valid]).all()
    # the checkpoint's own tiling (tiles inside the raster, blended, nodata as the mean) differs
    plain = predict_block(src, exported[0], Window(0, 0, width, height), device="cpu", workers=1)
    assert np.abs(plain.data[:, valid] - theirs[:, valid]).max() > 1e-3


def test_an_unknown_tiling_is_refused_with_the_known_ones(make_raster, textured_rgb) -> None:
    model = LoadedModel(conv3_model(), config_for(tile=64, overlap=16).replace(tiling="spiral"))
    src = make_raster(textured_rgb(40, 40))
    with pytest.raises(
        CheckpointError, match="tiling 'spiral'; this geoseg knows geoseg, deepness"
    ):
        predict_block(src, model, Window(0, 0, 40, 40), device="cpu")
