"""The bundled default model: present, small, self-describing, and trained (not random)."""

from __future__ import annotations

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
