"""The bundled default model: present, small, self-describing, and trained (not random)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import rasterio
import torch
from click.testing import CliRunner
from safetensors import safe_open

from geoseg.cli import cli
from geoseg.errors import CheckpointError
from geoseg.models.checkpoint import convert_checkpoint, load_checkpoint, save_checkpoint
from geoseg.models.config import read_config
from geoseg.models.default import bundled_model, default_model
from tests.conftest import REPO


def test_bundled_models_are_small_and_describe_themselves() -> None:
    quality, fast = bundled_model("quality"), bundled_model("fast")
    assert quality == default_model() and fast is not None and quality is not None
    for path in (quality, fast):
        assert path.stat().st_size <= 10_000_000
        cfg = read_config(path)
        assert cfg.classes.names == ["building", "land", "road", "vegetation", "water"]
        assert cfg.normalization.kind == "meanstd" and cfg.band_dtype == "uint8"
        assert cfg.metrics["test"]["split"] == "Tile 8"  # scored once, on the held-out tile
        recipe = cfg.training["config"]  # where it was trained is not recorded, only what on
        assert "/" not in recipe["data"]["root"] and "/" not in recipe["output"]
        with safe_open(str(path), "pt") as f:  # stored as fp16; loading restores float32
            key = next(k for k in f.keys() if k.endswith("conv_stem.weight"))  # noqa: SIM118
            assert f.get_tensor(key).dtype == torch.float16
    cfg = read_config(quality)
    assert (
        cfg.encoder == "tu-efficientnet_lite0"
        and cfg.training["encoder_weights"]["licence"] == "Apache-2.0"
    )
    assert cfg.training["data"]["split"] == {
        "val_tiles": [],
        "test_tiles": [8],
    }  # tiles 1-7 trained it
    assert cfg.metrics["test"]["miou"] > read_config(fast).metrics["test"]["miou"]
    assert read_config(fast).training["data"]["split"] == {"val_tiles": [1], "test_tiles": [8]}
    assert bundled_model("dubai-landcover-fast") == fast and bundled_model("nothing") is None


@pytest.mark.parametrize(
    ("storage", "size", "agree"), [("float16", 0.6, 0.999), ("int8", 0.35, 0.99)]
)
def test_smaller_storage_loads_as_float32_and_predicts_the_same(
    tmp_path, storage: str, size: float, agree: float
) -> None:
    full = tmp_path / "full.safetensors"
    loaded = load_checkpoint(bundled_model("fast"))
    save_checkpoint(loaded.model, loaded.config, full)
    half = convert_checkpoint(
        full,
        tmp_path / "half.safetensors",
        storage=storage,
        metrics={"test": {"miou": 0.5}},
        training={"note": "shipped"},
    )
    assert half.stat().st_size < size * full.stat().st_size
    again = load_checkpoint(half)
    assert next(again.model.parameters()).dtype == torch.float32
    assert (
        again.config.metrics["test"] == {"miou": 0.5} and again.config.training["note"] == "shipped"
    )
    assert again.config.training["data"] == loaded.config.training["data"]  # other keys kept
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert (loaded.model(x).argmax(1) == again.model(x).argmax(1)).float().mean() > agree


def test_environment_variable_and_missing_model(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GEOSEG_DEFAULT_MODEL", str(tmp_path / "none.safetensors"))
    with pytest.raises(CheckpointError, match="pass --model CHECKPOINT"):
        default_model()


def test_predict_without_model_uses_the_bundled_one(tmp_path) -> None:
    scene = REPO / "sample_data" / "rotterdam_ps_rgb.tif"
    res = CliRunner().invoke(
        cli,
        [
            "-q",
            "predict",
            str(scene),
            str(tmp_path / "m.tif"),
            "--quicklook",
            str(tmp_path / "q.png"),
        ],
    )
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.crs.to_epsg() == 32631 and "vegetation" in src.tags().get("CLASS_NAMES", "")
    assert (tmp_path / "q.png").stat().st_size > 10_000


@pytest.mark.parametrize("name", ["quality", "fast"])
def test_bundled_models_segment_the_held_out_sample(tmp_path, name) -> None:
    """The held-out Tile 8 image that ships in sample_data/: trained models, not random weights
    (which score about 0.1), and through the CLI by name, with truth beside prediction drawn."""
    folder = REPO / "sample_data" / "dubai-heldout"
    args = [
        "-q",
        "evaluate",
        name,
        "--images",
        str(folder / "images"),
        "--labels",
        str(folder / "labels"),
        "-o",
        str(tmp_path / name),
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / name / "metrics.json").read_text())
    assert report["miou"] > {"quality": 0.7, "fast": 0.6}[name]
    assert (tmp_path / name / "quicklooks" / "tile8_image_part_003.png").stat().st_size > 100_000


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
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(src)  # nothing may point back at the sources
    code = (
        "import geoseg; from geoseg.models import read_config; p = geoseg.default_model(); "
        "print(geoseg.__file__); print(p); print(','.join(read_config(p).classes.names))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GEOSEG_DEFAULT_MODEL")}
    out = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path, env=env
    )
    module, model, names = out.stdout.split()
    assert module.startswith(site) and model.startswith(site), out.stdout
    assert names == "building,land,road,vegetation,water"
