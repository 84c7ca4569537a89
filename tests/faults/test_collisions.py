"""No output may be an input, or another output of the same run, whatever --overwrite says."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.errors import OutputCollisionError
from geoseg.io.atomic import check_paths, check_run_folder
from tests.conftest import write_raster


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "flag", [None, "--probabilities", "--confidence", "--vector", "--quicklook"]
)
def test_predict_never_replaces_its_input(
    flag: str | None, scene: Path, ckpt: Path, tmp_path: Path
) -> None:
    before = _digest(scene)
    twisted = str(tmp_path / "sub" / ".." / scene.name)  # ./dir/../in.tif names the input too
    (tmp_path / "sub").mkdir()
    args = [
        "predict",
        str(scene),
        twisted if flag is None else str(tmp_path / "mask.tif"),
        "--model",
        str(ckpt),
        "--overwrite",
    ]
    if flag is not None:
        args += [flag, twisted]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "never writes over an input" in result.output and "pass --overwrite" not in result.output
    assert _digest(scene) == before and not (tmp_path / "mask.tif").exists()


def test_hard_link_to_the_input_is_the_input(scene: Path, ckpt: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.tif"
    os.link(scene, link)
    result = CliRunner().invoke(
        cli, ["predict", str(scene), str(link), "--model", str(ckpt), "--overwrite"]
    )
    assert result.exit_code == 1 and "is the input SRC" in result.output


@pytest.mark.parametrize(
    ("flag", "name"),
    [("--probabilities", "out.tif"), ("--confidence", "out.tif"), ("--vector", "out.tif")],
)
def test_two_outputs_of_one_run_never_share_a_file(
    flag: str, name: str, scene: Path, ckpt: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            str(scene),
            str(tmp_path / "out.tif"),
            "--model",
            str(ckpt),
            flag,
            str(tmp_path / name),
            "--overwrite",
        ],
    )
    assert result.exit_code == 1 and "name the same file" in result.output
    assert not (tmp_path / "out.tif").exists()


def test_vectorize_never_replaces_its_mask(tmp_path: Path) -> None:
    mask = write_raster(tmp_path / "mask.gpkg.tif", np.ones((1, 8, 8), np.uint8))
    before = _digest(mask)
    result = CliRunner().invoke(cli, ["vectorize", str(mask), str(mask), "--overwrite"])
    assert result.exit_code == 1 and "never writes over an input" in result.output
    result = CliRunner().invoke(
        cli,
        [
            "vectorize",
            str(mask),
            str(tmp_path / "x.gpkg"),
            "--confidence",
            str(tmp_path / "x.gpkg"),
        ],
    )
    assert result.exit_code == 1 and "is the input --confidence" in result.output
    assert _digest(mask) == before


def test_evaluate_report_never_replaces_an_input(tmp_path: Path, ckpt: Path) -> None:
    from geoseg.evaluation.evaluate import EvalPair, evaluate

    image = write_raster(tmp_path / "metrics.json", np.ones((3, 8, 8), np.uint8))
    with pytest.raises(OutputCollisionError, match=r"metrics\.json is the input image 1"):
        evaluate(ckpt, [EvalPair(str(image), np.zeros((8, 8), np.uint8))], out_dir=tmp_path)


def test_train_output_folder_never_holds_the_data(tmp_path: Path) -> None:
    with pytest.raises(OutputCollisionError, match=r"holds the input data\.root"):
        check_run_folder(tmp_path, {"data.root": tmp_path / "dubai"})
    check_run_folder(tmp_path / "runs" / "a", {"data.root": tmp_path / "dubai"})


def test_urls_and_missing_roles_are_ignored(tmp_path: Path) -> None:
    check_paths(
        {"SRC": "https://example.com/a.tif", "--model": None},
        {"DST": tmp_path / "a.tif", "--vector": None},
    )
