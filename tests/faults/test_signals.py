"""SIGINT, SIGTERM and SIGKILL during predict and vectorize never leave a file under the final
name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from geoseg.io.atomic import remove_stale
from geoseg.io.writer import verify_cog
from tests.conftest import REPO, write_raster
from tests.faults.conftest import rgb

pytestmark = pytest.mark.slow


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "geoseg", "-q", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_temporary(folder: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(".partial" in p.name for p in folder.iterdir()):
            return
        if proc.poll() is not None:
            pytest.fail(f"finished before it could be interrupted: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no temporary output appeared")


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def big_scene(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    return write_raster(
        tmp_path / "in" / "scene.tif", rgb(2048, 2048)
    )  # long enough to be caught mid-run


@pytest.fixture
def big_mask(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, size=(1, 2048, 2048), dtype=np.uint8)
    return write_raster(tmp_path / "in" / "mask.tif", mask)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_predict_interrupted(
    sig: signal.Signals, big_scene: Path, ckpt: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = _start(
        [
            "predict",
            str(big_scene),
            "out/mask.tif",
            "--model",
            str(ckpt),
            "--precision",
            "fp32",
            "--confidence",
            "out/conf.tif",
        ],
        tmp_path,
    )
    _wait_for_temporary(out, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig != signal.SIGKILL and "mask.tif" in _names(out):
        # the signal landed after the outputs were published (the run was that close to its end):
        # then they are whole, never partial
        for name in ("mask.tif", "conf.tif"):
            verify_cog(out / name)
        return
    assert "mask.tif" not in _names(out) and "conf.tif" not in _names(out)
    if sig == signal.SIGKILL:  # nothing can clean up after SIGKILL: the next run does
        remove_stale(out / "mask.tif")
        remove_stale(out / "conf.tif")
    else:
        assert proc.returncode == 130 and "Interrupted: " in err and "Traceback" not in err, err
        assert "no output was left half-written" in err
    assert [n for n in _names(out) if not n.endswith(".qml")] == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_vectorize_interrupted(sig: signal.Signals, big_mask: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = _start(
        ["vectorize", str(big_mask), "out/polygons.gpkg", "--block-size", "64", "--keep-all"],
        tmp_path,
    )
    _wait_for_temporary(out, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig != signal.SIGKILL and "polygons.gpkg" in _names(
        out
    ):  # published just before the signal: whole
        assert len(gpd.read_file(out / "polygons.gpkg")) > 0
        return
    assert "polygons.gpkg" not in _names(out)
    if sig == signal.SIGKILL:
        remove_stale(out / "polygons.gpkg")
    else:
        assert proc.returncode == 130 and "Traceback" not in err and "GeneratorExit" not in err, err
        assert "Interrupted: " in err and not err.strip().endswith("Interrupted:")
    assert _names(out) == []
