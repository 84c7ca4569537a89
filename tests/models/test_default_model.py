"""The bundled default model: present, small, self-describing, and trained (not random)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.errors import CheckpointError
from geoseg.models.config import read_config
from geoseg.models.default import default_model
from tests.conftest import REPO


def test_bundled_model_is_small_and_describes_itself() -> None:
    path = default_model()
    assert path.stat().st_size <= 10_000_000
    cfg = read_config(path)
    assert cfg.classes.names == ["building", "land", "road", "vegetation", "water"]
    assert cfg.normalization.kind == "meanstd" and cfg.band_dtype == "uint8"
    assert cfg.training["data"]["split"] == {"val_tiles": [1], "test_tiles": [8]}
    assert cfg.metrics["validation"]["miou"] > 0.4


def test_environment_variable_and_missing_model(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GEOSEG_DEFAULT_MODEL", str(tmp_path / "none.safetensors"))
    with pytest.raises(CheckpointError, match="pass --model CHECKPOINT"):
        default_model()


def test_predict_without_model_uses_the_bundled_one(tmp_path) -> None:
    scene = REPO / "sample_data" / "rotterdam_ps_rgb.tif"
    res = CliRunner().invoke(cli, ["-q", "predict", str(scene), str(tmp_path / "m.tif"), "--quicklook", str(tmp_path / "q.png")])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.crs.to_epsg() == 32631 and "vegetation" in src.tags().get("CLASS_NAMES", "")
    assert (tmp_path / "q.png").stat().st_size > 10_000


def test_bundled_model_segments_held_out_dubai(shared_data) -> None:
    """One held-out Tile 8 image: a trained model, not random weights (which score about 0.1)."""
    from PIL import Image

    from geoseg.datasets.dubai import decode_mask
    from geoseg.evaluation.evaluate import EvalPair, evaluate

    folder = shared_data / "dubai-aerial-semseg" / "Semantic segmentation dataset" / "Tile 8"
    with Image.open(folder / "masks" / "image_part_005.png") as im:
        labels = decode_mask(np.asarray(im.convert("RGB"))).astype(np.int64)
    result = evaluate(default_model(), [EvalPair(str(folder / "images" / "image_part_005.jpg"), labels, "8/005")])
    assert result.scores.miou > 0.5


@pytest.mark.slow
def test_bundled_model_is_found_after_a_plain_install(tmp_path) -> None:
    """A non-editable install into a fresh venv carries the model as package data.

    The venv gets no pip and no downloads: the running interpreter's site-packages (torch and the
    other dependencies) are put on its path by a ``.pth`` file, and pip installs only geoseg,
    built from a copy of the sources (so the checkout gets no build folders).
    """
    import shutil
    import subprocess
    import sys
    import sysconfig

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "geoseg", src / "geoseg", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", str(src)], check=True, capture_output=True)
    shutil.rmtree(src)  # nothing may point back at the sources
    code = ("import geoseg; from geoseg.models import read_config; p = geoseg.default_model(); "
            "print(geoseg.__file__); print(p); print(','.join(read_config(p).classes.names))")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GEOSEG_DEFAULT_MODEL")}
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path, env=env)
    module, model, names = out.stdout.split()
    assert module.startswith(site) and model.startswith(site), out.stdout
    assert names == "building,land,road,vegetation,water"
