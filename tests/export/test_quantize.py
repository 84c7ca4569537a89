"""``quantize_checkpoint`` and ``geoseg quantize``: calibration on a user's images, what the
written checkpoint records, and that it loads with no pickle."""

from __future__ import annotations

import json
import pickle
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geoseg.errors import (
    DatasetError,
    LowAgreementWarning,
    OutputCollisionError,
    OutputExistsError,
)
from geoseg.export.quantize import calibration_images, quantize_checkpoint
from geoseg.models import save_checkpoint
from geoseg.models.variants import Int8Variant
from tests.inference.test_int8 import TinyNet, tiny_config


@pytest.fixture
def checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    from geoseg.models.registry import ARCHITECTURES

    monkeypatch.setitem(ARCHITECTURES, "tiny-int8", lambda **kw: TinyNet(**kw).eval())
    return save_checkpoint(TinyNet().eval(), tiny_config(), tmp_path / "ckpt" / "m.safetensors")


@pytest.fixture
def images(make_raster: Any, textured_rgb: Any, tmp_path: Path) -> dict[str, Path]:
    """Two calibration images in a folder, one held-out image with a label raster."""
    (tmp_path / "cal").mkdir()
    (tmp_path / "held" / "images").mkdir(parents=True)
    (tmp_path / "held" / "labels").mkdir()
    out = {
        "a": make_raster(textured_rgb(100, 130, seed=1), "cal/a.tif"),
        "b": make_raster(textured_rgb(90, 90, seed=2), "cal/b.tif"),
        "c": make_raster(textured_rgb(120, 100, seed=3), "held/images/c.tif"),
    }
    labels = (np.arange(120 * 100).reshape(120, 100) // 4000 % 3).astype(np.uint8)
    out["labels"] = make_raster(labels, "held/labels/c.tif")
    return out


def _header(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + size])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_quantize_records_calibration_agreement_and_miou(
    checkpoint: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    from geoseg.export.quantize import heldout_pairs

    out = tmp_path / "q.safetensors"
    pairs = heldout_pairs([images["c"]], tmp_path / "held" / "labels")
    result = quantize_checkpoint(
        checkpoint, out, [tmp_path / "cal"], heldout=pairs, max_tiles=5, float_layers=()
    )
    variant = result.variant
    assert result.path == out and Int8Variant.of(_config(out)) == variant
    assert variant.calibration["images"] == ["a.tif", "b.tif"]
    assert variant.calibration["tiles"] == 5 and len(variant.calibration["digest"]) == 16
    assert variant.agreement is not None and variant.agreement["pixels"] == 120 * 100
    assert variant.agreement["on"] == "1 held-out image(s)"
    assert 0.9 < variant.agreement_value <= 1.0  # type: ignore[operator]
    assert variant.miou is not None and set(variant.miou) == {"fp32", "int8", "on"}
    assert variant.float_layers == () and result.search == []
    # the weights are the source's, byte for byte; only the config changed
    src, dst = _header(checkpoint), _header(out)
    assert {k: v for k, v in src.items() if k != "__metadata__"}.keys() == {
        k for k in dst if k != "__metadata__"
    }
    from safetensors.torch import load_file

    a, b = load_file(str(checkpoint)), load_file(str(out))
    assert all(torch.equal(a[k], b[k]) for k in a)


def _config(path: Path) -> Any:
    from geoseg.models.config import read_config

    return read_config(path)


def test_calibration_is_deterministic(
    checkpoint: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    runs = [
        quantize_checkpoint(
            checkpoint, tmp_path / f"q{k}.safetensors", [images["a"], images["b"]], max_tiles=4
        ).variant
        for k in range(2)
    ]
    assert runs[0] == runs[1]
    assert runs[0].agreement is not None
    assert runs[0].agreement["on"] == (
        f"{runs[0].agreement['on'].split()[0]} tiles of the calibration images that neither "
        "calibrated nor searched"
    )


def test_a_quantized_checkpoint_loads_and_runs_with_no_pickle(
    checkpoint: Path,
    images: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "q.safetensors"
    quantize_checkpoint(checkpoint, out, [images["a"]], max_tiles=3, float_layers=())
    assert out.read_bytes()[:2] != b"PK"  # not a torch zip archive
    assert _header(out)["__metadata__"]["format"] == "pt"

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a checkpoint must load without unpickling")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setenv("GEOSEG_CACHE_DIR", "off")  # no cached trace: the network is rebuilt
    from geoseg.inference import predict_classes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowAgreementWarning)  # a random network: it may disagree
        mask = predict_classes(images["c"], str(out), precision="int8", device="cpu")
    assert mask.data.shape == (1, 120, 100)


def test_calibration_inputs_are_checked(
    checkpoint: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(DatasetError, match=r"nowhere/\*\.tif: no image there; expected an image"):
        calibration_images([str(tmp_path / "nowhere" / "*.tif")])
    assert calibration_images([tmp_path / "cal", images["a"]]) == [
        str(images["a"]),
        str(images["b"]),
    ]
    with pytest.raises(OutputCollisionError, match="OUT"):
        quantize_checkpoint(checkpoint, checkpoint, [images["a"]])
    with pytest.raises(DatasetError, match="is both a calibration and a held-out image"):
        quantize_checkpoint(
            checkpoint, tmp_path / "q.safetensors", [images["a"]], heldout=[images["a"]]
        )
    (tmp_path / "q.safetensors").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        quantize_checkpoint(checkpoint, tmp_path / "q.safetensors", [images["a"]])
    assert (tmp_path / "q.safetensors").read_bytes() == b"x"


def test_the_network_is_split_into_parts_the_search_can_keep_in_float() -> None:
    import segmentation_models_pytorch as smp

    from geoseg.inference.int8 import quantization_groups

    net = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=[16, 8, 8])
    assert list(
        quantization_groups(net, 3, most=8)
    ) == [  # layer3 and layer4 are not run at depth 3
        "encoder.conv1",
        "encoder.layer1",
        "encoder.layer2.0",
        "encoder.layer2.1",
        "decoder.blocks.0",
        "decoder.blocks.1",
        "decoder.blocks.2",
        "segmentation_head",
    ]
    assert list(quantization_groups(TinyNet(), 3)) == ["stem", "body", "segmentation_head"]


def test_the_search_keeps_the_parts_that_disagree_in_float(
    checkpoint: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    cal = [images["a"], images["b"]]
    easy = quantize_checkpoint(
        checkpoint, tmp_path / "a.safetensors", cal, max_tiles=4, search_target=0.0
    )
    assert easy.variant.float_layers == () and [f for f, _ in easy.search] == [()]
    strict = quantize_checkpoint(
        checkpoint, tmp_path / "b.safetensors", cal, max_tiles=4, search_target=1.0
    )
    floats = [f for f, _ in strict.search]
    assert floats[0] == () and strict.search[0][1] < 1.0  # all in int8 first: not enough
    alone = {("body", "segmentation_head"), ("stem", "segmentation_head"), ("stem", "body")}
    assert set(floats[1:4]) == alone  # then each part quantized alone
    kept = strict.variant.float_layers
    reached = dict(strict.search).get(kept, 0.0) >= 1.0
    assert reached or kept == ("stem", "body", "segmentation_head")
    assert Int8Variant.of(_config(tmp_path / "b.safetensors")).float_layers == kept  # type: ignore[union-attr]


def test_geoseg_quantize_then_models_shows_the_variant(
    checkpoint: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    from geoseg.cli import cli

    out = tmp_path / "q.safetensors"
    args = ["quantize", str(checkpoint), str(out), "--tiles", "4", "--float", "segmentation_head"]
    args += ["--calibration", str(images["a"]), str(images["b"]), "--heldout", str(images["c"])]
    args += ["--labels", str(tmp_path / "held" / "labels")]
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    line = run.stdout.strip().splitlines()[0]
    assert line.startswith(f"{out}: int8 variant; agrees with fp32 on ")
    assert "calibrated on 4 tiles of 2 image(s); kept in float: segmentation_head" in line
    shown = CliRunner().invoke(cli, ["models", str(out)])
    assert shown.exit_code == 0
    assert "  variant int8: agrees with fp32 on " in shown.output
    plain = CliRunner().invoke(cli, ["models", str(checkpoint)])
    assert "  variants: none (geoseg quantize CKPT OUT --calibration IMAGES... adds int8)" in (
        plain.output
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--labels", "{held}"], "Error: --labels goes with --heldout"),
        ([], "Error: nothing to calibrate on: give --calibration IMAGES"),
        (["data.root=x"], "Error: data.root=x: KEY=VALUE settings go with --config"),
        (["--calibration", "{missing}"], "Error: {missing}: no image there"),
    ],
)
def test_geoseg_quantize_refusals_are_one_line(
    checkpoint: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    from geoseg.cli import cli

    names = {"held": str(tmp_path), "missing": str(tmp_path / "none.tif")}
    args = [a.format(**names) for a in args]
    run = CliRunner().invoke(
        cli, ["quantize", str(checkpoint), str(tmp_path / "q.safetensors"), *args]
    )
    assert run.exit_code in (1, 2)
    lines = run.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(**names)), run.output
    assert not (tmp_path / "q.safetensors").exists()
