"""A full disk under vectorize, diagnose and explain: one line that says so, and nothing left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage

from geoseg.cli import cli
from tests.conftest import REPO, write_raster
from tests.faults.conftest import rgb, small_disk


def _full(dst: Path) -> str:
    return (
        f"Error: {dst}: the disk is full (no space left in {dst.parent}); nothing was written "
        "under that name. Free some space or write the output to another disk"
    )


@pytest.fixture(scope="module")
def busy_mask(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class mask whose polygons take far more than a small disk holds."""
    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.normal(size=(1200, 1200)), 2)
    mask = np.zeros((1200, 1200), np.uint8)
    mask[field > 0.02], mask[field < -0.05] = 1, 2
    return write_raster(tmp_path_factory.mktemp("mask") / "mask.tif", mask[None], nodata=255)


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("p.gpkg", []),
        ("p.gpkg", ["--layout", "per-class"]),
        ("p.geojson", []),
        ("p.fgb", []),
        ("p.parquet", []),
    ],
)
def test_vectorize_to_a_full_disk_says_so(
    tmp_path: Path, busy_mask: Path, name: str, extra: list[str]
) -> None:
    with small_disk(tmp_path / "disk", "300k") as disk:
        res = CliRunner().invoke(cli, ["-q", "vectorize", str(busy_mask), str(disk / name), *extra])
        assert res.exit_code == 1, res.output
        assert res.output.strip().splitlines() == [_full(disk / name)]
        assert sorted(p.name for p in disk.iterdir()) == []


def _geoseg(*args: str) -> subprocess.CompletedProcess[str]:
    """The command in its own process: what GDAL and libtiff print goes to the real stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "geoseg", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    write_raster(tmp_path / "images" / "a.tif", rgb(600, 600))
    labels = np.random.default_rng(1).integers(0, 3, (1, 600, 600)).astype(np.uint8)
    write_raster(tmp_path / "labels" / "a.tif", labels)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [["-q"], []])
def test_diagnose_to_a_full_disk_is_one_line_and_leaves_no_folder(
    labelled: Path, ckpt: Path, quiet: list[str]
) -> None:
    with small_disk(labelled / "disk", "300k") as disk:
        done = _geoseg(
            *quiet,
            "diagnose",
            str(ckpt),
            "--images",
            str(labelled / "images"),
            "--labels",
            str(labelled / "labels"),
            "-o",
            str(disk / "out"),
        )
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {disk / 'out' / 'a'}/"), lines
        assert lines[0].endswith(_full(disk / "out" / "a" / "x.tif").split(": ", 2)[2]), lines
        assert sorted(p.name for p in disk.iterdir()) == []  # no OUT/, no OUT/a/


@pytest.mark.slow
def test_explain_to_a_full_disk_is_one_line(tmp_path: Path, ckpt: Path) -> None:
    scene = write_raster(tmp_path / "scene.tif", rgb(600, 600))
    with small_disk(tmp_path / "disk", "300k") as disk:
        done = _geoseg(
            "-q",
            "explain",
            str(scene),
            str(disk / "cam.tif"),
            "--model",
            str(ckpt),
            "--class",
            "building",
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().splitlines() == [_full(disk / "cam.tif")]
        assert sorted(p.name for p in disk.iterdir()) == []


def test_native_stderr_is_captured_while_python_stderr_stays(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from geoseg.cli.native import captured_native_stderr

    with captured_native_stderr() as native:
        os.write(2, b"ERROR 1: TIFFAppendToStrip:Write error at scanline 0\n")
        print("a message", file=sys.stderr)
    assert native.lines == ["ERROR 1: TIFFAppendToStrip:Write error at scanline 0"]
    assert capfd.readouterr().err == "a message\n"
