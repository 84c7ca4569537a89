"""The torch-only U-Nets: the same modules, weights and outputs as segmentation-models-pytorch's,
and a checkpoint of one loads without importing smp, timm or torchvision."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from torch import nn

from geoseg.classes import ClassTable
from geoseg.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
from geoseg.models.native import ENCODERS, native_network

ENCODER_NAMES = sorted(ENCODERS)


def _config(encoder: str, **kwargs: object) -> ModelConfig:
    return ModelConfig(
        architecture="unet",
        encoder=encoder,
        in_channels=4,
        classes=ClassTable.from_names(["a", "b", "c"]),
        model_kwargs={"encoder_depth": 5, "decoder_channels": [48, 32, 24, 16, 8], **kwargs},
    )


def _pair(encoder: str) -> tuple[nn.Module, nn.Module]:
    """An smp U-Net with random weights and batch-norm statistics, and the native one holding
    them."""
    cfg = _config(encoder)
    torch.manual_seed(0)
    smp = build_model(
        "unet", encoder, in_channels=4, classes=3, encoder_weights=None, **cfg.model_kwargs
    )
    state = {
        k: (torch.rand_like(v) + 0.5 if "running_var" in k else torch.randn_like(v) * 0.2)
        if v.is_floating_point()
        else v
        for k, v in smp.state_dict().items()
    }
    smp.load_state_dict(state)
    native = native_network(cfg)
    assert native is not None
    native.load_state_dict(state, strict=True)
    return smp.eval(), native.eval()


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_the_same_modules_and_weights_as_smp(encoder: str) -> None:
    smp, native = _pair(encoder)
    assert [n for n, _ in native.named_modules()] == [n for n, _ in smp.named_modules()]
    ours = {k: v.shape for k, v in native.state_dict().items()}
    assert ours == {k: v.shape for k, v in smp.state_dict().items()}
    assert native.encoder.out_channels == list(smp.encoder.out_channels)


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_outputs_and_gradients_are_bit_for_bit_those_of_smp(encoder: str) -> None:
    """Any tile shape (TensorFlow padding differs on odd sizes), bf16 autocast, a frozen trace,
    and the input gradient explain uses."""
    smp, native = _pair(encoder)
    torch.manual_seed(1)
    for shape in [(1, 4, 128, 128), (2, 4, 96, 160), (1, 4, 100, 132)]:
        x = torch.randn(shape)
        with torch.no_grad():
            assert torch.equal(native(x), smp(x)), shape
            with torch.autocast("cpu", dtype=torch.bfloat16):
                assert torch.equal(native(x), smp(x)), shape
    x = torch.randn(1, 4, 128, 128)
    with torch.no_grad():
        frozen = [torch.jit.freeze(torch.jit.trace(m, x)) for m in (native, smp)]
        assert torch.equal(frozen[0](x), frozen[1](x))
    grads = []
    for m in (native, smp):
        xg = x.clone().requires_grad_(True)
        m(xg)[:, 1].sum().backward()
        grads.append(xg.grad)
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize(
    "change",
    [
        {"encoder": "resnet18"},
        {"architecture": "fpn"},
        {"model_kwargs": {"encoder_depth": 4, "decoder_channels": [32, 16, 8, 8]}},
        {"model_kwargs": {"decoder_attention_type": "scse"}},
    ],
)
def test_a_network_it_does_not_describe_exactly_is_left_to_smp(change: dict) -> None:
    assert native_network(replace(_config(ENCODER_NAMES[0]), **change)) is None


def test_a_checkpoint_loads_natively_and_agrees_with_smp(tmp_path) -> None:
    smp, _ = _pair(ENCODER_NAMES[0])
    path = save_checkpoint(smp, _config(ENCODER_NAMES[0]), tmp_path / "m.safetensors")
    native, through_smp = load_checkpoint(path), load_checkpoint(path, native=False)
    assert type(native.model).__module__ == "geoseg.models.native"
    assert type(through_smp.model).__module__.startswith("segmentation_models_pytorch")
    x = torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        assert torch.equal(native.model(x), through_smp.model(x))
    assert torch.equal(native.model.predict(x), through_smp.model.predict(x))


def test_loading_a_bundled_model_imports_neither_smp_nor_timm_nor_torchvision() -> None:
    code = (
        "import sys, json; from geoseg.models.resolve import resolve_model\n"
        "for name in ('quality', 'fast'): resolve_model(name)\n"
        "print(json.dumps([m for m in ('segmentation_models_pytorch', 'timm', 'torchvision',"
        " 'torch._dynamo') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
