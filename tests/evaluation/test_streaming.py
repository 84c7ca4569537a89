"""evaluate and diagnose stream each image in bands of rows: the same figures as whole arrays
give, in memory that does not grow with the image."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.errors import DatasetError
from geoseg.evaluation.diagnose import diagnose
from geoseg.evaluation.evaluate import EvalPair, evaluate
from geoseg.evaluation.footprints import PackedMask
from geoseg.evaluation.metrics import confusion_matrix
from geoseg.inference import predict_classes
from geoseg.inference.engine import iter_probabilities
from geoseg.io.quicklook import NearestSample, _nearest, _shrink
from geoseg.models.checkpoint import LoadedModel
from geoseg.vectorize.polygonize import polygonize_block
from tests.conftest import write_raster
from tests.inference.conftest import config_for, pointwise_model

CPU = {"device": "cpu", "workers": 1}


def test_packed_mask_takes_windows_at_any_offset() -> None:
    rng = np.random.default_rng(0)
    full = rng.random((37, 53)) > 0.5
    packed = PackedMask(37, 53)
    for r0, c0, h, w in [(0, 0, 37, 16), (0, 16, 20, 13), (20, 16, 17, 13), (0, 29, 37, 24)]:
        packed.add(r0, c0, full[r0 : r0 + h, c0 : c0 + w])
    np.testing.assert_array_equal(packed.rows(0, 37), full.astype(np.uint8))


def test_packed_mask_polygons_are_those_of_the_whole_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    import shapely

    from geoseg.evaluation import footprints

    monkeypatch.setattr(footprints, "BAND_ROWS", 16)  # many seams on a small mask
    rng = np.random.default_rng(1)
    mask = np.zeros((70, 90), np.uint8)
    for _ in range(25):
        r, c = rng.integers(0, 64), rng.integers(0, 84)
        mask[r : r + rng.integers(2, 30), c : c + rng.integers(2, 9)] = 1  # crosses band seams
    packed = PackedMask(70, 90)
    packed.add(0, 0, mask.astype(bool))
    got = packed.polygons()
    whole, _ = polygonize_block(mask, row_off=0, col_off=0, exclude=frozenset({0}))
    assert len(got) == len(whole) > 5
    key = lambda g: (round(g.centroid.x, 6), round(g.centroid.y, 6))  # noqa: E731
    for a, b in zip(sorted(got, key=key), sorted(whole.geoms, key=key), strict=True):
        assert a.area == b.area and shapely.equals(a, b)


def test_nearest_sample_picks_the_pixels_of_the_whole_array() -> None:
    full = np.arange(1500 * 1100).reshape(1500, 1100)
    sample = NearestSample(full.shape, max_size=768)
    for r0 in range(0, 1500, 200):  # bands of rows in column stripes
        for c0 in (0, 512):
            sample.add(r0, c0, full[r0 : r0 + 200, c0 : c0 + 512 if c0 == 0 else 1100])
    np.testing.assert_array_equal(sample.data, _nearest(full, _shrink(full.shape, 768)))


def _scene(tmp_path: Path, rows: int, cols: int, classes: int = 3) -> tuple[Path, Path]:
    tmp_path.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    data = rng.integers(1, 255, (3, rows, cols), dtype=np.uint8)
    data[:, : rows // 5, : cols // 3] = 0  # a nodata corner
    tiled = {"tiled": True, "blockxsize": 256, "blockysize": 256}
    image = write_raster(tmp_path / "img.tif", data, nodata=0, **tiled)
    labels = rng.integers(0, classes, (1, rows, cols), dtype=np.uint8)
    labels[0, -10:, :] = 255  # unlabelled
    return image, write_raster(tmp_path / "lab.tif", labels, nodata=255, **tiled)


def test_evaluate_counts_what_the_whole_prediction_counts(tmp_path: Path) -> None:
    from geoseg.classes import ClassTable
    from geoseg.evaluation.spacenet import match_polygons

    cfg = config_for(classes=2, tile=64, overlap=16).replace(
        classes=ClassTable.from_names(["background", "building"])
    )
    loaded = LoadedModel(pointwise_model(classes=2), cfg)
    image, labels = _scene(tmp_path, 300, 260, classes=2)
    report = evaluate(loaded, [EvalPair(str(image), str(labels), "a")], out_dir=tmp_path, **CPU)
    pred = predict_classes(image, loaded, **CPU)
    with rasterio.open(labels) as ds:
        truth = ds.read(1).astype(np.int64)
    ids = pred.data[0]
    np.testing.assert_array_equal(
        report.scores.confusion, confusion_matrix(ids, truth, 2, valid=ids != 255)
    )
    whole = lambda m: list(  # noqa: E731
        polygonize_block(m.astype(np.uint8), row_off=0, col_off=0, exclude=frozenset({0}))[0].geoms
    )
    expected = match_polygons(whole((ids == 1) & (ids != 255)), whole(truth == 1))
    assert report.buildings is not None
    assert (report.buildings.tp, report.buildings.fp, report.buildings.fn) == (
        expected.tp,
        expected.fp,
        expected.fn,
    )
    assert report.per_image[0]["pixels"] == int(report.scores.confusion.sum())
    assert (tmp_path / "quicklooks" / "a.png").is_file()


def _extra_peak(run) -> float:  # type: ignore[no-untyped-def]
    """MiB that ``run()`` holds at its peak beyond what streaming the image alone needs."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_evaluate_and_diagnose_memory_does_not_grow_with_the_image(tmp_path: Path) -> None:
    rows, cols = 2048, 1536  # one int64 array of the image: 24 MiB
    image, labels = _scene(tmp_path, rows, cols)
    loaded = LoadedModel(pointwise_model(classes=3), config_for(classes=3, tile=128, overlap=16))
    pairs = [EvalPair(str(image), str(labels), "a")]

    def engine() -> None:
        for _ in iter_probabilities(image, loaded, **CPU):
            pass

    def run(pairs: list[EvalPair], out: Path) -> None:
        evaluate(loaded, pairs, **CPU)
        diagnose(loaded, pairs, out, worst=0, cell=512, **CPU)

    small, small_labels = _scene(tmp_path / "small", 64, 64)  # imports are no part of the peak
    run([EvalPair(str(small), str(small_labels), "s")], tmp_path / "warm")
    base = _extra_peak(engine)
    scored = _extra_peak(lambda: evaluate(loaded, pairs, **CPU))
    diagnosed = _extra_peak(
        lambda: diagnose(loaded, pairs, tmp_path / "dg", worst=0, cell=512, **CPU)
    )
    # a quarter of one full-size int64 array over the engine's own bands of rows
    assert scored - base < 6, (base, scored)
    assert diagnosed - base < 6, (base, diagnosed)


def test_all_nan_images_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    loaded = LoadedModel(pointwise_model(classes=3), config_for(classes=3))
    image = write_raster(tmp_path / "nan.tif", np.full((3, 40, 50), np.nan, np.float32))
    labels = np.random.default_rng(0).integers(0, 3, (40, 50))
    pairs = [EvalPair(str(image), labels, "nan")]
    expected = (
        r"no pixel scored in 1 image\(s\): expected image pixels with data where the labels hold "
        r"a class, got none \(the images are all nodata or NaN"
    )
    with pytest.raises(DatasetError, match=expected):
        evaluate(loaded, pairs, out_dir=tmp_path / "ev", **CPU)
    assert not (tmp_path / "ev").exists() or not any((tmp_path / "ev").rglob("*.*"))
    with pytest.raises(DatasetError, match=expected):
        diagnose(loaded, pairs, tmp_path / "dg", **CPU)
    assert not (tmp_path / "dg").exists()


def test_one_empty_image_among_others_is_a_warning(tmp_path: Path) -> None:
    from geoseg.errors import NoValidDataWarning

    loaded = LoadedModel(pointwise_model(classes=3), config_for(classes=3))
    rng = np.random.default_rng(0)
    nan = write_raster(tmp_path / "nan.tif", np.full((3, 40, 50), np.nan, np.float32))
    good = write_raster(tmp_path / "ok.tif", rng.integers(1, 255, (3, 40, 50), dtype=np.uint8))
    labels = rng.integers(0, 3, (40, 50))
    pairs = [EvalPair(str(nan), labels, "nan"), EvalPair(str(good), labels, "ok")]
    with pytest.warns(NoValidDataWarning, match=r"no pixel scored in 1 image\(s\) \(nan\)"):
        out = diagnose(loaded, pairs, tmp_path / "dg", worst=0, **CPU)
    assert out.report.per_image[0]["pixels"] == 0 and out.report.per_image[1]["pixels"] == 2000
    text = (tmp_path / "dg" / "calibration.json").read_text()
    calibration = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert calibration["ece"] == pytest.approx(out.ece)
    metrics = json.loads((tmp_path / "dg" / "metrics.json").read_text(), parse_constant=pytest.fail)
    assert metrics["images"][0] == {"image": "nan", "miou": None, "pixels": 0, "outputs": "nan"}
