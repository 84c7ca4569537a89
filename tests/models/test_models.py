from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geoseg.classes import ClassTable
from geoseg.errors import CheckpointError, ModelError, WeightsError
from geoseg.models import (
    ModelConfig,
    build_model,
    list_architectures,
    load_checkpoint,
    load_encoder_weights,
    read_config,
    save_checkpoint,
)
from geoseg.normalize import Normalization

CLASSES = ClassTable.from_names(["background", "building"])


def _config(**kw) -> ModelConfig:
    base = dict(
        architecture="unet",
        encoder="resnet18",
        in_channels=4,
        classes=CLASSES,
        band_names=("r", "g", "b", "nir"),
        band_dtype="uint16",
        normalization=Normalization("meanstd", mean=(1, 2, 3, 4), std=(1, 1, 1, 1)),
        gsd=0.5,
    )
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arch", "encoder", "bands"),
    [
        ("unet", "vgg11", 3),
        ("unet", "resnet18", 4),
        ("fpn", "efficientnet-b0", 2),
        ("unet++", "resnet18", 1),
    ],
)
def test_registry_builds_any_band_count(arch: str, encoder: str, bands: int) -> None:
    model = build_model(arch, encoder, in_channels=bands, classes=3).eval()
    with torch.inference_mode():
        assert model(torch.zeros(1, bands, 64, 64)).shape == (1, 3, 64, 64)


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ModelError, match=r"unknown architecture 'segnet'; expected one of .*unet"):
        build_model("segnet")
    with pytest.raises(ModelError, match=r"unknown encoder 'resnet35'; expected .*resnet34"):
        build_model("unet", "resnet35")
    assert "deeplabv3plus" in list_architectures()


def test_callable_architecture() -> None:
    model = build_model(
        lambda **kw: torch.nn.Conv2d(kw["in_channels"], kw["classes"], 1), in_channels=2, classes=5
    )
    assert model.out_channels == 5


def test_imagenet_offline_names_the_local_file_alternative() -> None:
    with pytest.raises(WeightsError, match=r"offline.*local weights file"):
        build_model("unet", "resnet18", encoder_weights="imagenet")


def test_local_encoder_weights_load_and_adapt_the_first_conv(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    donor = build_model("unet", "resnet18", in_channels=3, classes=2)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in donor.encoder.state_dict().items()}, str(path))
    model = build_model("unet", "resnet18", in_channels=4, classes=2, encoder_weights=path)
    assert torch.equal(model.encoder.layer1[0].conv1.weight, donor.encoder.layer1[0].conv1.weight)
    assert model.encoder.conv1.weight.shape[1] == 4
    with pytest.raises(WeightsError, match="not found"):
        load_encoder_weights(model, tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name", ["model.safetensors", "model_dir"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path, name: str) -> None:
    cfg = _config(metrics={"miou": 0.5})
    model = build_model("unet", "resnet18", in_channels=4, classes=2).eval()
    path = save_checkpoint(model, cfg, tmp_path / name)
    loaded = load_checkpoint(path)
    assert loaded.config == cfg
    x = torch.rand(1, 4, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded.model(x))
    assert read_config(path).classes.names == ["background", "building"]


@pytest.mark.parametrize("name", ["model.safetensors", "model_dir"])
def test_a_checkpoint_is_readable_as_any_new_file_is(tmp_path: Path, name: str) -> None:
    """Mode 0o666 less the umask, like the other outputs, so others can read a shared model."""
    import os

    old = os.umask(0o022)
    try:
        path = save_checkpoint(
            build_model("unet", "resnet18", classes=2), _config(), tmp_path / name
        )
    finally:
        os.umask(old)
    files = [path] if path.is_file() else sorted(path.iterdir())
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {
        f.name: oct(0o644) for f in files
    }


@pytest.mark.parametrize("name", ["model.safetensors", "model_dir"])
def test_rewriting_a_checkpoint_changes_its_config_and_no_weight(tmp_path: Path, name: str) -> None:
    from geoseg.models.checkpoint import read_state, replace_config, rewrite_checkpoint

    model = build_model("unet", "resnet18", in_channels=4, classes=2)
    src = save_checkpoint(model, _config(), tmp_path / name)
    before = read_state(src)
    changed = _config(metrics={"miou": 0.75})
    dst = rewrite_checkpoint(src, tmp_path / "out.safetensors", changed)
    assert read_config(dst) == changed and read_config(src) == _config()
    after = read_state(dst)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in after)
    if src.is_file():  # one file: the weights' bytes are those of the source
        tail = len(src.read_bytes()) - 8 - int.from_bytes(src.read_bytes()[:8], "little")
        assert src.read_bytes()[-tail:] == dst.read_bytes()[-tail:]
        assert replace_config(src, changed) == src and read_config(src) == changed
        broken = tmp_path / "broken.safetensors"
        broken.write_bytes(src.read_bytes()[:8] + b"{not json")
        with pytest.raises(CheckpointError, match="not a readable safetensors"):
            rewrite_checkpoint(broken, tmp_path / "never.safetensors", changed)
        assert not (tmp_path / "never.safetensors").exists()
    else:
        with pytest.raises(CheckpointError, match="one-file"):
            replace_config(src, changed)


def test_pickles_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="geoseg never unpickles"):
        load_checkpoint(path)


def test_newer_format_is_refused_with_the_upgrade_hint(tmp_path: Path) -> None:
    folder = save_checkpoint(
        build_model("unet", "resnet18", in_channels=4, classes=2), _config(), tmp_path / "ck"
    )
    cfg = json.loads((folder / "config.json").read_text())
    cfg["format_version"] = 99
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"format 99 .* upgrade geoseg"):
        load_checkpoint(folder)


def test_weights_that_do_not_fit_the_config(tmp_path: Path) -> None:
    path = save_checkpoint(
        build_model("unet", "resnet18", in_channels=4, classes=2),
        _config(),
        tmp_path / "m.safetensors",
    )
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    bad = _config(classes=ClassTable.from_names(["a", "b", "c"]))
    save_file(state, str(path), metadata={"geoseg_config": bad.to_json()})
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(path)


def test_config_validation() -> None:
    with pytest.raises(CheckpointError, match="normalization has statistics for 4 band"):
        _config(in_channels=3, band_names=())
    with pytest.raises(CheckpointError, match="no integer 'format_version'"):
        ModelConfig.from_dict({})


def test_config_tiling_is_written_only_when_not_geosegs_own() -> None:
    plain = _config()
    assert plain.tiling == "geoseg" and "tiling" not in plain.to_dict()
    deep = ModelConfig.from_json(plain.replace(tiling="deepness").to_json())
    assert deep.tiling == "deepness" and deep.to_dict()["tiling"] == "deepness"
