from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.errors import OutputExistsError
from geoseg.evaluation.calibration import CalibrationBins, apply_temperature, fit_temperature
from geoseg.evaluation.diagnose import diagnose
from geoseg.evaluation.errormap import counts_of, error_codes, error_table
from geoseg.evaluation.evaluate import EvalPair
from geoseg.evaluation.metrics import confusion_matrix
from geoseg.evaluation.pertile import CellGrid
from geoseg.evaluation.uncertainty import entropy, margin
from geoseg.models.checkpoint import LoadedModel
from tests.inference.conftest import config_for, pointwise_model


def test_error_codes_count_the_confusion_matrix() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (50, 60))
    truth[:5] = 255
    pred = rng.integers(0, 4, (50, 60))
    valid = rng.random((50, 60)) > 0.1
    codes = error_codes(pred, truth, valid & (truth != 255), 4)
    cm = confusion_matrix(pred, truth, 4, valid=valid)
    wrong, correct = counts_of(codes, 4)
    assert correct == np.trace(cm)
    np.testing.assert_array_equal(wrong, cm - np.diag(np.diag(cm)))
    assert (codes[:5] == 255).all()
    names = {c.id: c.name for c in error_table(config_for(classes=4).classes)}
    assert names[0] == "correct" and names[1 + 2 * 4 + 3].endswith(
        "-> " + config_for(classes=4).classes.names[3]
    )


def test_ece_equals_a_hand_computation() -> None:
    conf = np.array([0.05, 0.15, 0.15, 0.55, 0.95, 0.95, 0.95, 0.95])
    correct = np.array([0, 1, 0, 1, 1, 1, 1, 0], bool)
    bins = CalibrationBins(10)
    bins.add(conf, correct)
    # bins 0: {0.05 wrong}; 1: {0.15 right, 0.15 wrong}; 5: {0.55 right}; 9: {0.95 x3 right, 1
    # wrong}
    hand = (
        (1 / 8) * abs(0 - 0.05)
        + (2 / 8) * abs(0.5 - 0.15)
        + (1 / 8) * abs(1 - 0.55)
        + (4 / 8) * abs(0.75 - 0.95)
    )
    assert bins.ece == pytest.approx(hand)


def test_entropy_and_margin() -> None:
    p = np.array([[1.0, 0.25, 0.5], [0.0, 0.25, 0.3], [0.0, 0.25, 0.2], [0.0, 0.25, 0.0]])[
        :, None, :
    ]
    np.testing.assert_allclose(
        entropy(p)[0],
        [0.0, 1.0, -(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.2 * np.log(0.2)) / np.log(4)],
        atol=1e-5,
    )
    np.testing.assert_allclose(margin(p)[0], [1.0, 0.0, 0.2], atol=1e-6)


def test_temperature_recovers_a_known_scale() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (3, 20000))
    labels = np.array([rng.choice(3, p=p) for p in apply_temperature(logits, 1.0).T])
    overconfident = logits * 3  # the truth is T=1 for the unscaled logits, so T≈3 here
    assert fit_temperature(overconfident, labels) == pytest.approx(3.0, rel=0.1)


def test_cells_sum_to_the_global_counts() -> None:
    rng = np.random.default_rng(2)
    truth, pred = rng.integers(0, 3, (70, 90)), rng.integers(0, 3, (70, 90))
    valid = rng.random((70, 90)) > 0.2
    grid = CellGrid(70, 90, 32, 3)
    for r0 in range(0, 70, 25):  # rows arrive in bands that do not line up with the cells
        grid.add(
            r0,
            0,
            truth[r0 : r0 + 25],
            pred[r0 : r0 + 25],
            valid[r0 : r0 + 25],
            np.ones((min(25, 70 - r0), 90)),
        )
    np.testing.assert_array_equal(
        grid.confusion.sum(0), confusion_matrix(pred, truth, 3, valid=valid)
    )


@pytest.fixture
def labelled(make_raster, textured_rgb, tmp_path: Path) -> tuple[LoadedModel, list[EvalPair]]:
    loaded = LoadedModel(pointwise_model(classes=3), config_for(classes=3, tile=32, overlap=8))
    data = textured_rgb(70, 90)
    data[:, :4, :6] = 0
    src = make_raster(data, nodata=0)
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, (70, 90))
    labels[60:, 80:] = 255
    return loaded, [EvalPair(str(src), labels, "scene.tif")]


def _ece_by_hand(loaded: LoadedModel, pair: EvalPair, bins: int) -> float:
    """The ECE of a 1x1-convolution model computed on the whole image at once (any tiling of
    such a model gives the same probabilities)."""
    import torch

    with rasterio.open(pair.image) as src:
        data = src.read()
    with torch.no_grad():
        logits = loaded.model(torch.from_numpy(data.astype(np.float32) / 255)[None])[0]
    probs = torch.softmax(logits, 0).numpy()
    labels = np.asarray(pair.labels)
    counted = ~(data == 0).all(0) & (labels != 255)
    conf, right = probs.max(0)[counted], (probs.argmax(0) == labels)[counted]
    which = np.minimum((conf * bins).astype(int), bins - 1)
    return float(
        sum(
            (which == b).mean() * abs(right[which == b].mean() - conf[which == b].mean())
            for b in range(bins)
            if (which == b).any()
        )
    )


@pytest.mark.slow
def test_diagnose_outputs(tmp_path: Path, labelled) -> None:
    loaded, pairs = labelled
    out = tmp_path / "diag"
    res = diagnose(
        loaded,
        pairs,
        out,
        cell=32,
        worst=2,
        temperature=True,
        device="cpu",
        workers=1,
        precision="fp32",
    )
    cm = res.report.scores.confusion
    with rasterio.open(pairs[0].image) as src:
        grid = (src.width, src.height, src.transform, src.crs)
    for name in ("prediction", "errors", "entropy", "margin"):
        with rasterio.open(out / "scene" / f"{name}.tif") as ds:
            assert (ds.width, ds.height, ds.transform, ds.crs) == grid
    with rasterio.open(out / "scene" / "errors.tif") as ds:
        codes = ds.read(1)
        assert ds.nodata == 255 and ds.colormap(1)[0][:3] == (215, 215, 215)
    wrong, correct = counts_of(codes, 3)
    assert correct == np.trace(cm) and (wrong == cm - np.diag(np.diag(cm))).all()
    assert codes[0, 0] == 255 and codes[65, 85] == 255  # nodata input and ignored label
    assert (out / "scene" / "errors.qml").is_file()
    made = json.loads((out / "provenance.json").read_text())
    assert made["inputs"] == [str(p.image) for p in pairs] and made["model"] == "module"
    rat = ET.parse(out / "scene" / "errors.tif.aux.xml").find(
        "PAMRasterBand/GDALRasterAttributeTable"
    )
    assert rat is not None
    assert [f.findtext("Name") for f in rat.findall("FieldDefn")][:3] == ["value", "count", "class"]
    correct_row = [f.text for f in rat.findall("Row")[0].findall("F")]
    assert correct_row[:3] == ["0", str(correct), "correct"]
    with rasterio.open(out / "scene" / "entropy.tif") as ds:
        assert np.isnan(ds.read(1)[0, 0])
    rows = list(csv.DictReader((out / "cells.csv").open()))
    assert sum(int(r["pixels"]) for r in rows) == cm.sum()
    for k, name in enumerate(res.report.classes):
        assert sum(int(r[f"true_{name}"]) for r in rows) == cm[k].sum()
        assert sum(int(r[f"pred_{name}"]) for r in rows) == cm[:, k].sum()
    import geopandas as gpd

    cells = gpd.read_file(out / "cells.gpkg", layer="cells")
    assert len(cells) == len(rows) and cells.crs == grid[3]
    assert len(res.worst) == 2 and all(p.is_file() for p in res.worst)
    assert res.temperature is not None and (out / "model-calibrated.safetensors").is_file()
    assert res.ece == pytest.approx(_ece_by_hand(loaded, pairs[0], 15), abs=1e-5)
    assert (out / "reliability.png").is_file()
    text = (out / "index.md").read_text()
    assert "scene/errors.tif" in text and "reliability.png" in text
    with pytest.raises(OutputExistsError, match="--overwrite"):
        diagnose(loaded, pairs, out)


def test_a_folder_another_run_is_writing_is_refused_and_left_alone(
    tmp_path: Path, labelled
) -> None:
    """Two diagnoses into one folder at once: the second refuses in one line and removes nothing
    of the first's, even a folder both saw missing when they started."""
    from geoseg.io.atomic import claim_folder

    loaded, pairs = labelled
    out = tmp_path / "new" / "diag"
    with claim_folder(out, "diagnose"):  # the first run holds the folder it made
        (out / "scene").mkdir()
        with pytest.raises(OutputExistsError, match="is writing this folder now"):
            diagnose(loaded, pairs, out, device="cpu", workers=1, precision="fp32")
        assert (out / "scene").is_dir()


@pytest.mark.slow
def test_cli(tmp_path: Path, make_raster, textured_rgb) -> None:
    from geoseg.models.checkpoint import model_from_config, save_checkpoint

    cfg = config_for(classes=3, tile=64, overlap=16).replace(
        architecture="unet",
        encoder="resnet18",
        output_stride=8,
        model_kwargs={"encoder_depth": 3, "decoder_channels": [16, 8, 4]},
    )
    save_checkpoint(model_from_config(cfg), cfg, tmp_path / "m.safetensors")
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    make_raster(textured_rgb(80, 100), name="img/a.tif")
    make_raster(
        np.random.default_rng(0).integers(0, 3, (80, 100)).astype(np.uint8), name="lab/a.tif"
    )
    runner = CliRunner()
    args = [
        "diagnose",
        str(tmp_path / "m.safetensors"),
        "--images",
        str(tmp_path / "img"),
        "--labels",
        str(tmp_path / "lab"),
        "-o",
        str(tmp_path / "d"),
        "--cell",
        "32",
        "--device",
        "cpu",
    ]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "ECE" in res.output and (tmp_path / "d" / "index.md").is_file()
    res = runner.invoke(cli, args)
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = runner.invoke(cli, ["diagnose", "-o", str(tmp_path / "e")])
    assert res.exit_code == 1 and "nothing to diagnose" in res.output
