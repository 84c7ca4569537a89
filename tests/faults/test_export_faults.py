"""export under faults: a full disk, two exports to one path, a check raster without data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geoseg.cli import cli
from tests.conftest import REPO, write_raster
from tests.faults.conftest import small_disk

pytest.importorskip("onnxruntime")

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _geoseg(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command in its own process: a native abort must fail the test, not end pytest."""
    return subprocess.run(
        [sys.executable, "-m", "geoseg", "-q", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["m.pt", "m.onnx"])
def test_export_to_a_full_disk_is_one_line_and_leaves_nothing(
    tmp_path: Path, ckpt: Path, name: str
) -> None:
    with small_disk(tmp_path / "disk", "300k") as disk:
        done = _geoseg("export", str(ckpt), str(disk / name))
        assert done.returncode == 1, done.stderr  # not 134 (a C++ abort)
        lines = done.stderr.strip().splitlines()
        assert lines == [
            f"Error: {disk / name}: the disk is full (no space left in {disk}); nothing was "
            "written under that name. Free some space or write the output to another disk"
        ], done.stderr
        assert sorted(p.name for p in disk.iterdir()) == []  # no temporary, no Deepness copy


@pytest.mark.parametrize("name", ["m.pt", "m.onnx"])
def test_an_export_to_the_same_path_midway_does_not_break_either(
    tmp_path: Path, ckpt: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second export to the same path runs to its end just before the first one publishes:
    the worst interleaving of two concurrent exports, made deterministic."""
    from geoseg.export import export_onnx, export_torchscript

    export = export_torchscript if name.endswith(".pt") else export_onnx
    dst = tmp_path / name
    real_replace, seen = os.replace, []

    def replace_after_a_rival(src: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        if Path(target) == dst and not seen:
            seen.append(src)
            export(ckpt, dst, overwrite=True)  # the rival publishes first
        real_replace(src, target)

    monkeypatch.setattr(os, "replace", replace_after_a_rival)
    export(ckpt, dst, overwrite=True)
    monkeypatch.undo()
    assert len(seen) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # the last one won, no temporary
    if name.endswith(".pt"):
        import torch

        extra = {"geoseg_config.json": ""}
        torch.jit.load(str(dst), _extra_files=extra)
        assert json.loads(extra["geoseg_config.json"])["tile_size"] == 64
    else:
        from geoseg.export import load_onnx

        assert load_onnx(dst).config.tile_size == 64


@pytest.mark.parametrize("name", ["m.pt", "m.onnx"])
def test_a_check_raster_without_data_is_refused(tmp_path: Path, ckpt: Path, name: str) -> None:
    nan = write_raster(tmp_path / "nan.tif", np.full((3, 80, 80), np.nan, np.float32))
    res = CliRunner().invoke(
        cli, ["-q", "export", str(ckpt), str(tmp_path / name), "--check-raster", str(nan)]
    )
    assert res.exit_code == 1, res.output
    assert res.output.strip().splitlines() == [
        f"Error: {nan}: holds no valid pixel in its 64x64 px tiles (all nodata or NaN), expected "
        "data to check the export on; pass another --check-raster, or none for a synthetic tile"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.tif"]


def test_the_parity_tile_is_taken_where_the_check_raster_has_data(
    tmp_path: Path, ckpt: Path
) -> None:
    from geoseg.export.onnx import parity_tile
    from geoseg.models.checkpoint import load_checkpoint

    data = np.zeros((3, 200, 200), np.uint8)
    data[:, 140:, 70:140] = 90  # only the lower middle holds data: nodata around, like a scene
    raster = write_raster(tmp_path / "corner.tif", data, nodata=0)
    x, source = parity_tile(load_checkpoint(ckpt), 64, raster)
    assert source == f"{raster} window (64, 128, 64, 64)"
    assert x.shape == (1, 3, 64, 64) and x[0, :, 12:, 6:].min() == pytest.approx(90 / 255)
