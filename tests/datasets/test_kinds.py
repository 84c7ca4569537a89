"""The dataset-kind registry: a kind defined here registers in one call and works in train, evaluate
and check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from geoseg.classes import IGNORE_INDEX, ClassTable
from geoseg.cli import cli
from geoseg.datasets import (
    DATASET_KINDS,
    DatasetKind,
    DataSource,
    Scene,
    dataset_kind,
    register_dataset_kind,
    split_by_fraction,
)
from geoseg.errors import ConfigError
from tests.conftest import write_raster

KIND = "test-squares"


def _find(source: DataSource) -> list[Path]:
    return sorted(Path(source.root).glob("img_*.tif"))


def _scene(path: Path, source: DataSource) -> Scene:
    with (
        rasterio.open(path) as src,
        rasterio.open(path.with_name(path.name.replace("img_", "lab_"))) as lab,
    ):
        return Scene(
            image=src.read(),
            mask=lab.read(1),
            name=str(path),
            group=path.stem,
            transform=src.transform,
            crs=src.crs.to_string(),
        )


@pytest.fixture
def squares(tmp_path: Path) -> Iterator[Path]:
    """Four 64x64 RGB GeoTIFFs with a bright square labelled 1, registered as a kind of their
    own."""
    root = tmp_path / "squares"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        labels = np.zeros((64, 64), np.uint8)
        labels[16:48, 8 + 4 * i : 40 + 4 * i] = 1
        labels[:2, :2] = IGNORE_INDEX
        image = (rng.integers(0, 40, (3, 64, 64)) + 180 * labels.clip(0, 1)).astype(np.uint8)
        transform = Affine(1.0, 0, 500_000 + 100 * i, 0, -1.0, 5_700_000)
        write_raster(root / f"img_{i}.tif", image, transform=transform)
        write_raster(root / f"lab_{i}.tif", labels[None], transform=transform)
    register_dataset_kind(
        DatasetKind(
            KIND, find=_find, scene=_scene, classes=ClassTable.from_names(["background", "square"])
        )
    )
    yield root
    DATASET_KINDS.pop(KIND, None)


def test_registered_kind_is_checked_by_the_cli(squares: Path) -> None:
    res = CliRunner().invoke(cli, ["dataset", "check", str(squares), "--kind", KIND, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["images"] == 4 and report["labels"] == 4 and report["crs"] == {"EPSG:32631": 4}
    assert set(report["class_pixels"]) == {"background", "square", "unlabeled (ignored)"}
    assert report["class_pixels"]["square"] == 4 * 32 * 32
    res = CliRunner().invoke(cli, ["dataset", "stats", str(squares), "--kind", KIND])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output)["mean"]) == 3


def test_unknown_kind_lists_the_registered_ones(squares: Path) -> None:
    from geoseg.training.config import load_config

    with pytest.raises(
        ConfigError,
        match=r"data.kind: 'nope' is not allowed; expected one of dubai, geotiff, spacenet6, "
        rf"{KIND}",
    ):
        load_config(None, ["data.kind=nope"])
    assert load_config(None, [f"data.kind={KIND}"]).data.kind == KIND
    res = CliRunner().invoke(cli, ["dataset", "check", str(squares), "--kind", "nope"])
    assert res.exit_code == 2 and KIND in res.output and "dubai" in res.output


def test_names_are_unique_unless_replaced(squares: Path) -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_dataset_kind(dataset_kind(KIND))
    assert register_dataset_kind(dataset_kind(KIND), replace=True).name == KIND


def test_split_by_fraction_is_seeded_and_complete() -> None:
    items = list(range(10))
    source = DataSource(kind=KIND, split={"val": 0.2, "test": 0.1})
    parts = split_by_fraction(items, source, seed=1)
    assert parts == split_by_fraction(items, source, seed=1)
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == items
    assert (len(parts["val"]), len(parts["test"])) == (2, 1)
    with pytest.raises(ConfigError, match=r"data.split.val: expected a fraction"):
        split_by_fraction(items, DataSource(kind=KIND, split={"val": [1]}))


@pytest.mark.slow
def test_registered_kind_trains_and_evaluates(tmp_path: Path, squares: Path) -> None:
    from geoseg.evaluation import evaluate, pairs_from_config
    from geoseg.models import read_config
    from geoseg.training import load_config, train

    cfg = load_config(
        None,
        [
            f"data.kind={KIND}",
            f"data.root={squares}",
            "data.split={val: 0.25, test: 0.25}",
            "data.patch_size=32",
            "data.samples_per_epoch=4",
            "epochs=1",
            "batch_size=2",
            "model.encoder=resnet18",
            "model.kwargs={encoder_depth: 3, decoder_channels: [16, 8, 8]}",
            "logger=[csv]",
            f"output={tmp_path / 'run'}",
            "tile_size=64",
            "overlap=16",
        ],
    )
    run = train(cfg, progress=False)
    config = read_config(run.checkpoint)
    assert (
        config.classes.names == ["background", "square"]
        and config.training["data"]["train_scenes"] == 2
    )
    pairs = pairs_from_config(cfg, "test")
    assert len(pairs) == 1 and pairs[0].image.endswith(".tif") and pairs[0].labels.shape == (64, 64)
    report = evaluate(run.checkpoint, pairs)
    assert (
        report.classes == ["background", "square"]
        and int(report.scores.confusion.sum()) == 64 * 64 - 4
    )
