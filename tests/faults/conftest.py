"""Fixtures for the fault tests: a tiny checkpoint, small rasters, a small full disk."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from geoseg.classes import ClassTable
from geoseg.models import ModelConfig, build_model, save_checkpoint
from geoseg.normalize import Normalization
from tests.conftest import write_raster

TINY = {"encoder_depth": 3, "decoder_channels": [16, 8, 8]}


def tiny_checkpoint(
    path: Path,
    *,
    band_dtype: str = "uint8",
    gsd: float | None = 0.5,
    scale: float = 255.0,
    sar: bool = False,
    in_channels: int = 3,
) -> Path:
    cfg = ModelConfig(
        "unet",
        "resnet18",
        in_channels,
        ClassTable.from_names(["background", "building", "water"]),
        band_names=tuple(f"b{i}" for i in range(1, in_channels + 1)),
        band_dtype=band_dtype,
        gsd=gsd,
        normalization=Normalization("scale", scale=scale, sar_db=sar),
        tile_size=64,
        overlap=16,
        model_kwargs=dict(TINY),
        output_stride=8,
    )
    save_checkpoint(
        build_model("unet", "resnet18", in_channels=in_channels, classes=3, **TINY), cfg, path
    )
    return path


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def rgb(rows: int = 96, cols: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 255, size=(3, rows, cols), dtype=np.uint8)


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_raster(tmp_path / "scene.tif", rgb())


@contextlib.contextmanager
def small_disk(where: Path, size: str = "256k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only); skips the test otherwise."""
    if os.geteuid() != 0:
        pytest.skip(
            "a small full disk needs a tmpfs mount, which needs root (CI runs the tests as root)"
        )
    where.mkdir(parents=True, exist_ok=True)
    name = f"geoseg-test-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", name, str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
