"""The provider in a real QGIS: ``qgis_process run geoseg:...`` gives what ``geoseg`` gives, and
the toolbox loads the outputs styled. Skipped without QGIS (``qgis python3-qgis``, Debian)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.windows import Window

from geoseg.classes import classes_of
from geoseg.qgis import PLUGIN_NAME, install_plugin
from tests.conftest import REPO

SCENE = REPO / "sample_data" / "rotterdam_ps_rgb.tif"
QGIS_PYTHON = "/usr/bin/python3"  # Debian's, with python3-qgis
STYLED = Path(__file__).with_name("qgis_styled.py")
HARNESS = REPO.parent / "shared" / "tools" / "qgis" / "qgis_check.py"


def _qgis_process() -> str | None:
    """Debian 12's /usr/bin/qgis_process passes an option qgis_process.bin 3.22 refuses."""
    return shutil.which("qgis_process.bin", path="/usr/bin") or shutil.which("qgis_process")


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        _qgis_process() is None
        or subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], capture_output=True).returncode,
        reason="QGIS is not installed (apt-get install qgis python3-qgis qgis-providers)",
    ),
]


@pytest.fixture(scope="module")
def qgis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment for QGIS with a fresh profile holding the enabled plugin."""
    home = tmp_path_factory.mktemp("qgis-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "QGIS_"))}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen")
    plugins = home / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default" / "python"
    install_plugin(plugins / "plugins")
    done = _run([str(_qgis_process()), "plugins", "enable", PLUGIN_NAME], env)
    assert done.returncode == 0, done.stdout + done.stderr
    env["GEOSEG_TEST_PLUGINS"] = str(plugins / "plugins")
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def _qgis_run(qgis: dict[str, str], algorithm: str, **params: object) -> str:
    args = [str(_qgis_process()), "run", f"geoseg:{algorithm}", "--"]
    done = _run(args + [f"{k}={v}" for k, v in params.items()], qgis)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _geoseg(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "geoseg", "-q", *args], check=True, timeout=600)


def _styled(qgis: dict[str, str], *args: str) -> dict[str, dict]:
    done = _run([QGIS_PYTHON, str(STYLED), qgis["GEOSEG_TEST_PLUGINS"], *args], qgis)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _expected(mask: Path) -> dict[str, list[str]]:
    with rasterio.open(mask) as ds:
        table = classes_of(ds)
    assert table is not None
    return {str(c.id): [c.name, c.hex()] for c in table}


def assert_same_cog(a: Path, b: Path) -> None:
    """The same COG but for when it was made: pixels, grid, nodata, colours and every tag but the
    provenance's time (geoseg's outputs record when they were made)."""
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert (x.read() == y.read()).all()
        assert x.profile == y.profile and x.colormap(1) == y.colormap(1)
        tx, ty = x.tags(), y.tags()
        assert tx.pop("GEOSEG_CREATED") and ty.pop("GEOSEG_CREATED")
        assert tx == ty


def test_predict_and_vectorize_through_qgis_process_equal_geoseg(
    qgis: dict[str, str], tmp_path: Path
) -> None:
    scene = shutil.copy(SCENE, tmp_path)  # QGIS may leave statistics beside its input
    ours, theirs = tmp_path / "geoseg.tif", tmp_path / "qgis.tif"
    _geoseg("predict", str(scene), str(ours), "--precision", "fp32")
    log = _qgis_run(qgis, "predict", INPUT=scene, PRECISION=1, OUTPUT=theirs)
    assert "100 - done" in log  # geoseg's progress reached QGIS's feedback
    assert_same_cog(theirs, ours)
    _geoseg("vectorize", str(ours), str(tmp_path / "geoseg.gpkg"))
    _qgis_run(qgis, "vectorize", INPUT=theirs, OUTPUT=tmp_path / "qgis.gpkg")
    a = pyogrio.read_dataframe(tmp_path / "geoseg.gpkg", layer="geoseg")
    b = pyogrio.read_dataframe(tmp_path / "qgis.gpkg", layer="qgis")
    assert len(a) == len(b) > 100
    assert (a.drop(columns="geometry").values == b.drop(columns="geometry").values).all()
    assert shapely.equals_exact(np.asarray(a.geometry), np.asarray(b.geometry), 0).all()
    # QGIS opens both styled with the model's classes
    expected = _expected(theirs)
    got = _styled(qgis, str(theirs), f"{tmp_path / 'qgis.gpkg'}|layername=qgis")
    raster, vector = got[str(theirs)], got[f"{tmp_path / 'qgis.gpkg'}|layername=qgis"]
    assert (raster["renderer"], raster["crs"], raster["classes"]) == (
        "paletted",
        "EPSG:32631",
        expected,
    )
    assert (vector["renderer"], vector["field"], vector["classes"]) == (
        "categorizedSymbol",
        "class_id",
        expected,
    )
    if HARNESS.is_file():  # the QGIS harness beside a full checkout
        check = _run(
            [
                QGIS_PYTHON,
                str(HARNESS),
                "--out-dir",
                str(tmp_path / "check"),
                "--expect-crs-of",
                str(scene),
                str(theirs),
                str(tmp_path / "qgis.gpkg"),
            ],
            qgis,
        )
        assert check.returncode == 0, check.stderr


def _crop(tmp_path: Path) -> Path:
    """A 160 x 128 px crop of the sample scene, all valid."""
    crop = tmp_path / "crop.tif"
    with rasterio.open(SCENE) as src:
        window = Window(300, 300, 160, 128)
        profile = {**src.profile, "width": 160, "height": 128}
        profile.update(transform=src.window_transform(window), tiled=False)
        profile = {k: v for k, v in profile.items() if k not in ("blockxsize", "blockysize")}
        with rasterio.open(crop, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return crop


def test_toolbox_loads_predicted_layers_styled(qgis: dict[str, str], tmp_path: Path) -> None:
    crop = _crop(tmp_path)
    params = {
        "INPUT": str(crop),
        "MODEL": 1,  # fast
        "PRECISION": 1,  # fp32: no timing of the variants first
        "OUTPUT": str(tmp_path / "mask.tif"),
        "PROBABILITIES": str(tmp_path / "probs.tif"),
    }
    loaded = _styled(qgis, "--run", "geoseg:predict", json.dumps(params))["loaded"]
    mask, probs = loaded[str(tmp_path / "mask.tif")], loaded[str(tmp_path / "probs.tif")]
    assert mask["renderer"] == "paletted" and mask["classes"] == _expected(tmp_path / "mask.tif")
    assert probs["bands"] == 5  # the classes, no mask band


def test_a_geoseg_error_reaches_qgis_as_one_line(qgis: dict[str, str], tmp_path: Path) -> None:
    scene = shutil.copy(SCENE, tmp_path)
    args = [
        str(_qgis_process()),
        "run",
        "geoseg:predict",
        "--",
        f"INPUT={scene}",
        f"MODEL_FILE={tmp_path / 'missing.safetensors'}",
        f"OUTPUT={tmp_path / 'm.tif'}",
    ]
    done = _run(args, qgis)
    assert done.returncode != 0 and not (tmp_path / "m.tif").exists()
    assert "missing.safetensors" in done.stdout + done.stderr


def _runner(qgis: dict[str, str], *args: str) -> dict[str, object]:
    script = Path(__file__).with_name("qgis_runner.py")
    done = _run([QGIS_PYTHON, str(script), qgis["GEOSEG_TEST_PLUGINS"], *args], qgis)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_progress_follows_geoseg_and_cancel_stops_it(qgis: dict[str, str], tmp_path: Path) -> None:
    scene = shutil.copy(SCENE, tmp_path)
    out = str(tmp_path / "m.tif")
    args = ["predict", str(scene), out, "--model", "fast", "--precision", "fp32", "--overwrite"]
    done = _runner(qgis, *args)
    progress = done["progress"]
    assert done["error"] is None and isinstance(progress, list)
    assert progress[-1] == 100 and any(0 < p < 100 for p in progress)  # per tile, as it ran
    assert progress == sorted(progress)
    stopped = _runner(qgis, "--cancel", *[a.replace("m.tif", "c.tif") for a in args])
    assert str(stopped["error"]).startswith("Cancelled: geoseg was stopped")
    names = {p.name for p in tmp_path.iterdir()}
    assert not {n for n in names if "c.tif" in n or n.startswith(".c")}  # nothing left behind


def test_explain_and_diagnose_through_qgis_process(qgis: dict[str, str], tmp_path: Path) -> None:
    crop = _crop(tmp_path)
    _qgis_run(qgis, "explain", INPUT=crop, MODEL=1, CLASS="building", OUTPUT=tmp_path / "cam.tif")
    with rasterio.open(tmp_path / "cam.tif") as ds:
        assert (ds.count, ds.dtypes[0], ds.shape) == (1, "float32", (128, 160))
    _geoseg("predict", str(crop), str(tmp_path / "labels.tif"), "--precision", "fp32")
    out = tmp_path / "diagnosis"
    log = _qgis_run(
        qgis, "diagnose", INPUT=crop, LABELS=tmp_path / "labels.tif", MODEL=0, CELL=64, OUTPUT=out
    )
    assert f"CELLS:\t{out / 'cells.gpkg'}|layername=cells" in log
    cells = pyogrio.read_dataframe(out / "cells.gpkg", layer="cells")
    assert len(cells) == 6 and (cells["height"] * cells["width"]).sum() == 160 * 128
    assert json.loads((out / "metrics.json").read_text())["pixel_accuracy"] > 0.9
