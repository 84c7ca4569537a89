"""The real QGIS Deepness plugin, run headless on ``geoseg export``'s Deepness file of the bundled
model with the defaults it loads from the file, agrees with ``geoseg predict`` on the same file.

The plugin's source is not part of geoseg and is not downloaded by the tests: point
``GEOSEG_TEST_DEEPNESS`` at a search path (``os.pathsep``-separated) under which QGIS's Python
imports ``deepness`` (the ``src`` folder of https://github.com/PUTvision/qgis-plugin-deepness)
and its dependencies (onnxruntime, opencv-python-headless). Skipped otherwise, as in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import rasterio

from tests.conftest import REPO

SCENE = REPO / "sample_data" / "rotterdam_ps_rgb.tif"
QGIS_PYTHON = "/usr/bin/python3"  # Debian's, with python3-qgis
RUNNER = Path(__file__).with_name("deepness_runner.py")
SEARCH_PATH = os.environ.get("GEOSEG_TEST_DEEPNESS", "")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "QGIS_"))}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen", PYTHONPATH=SEARCH_PATH)
    return env


def _missing() -> str | None:
    """Why the plugin cannot run here, or None."""
    if not SEARCH_PATH:
        return (
            "GEOSEG_TEST_DEEPNESS is not set (a search path holding the QGIS Deepness plugin's "
            "src folder and its onnxruntime and opencv-python-headless)"
        )
    check = "import qgis.core, onnxruntime, cv2, deepness.processing.models.model_base"
    try:
        done = subprocess.run(
            [QGIS_PYTHON, "-c", check],
            env=_env(Path.home()),
            capture_output=True,
            text=True,
            timeout=120,
        )
    except OSError:
        return f"{QGIS_PYTHON} is missing (apt-get install qgis python3-qgis qgis-providers)"
    if done.returncode:
        return f"QGIS's Python cannot import the plugin: {done.stderr.strip().splitlines()[-1]}"
    return None


WHY = _missing()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY is not None, reason=str(WHY))]


def test_deepness_agrees_with_geoseg_on_the_sample_scene(tmp_path: Path) -> None:
    from geoseg.export import export_onnx
    from geoseg.inference import predict_raster

    res = export_onnx(
        "quality", tmp_path / "q.onnx", fixed=tmp_path / "q.deepness.onnx", resolution_cm=50
    )
    assert res.fixed is not None
    ours = tmp_path / "geoseg.tif"
    predict_raster(SCENE, ours, res.fixed, device="cpu")
    theirs = tmp_path / "deepness.tif"
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [QGIS_PYTHON, str(RUNNER), str(res.fixed), str(SCENE), str(theirs)],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["defaults"] == {
        "model_type": "Segmentor",
        "resolution": 50.0,
        "tile_size": 512,
        "tiles_overlap": 25,
        "seg_thresh": 0.0,
        "seg_small_segment": 0,
    }
    assert report["shape"] == [900, 900] and report["tiles"] == 9  # 3 x 3 tiles of 512, 128 apart
    with rasterio.open(ours) as a, rasterio.open(theirs) as b:
        mask, deep = a.read(1), b.read(1)
    valid = mask != 255
    assert valid.sum() == 508_726 and (deep[valid] != 255).all()
    agreement = float((mask[valid] == deep[valid]).mean())
    # 99.44 % measured; the rest is QGIS's resampled read (the scene's 49.99965 cm pixels read at
    # 50 cm, nodata pixels at the footprint's edge taking their neighbours' values)
    assert agreement >= 0.98, f"{agreement:.4%}"
