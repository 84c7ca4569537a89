"""int8 inference: calibration, the rebuilt network, the choice of ``auto``, and the engine running
it (same grid and nodata as fp32, through the API and the CLI, cached like the frozen trace)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import rasterio
import torch
from click.testing import CliRunner
from torch import nn

from geoseg.classes import ClassTable
from geoseg.errors import CheckpointError, DeviceError, LowAgreementWarning
from geoseg.inference.int8 import build_int8, calibrate, int8_precision, quantizable
from geoseg.models import ModelConfig, save_checkpoint
from geoseg.models.registry import ARCHITECTURES
from geoseg.models.variants import Int8Variant
from geoseg.normalize import Normalization

CPU = torch.device("cpu")


class TinyNet(nn.Module):
    """Convolutions with batch norms and a skip, named like a U-Net's head: what int8 folds,
    quantizes and can keep in float. Decisive logits, as a trained network gives."""

    def __init__(self, in_channels: int = 3, classes: int = 3, **_: Any) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.segmentation_head = nn.Conv2d(16, classes, 1)
        torch.manual_seed(0)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.8)
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem(x)
        return self.segmentation_head(torch.cat([a, self.body(a)], 1))


def tiny_config(**changes: Any) -> ModelConfig:
    return ModelConfig(
        "tiny-int8",
        "resnet18",
        3,
        ClassTable.from_names(["background", "building", "road"]),
        band_names=("red", "green", "blue"),
        normalization=Normalization("scale", scale=255.0),
        tile_size=64,
        overlap=16,
        output_stride=1,
        **changes,
    )


@pytest.fixture
def tiny_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ARCHITECTURES, "tiny-int8", lambda **kw: TinyNet(**kw).eval())


def tiles(n: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 3, 64, 64, generator=g) for _ in range(n)]


def variant_of(model: nn.Module, **changes: Any) -> Int8Variant:
    return Int8Variant(qparams=calibrate(model, tiles(), 3), **changes)


def test_calibration_is_deterministic_and_rebuilds_bit_for_bit() -> None:
    model = TinyNet().eval()
    first, second = calibrate(model, tiles(), 3), calibrate(model, tiles(), 3)
    assert first == second and len(first) >= 4
    assert "x" in first  # the input's quantizer, named after the node it observes
    assert calibrate(model, tiles(seed=1), 3) != first
    x = tiles(1, seed=5)[0]
    variant = Int8Variant(qparams=first)
    with torch.no_grad():
        a, b = build_int8(model, variant, 3)(x), build_int8(model, variant, 3)(x)
    assert torch.equal(a, b)
    assert all(not p.is_quantized for p in model.state_dict().values())  # the source is untouched


def test_the_int8_network_quantizes_and_keeps_asked_layers_in_float() -> None:
    model = TinyNet().eval()
    variant = variant_of(model)
    net = build_int8(model, variant, 3)
    convs = [type(m) for _, m in net.named_modules() if "Conv" in type(m).__name__]
    assert len(convs) == 3 and all(".quantized." in c.__module__ for c in convs)
    kept = build_int8(model, dataclasses.replace(variant, float_layers=("segmentation_head",)), 3)
    assert type(kept.get_submodule("segmentation_head")) is nn.Conv2d
    x = tiles(1, seed=7)[0]
    with torch.no_grad():
        ref, got = model(x).argmax(1), net(x).argmax(1)
    assert (ref == got).float().mean() > 0.9


def test_timm_norm_act_becomes_a_foldable_batch_norm() -> None:
    from timm.layers.norm_act import BatchNormAct2d

    model = nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormAct2d(4, act_layer=nn.ReLU6)).eval()
    model[1].running_mean.uniform_(-1, 1)
    plain = quantizable(model)
    assert type(plain[1]) is nn.Sequential and type(plain[1][0]) is nn.BatchNorm2d
    assert isinstance(plain[1][-1], nn.ReLU6) and type(model[1]) is BatchNormAct2d
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x))


@pytest.mark.parametrize("kernel,stride", [(3, 2), (5, 2), (3, 1), (1, 1)])
def test_tensorflow_same_padding_becomes_a_fixed_padding(kernel: int, stride: int) -> None:
    """timm's ``Conv2dSame`` (the ``tf_`` encoders, the bundled ``fast`` model's) pads by the
    input's size at each call, which FX cannot trace: on the sizes geoseg runs it is a fixed
    padding, with the same output."""
    from timm.layers import Conv2dSame

    torch.manual_seed(0)
    model = nn.Sequential(Conv2dSame(3, 4, kernel, stride), nn.BatchNorm2d(4), nn.ReLU()).eval()
    plain = quantizable(model)
    assert not any(type(m).__name__ == "Conv2dSame" for m in plain.modules())
    torch.fx.symbolic_trace(plain)  # raises on size-dependent control flow
    for shape in ((1, 3, 64, 64), (2, 3, 32, 96)):
        x = torch.rand(*shape)
        with torch.no_grad():
            assert torch.allclose(model(x), plain(x), atol=1e-6)
    assert calibrate(model, [torch.rand(1, 3, 32, 32)], 3)  # and it quantizes


def test_a_record_that_does_not_fit_the_graph_is_refused() -> None:
    model = TinyNet().eval()
    variant = variant_of(model)
    partial = dataclasses.replace(
        variant, qparams={k: v for k, v in variant.qparams.items() if k != "x"}
    )
    with pytest.raises(CheckpointError, match=r"no scale for 1 quantizer.*calibrate it again"):
        build_int8(model, partial, 3)


def test_the_variant_round_trips_through_the_config() -> None:
    variant = variant_of(
        TinyNet().eval(),
        agreement={"value": 0.9931, "pixels": 1000, "on": "2 held-out image(s)"},
        calibration={"images": ["a.tif"], "tiles": 6, "digest": "abc"},
    )
    cfg = tiny_config(variants={"int8": variant.to_dict()})
    back = Int8Variant.of(ModelConfig.from_json(cfg.to_json()))
    assert back == variant and back is not None and back.digest == variant.digest
    assert back.agreement_value == 0.9931
    assert "agrees with fp32 on 99.31% of 2 held-out image(s)" in back.summary()
    assert Int8Variant.of(tiny_config()) is None
    assert "variants" not in tiny_config().to_dict()  # checkpoints without one keep their config
    with pytest.raises(
        CheckpointError, match="int8 variant recorded in this checkpoint is malformed"
    ):
        Int8Variant.of(tiny_config(variants={"int8": {"qparams": {"x": "bad"}}}))


@pytest.mark.parametrize(
    ("agreement", "device", "precision", "expected"),
    [
        (0.995, "cpu", "auto", "int8"),
        (0.99, "cpu", "auto", "int8"),
        (0.9899, "cpu", "auto", "auto"),  # disagreeing: never chosen
        (None, "cpu", "auto", "auto"),  # agreement unknown: never chosen
        ("none", "cpu", "auto", "auto"),  # no variant at all
        (0.995, "cuda", "auto", "auto"),  # int8 runs on the CPU only
        (0.995, "cpu", "fp32", "fp32"),
        (0.995, "cpu", "bf16", "bf16"),
    ],
)
def test_auto_picks_int8_only_from_a_recorded_agreement(
    agreement: Any, device: str, precision: str, expected: str
) -> None:
    if agreement == "none":
        cfg = tiny_config()
    else:
        record = {"value": agreement, "pixels": 10, "on": "x"} if agreement is not None else None
        cfg = tiny_config(variants={"int8": {"qparams": {"x": [0.1, 0]}, "agreement": record}})
    assert int8_precision(cfg, torch.device(device), precision) == expected


def test_int8_by_name_needs_a_cpu_and_a_variant_and_warns_when_it_disagrees() -> None:
    with pytest.raises(DeviceError, match=r"no int8 variant; calibrate one .*geoseg quantize"):
        int8_precision(tiny_config(), CPU, "int8")
    low = {"qparams": {"x": [0.1, 0]}, "agreement": {"value": 0.97, "pixels": 1, "on": "x"}}
    with pytest.raises(DeviceError, match="int8 runs on the CPU only"):
        int8_precision(tiny_config(variants={"int8": low}), torch.device("cuda"), "int8")
    with pytest.warns(LowAgreementWarning, match="agreed with fp32 on 97.00% .*auto needs 99%"):
        assert int8_precision(tiny_config(variants={"int8": low}), CPU, "int8") == "int8"


def test_the_runner_takes_int8_on_the_cpu_only() -> None:
    from geoseg.inference.runtime import Runner

    with pytest.raises(DeviceError, match="int8 runs on the CPU only"):
        Runner(TinyNet(), torch.device("cuda"), "int8")
    with pytest.raises(DeviceError, match="unknown precision 'int4'; expected one of auto, fp32"):
        Runner(TinyNet(), CPU, "int4")  # type: ignore[arg-type]


# -- through the engine ------------------------------------------------------------------------


@pytest.fixture
def calibrated(tiny_architecture: None, tmp_path: Path) -> Path:
    """A tiny checkpoint with an int8 variant whose recorded agreement is 99.5 %."""
    model = TinyNet().eval()
    record = variant_of(
        model, agreement={"value": 0.995, "pixels": 4096, "on": "1 held-out image(s)"}
    )
    return save_checkpoint(
        model, tiny_config(variants={"int8": record.to_dict()}), tmp_path / "q.safetensors"
    )


@pytest.fixture
def scene(make_raster: Any, textured_rgb: Any) -> Path:
    """150 x 170 RGB with a nodata hole (0 in every band)."""
    data = textured_rgb(150, 170)
    data[:, 40:70, 50:90] = 0
    return make_raster(data, "scene.tif", nodata=0)


def test_int8_output_is_on_the_fp32_grid_with_the_same_nodata(
    calibrated: Path, scene: Path, tmp_path: Path
) -> None:
    from geoseg.inference import predict_raster

    fp32 = predict_raster(scene, tmp_path / "fp32.tif", calibrated, precision="fp32", device="cpu")
    int8 = predict_raster(scene, tmp_path / "int8.tif", calibrated, precision="int8", device="cpu")
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    with rasterio.open(tmp_path / "fp32.tif") as a, rasterio.open(tmp_path / "int8.tif") as b:
        assert (a.crs, a.transform, a.shape, a.nodata) == (b.crs, b.transform, b.shape, b.nodata)
        ma, mb = a.read(1), b.read(1)
    assert ((ma == 255) == (mb == 255)).all() and (ma[40:70, 50:90] == 255).all()
    valid = ma != 255
    assert (ma == mb)[valid].mean() > 0.95
    assert not (ma == mb).all()  # int8 really ran


def test_auto_runs_the_calibrated_variant_and_says_why(
    calibrated: Path, scene: Path, tmp_path: Path
) -> None:
    from geoseg.inference import predict_raster

    result = predict_raster(scene, tmp_path / "auto.tif", calibrated, device="cpu")
    assert result.precision == "int8"
    assert result.precision_note == (
        "int8 (precision auto: the calibrated int8 variant agreed with fp32 on 99.50% of "
        "held-out pixels, 99% needed)"
    )
    forced = predict_raster(
        scene, tmp_path / "int8.tif", calibrated, precision="int8", device="cpu"
    )
    with rasterio.open(tmp_path / "auto.tif") as a, rasterio.open(tmp_path / "int8.tif") as b:
        assert (a.read() == b.read()).all() and forced.precision == "int8"


def test_the_cli_and_the_api_give_the_same_int8_mask(
    calibrated: Path, scene: Path, tmp_path: Path
) -> None:
    from geoseg.cli import cli
    from geoseg.inference import predict_raster

    run = CliRunner().invoke(
        cli,
        [
            "predict",
            str(scene),
            str(tmp_path / "cli.tif"),
            "--model",
            str(calibrated),
            "--precision",
            "int8",
            "--device",
            "cpu",
        ],
    )
    assert run.exit_code == 0, run.output
    assert "int8 on cpu" in run.output
    predict_raster(scene, tmp_path / "api.tif", calibrated, precision="int8", device="cpu")
    with rasterio.open(tmp_path / "cli.tif") as a, rasterio.open(tmp_path / "api.tif") as b:
        assert (a.read() == b.read()).all()


def test_int8_by_name_on_a_checkpoint_without_a_variant_is_one_clean_line(
    tiny_architecture: None, scene: Path, tmp_path: Path
) -> None:
    from geoseg.cli import cli

    plain = save_checkpoint(TinyNet().eval(), tiny_config(), tmp_path / "plain.safetensors")
    run = CliRunner().invoke(
        cli,
        [
            "predict",
            str(scene),
            str(tmp_path / "m.tif"),
            "--model",
            str(plain),
            "--precision",
            "int8",
        ],
    )
    assert run.exit_code == 1
    assert run.output.strip().splitlines() == [
        "Error: this checkpoint has no int8 variant; calibrate one on images like its training "
        "data with geoseg quantize CKPT OUT --calibration IMAGES..., then predict with OUT"
    ]
    assert not (tmp_path / "m.tif").exists()


def test_a_second_run_takes_the_int8_network_from_the_cache(
    calibrated: Path, scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geoseg.inference.session as session
    from geoseg.inference import predict_raster

    monkeypatch.setenv("GEOSEG_CACHE_DIR", str(tmp_path / "cache"))
    first = predict_raster(scene, tmp_path / "a.tif", calibrated, precision="int8", device="cpu")
    fp32 = predict_raster(scene, tmp_path / "f.tif", calibrated, precision="fp32", device="cpu")

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the int8 network should come from the cache")

    monkeypatch.setattr(session, "resolve_model", no_build)
    second = predict_raster(scene, tmp_path / "b.tif", calibrated, precision="int8", device="cpu")
    assert (first.network, fp32.network, second.network) == (
        "frozen (traced)",
        "frozen (traced)",  # fp32 has its own entry: the int8 trace is not taken for it
        "scripted",
    )
    assert second.precision == "int8"
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert (a.read() == b.read()).all()


def test_threads_share_one_int8_network(calibrated: Path, scene: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from geoseg.inference import predict_classes
    from geoseg.models.resolve import shared_model

    model = shared_model(str(calibrated))
    with ThreadPoolExecutor(3) as pool:
        masks = list(
            pool.map(
                lambda _: predict_classes(scene, model, precision="int8", device="cpu").data,
                range(3),
            )
        )
    assert all((m == masks[0]).all() for m in masks)
