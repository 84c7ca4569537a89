"""The model cache: records and frozen modules on disk, and what the runner and engine take from
it."""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio
import torch

from geoseg.inference import runtime
from geoseg.inference.cache import ModelCache, cache_dir, module_digest
from geoseg.inference.runtime import Runner, cached_frozen
from tests.inference.conftest import conv3_model


def tiny_unet_checkpoint(folder: Path) -> Path:
    """A small U-Net (ResNet18 encoder, depth 3) saved as a checkpoint with 64-px tiles."""
    from geoseg.classes import ClassTable
    from geoseg.models import build_model, save_checkpoint
    from geoseg.models.config import ModelConfig

    kwargs = {"encoder_depth": 3, "decoder_channels": [16, 8, 8]}
    torch.manual_seed(0)
    return save_checkpoint(
        build_model("unet", "resnet18", in_channels=3, classes=3, **kwargs),
        ModelConfig(
            "unet",
            "resnet18",
            3,
            ClassTable.default(3),
            tile_size=64,
            overlap=16,
            model_kwargs=kwargs,
        ),
        folder / "m.safetensors",
    )


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("GEOSEG_CACHE_DIR", str(root))
    return root


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GEOSEG_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.setenv("GEOSEG_CACHE_DIR", "off")
    assert cache_dir() is None and not ModelCache("abc").enabled
    monkeypatch.delenv("GEOSEG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "geoseg"


def test_records_survive_corrupt_files(cache_root: Path) -> None:
    cache = ModelCache("digest")
    assert cache.get("x") is None
    cache.put("x", {"a": 1})
    cache.put("y", 2)
    assert ModelCache("digest").get("x") == {"a": 1} and ModelCache("digest").get("y") == 2
    assert ModelCache("other").get("x") is None
    records = next((cache_root / "models").glob("*.json"))
    records.write_text("{not json")  # a torn or foreign file is ignored, then rewritten
    assert cache.get("x") is None
    cache.put("x", 3)
    assert cache.get("x") == 3
    assert [p.name for p in records.parent.iterdir()] == [records.name]  # no temporary files left


def test_corrupt_frozen_module_is_ignored(cache_root: Path) -> None:
    cache = ModelCache("digest")
    path = cache.module_path("m")
    assert path is not None
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    assert cache.load_module("m") is None


def test_module_digest_follows_the_weights() -> None:
    a, b = conv3_model(seed=0), conv3_model(seed=0)
    assert module_digest(a) == module_digest(b)
    before = module_digest(a)
    with torch.no_grad():
        a[0].weight.add_(1)  # in place: the digest must notice
    assert module_digest(a) != before
    assert module_digest(conv3_model(seed=1)) != module_digest(b)


@pytest.mark.parametrize(("agrees", "chosen"), [(0.999, "bf16"), (0.99, "fp32")])
def test_auto_precision_is_recorded_and_reused(
    cache_root: Path, monkeypatch: pytest.MonkeyPatch, agrees: float, chosen: str
) -> None:
    monkeypatch.setattr(runtime, "fast_precision", lambda device: "bf16")
    measured: list[float] = []
    real = runtime.agreement

    def agreement(a: torch.Tensor, b: torch.Tensor, valid: object = None) -> float:
        measured.append(real(a, b))
        return agrees  # the measured figure, decided here: the choice must follow it

    monkeypatch.setattr(runtime, "agreement", agreement)
    model, x = conv3_model(), torch.randn(2, 3, 32, 32)
    first = Runner(model, torch.device("cpu"), "auto", freeze=False)
    out = first(x)
    assert (first.precision, first.agreement) == (chosen, agrees) and len(measured) == 1
    reference = Runner(model, torch.device("cpu"), chosen, freeze=False)(x)
    assert torch.equal(out, reference)  # the chosen precision's own output is returned

    def no_check(*args: object) -> float:
        raise AssertionError("the recorded choice should have been used")

    monkeypatch.setattr(runtime, "agreement", no_check)
    again = Runner(conv3_model(), torch.device("cpu"), "auto", freeze=False)
    again(x)
    assert (again.precision, again.agreement) == (first.precision, first.agreement)


def test_freeze_is_traced_once_and_kept(cache_root: Path) -> None:
    model, x = conv3_model(), torch.randn(2, 3, 32, 32)
    eager = Runner(model, torch.device("cpu"), "fp32", freeze=False)(x)
    runner = Runner(model, torch.device("cpu"), "fp32")
    out = [runner(x), runner(x)]
    assert runner.freeze_note == "frozen (traced)" and runner._frozen is not None
    assert all(torch.allclose(o, eager, atol=1e-4) for o in out)
    same = Runner(model, torch.device("cpu"), "fp32")  # this process already holds the trace
    same(x)
    assert same.freeze_note == "frozen" and same._frozen is runner._frozen
    later = Runner(conv3_model(), torch.device("cpu"), "fp32")  # equal weights: the disk cache
    assert torch.allclose(later(x), eager, atol=1e-4)
    assert later.freeze_note == "frozen (cached)"
    frozen, precision = cached_frozen(
        ModelCache(module_digest(model)), torch.device("cpu"), "fp32", (1, 3, 32, 32)
    )
    assert frozen is not None and precision == "fp32"


def test_a_trace_runs_the_network_once_and_wraps_none_of_its_layers(cache_root: Path) -> None:
    """The trace is made of the whole network as one module (its layers are not wrapped one by
    one into ScriptModules, most of a trace's time), and its own call is the eager reference the
    frozen copy is checked against: one eager forward in all."""
    model, x = conv3_model(), torch.randn(2, 3, 32, 32)
    calls = []
    model[0].register_forward_hook(lambda *args: calls.append(1))
    runner = Runner(model, torch.device("cpu"), "fp32")
    out = runner(x)
    assert runner.freeze_note == "frozen (traced)" and len(calls) == 1
    assert list(runner._frozen.children()) == []
    assert torch.allclose(out, Runner(conv3_model(), torch.device("cpu"), "fp32", freeze=False)(x))
    assert all(p.requires_grad for p in model.parameters())  # the caller's module is untouched


def test_a_first_auto_run_pays_one_eager_pass_and_checks_the_network_that_runs(
    cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Freezing comes before the precision check: the trace's own check gives the fp32 reference
    (one eager pass in all, not three), and fp32 and the fast precision are both measured on the
    frozen network, which is what then runs."""
    monkeypatch.setattr(runtime, "fast_precision", lambda device: "bf16")
    compared: list[tuple[torch.Tensor, torch.Tensor]] = []

    def agreement(a: torch.Tensor, b: torch.Tensor, valid: object = None) -> float:
        compared.append((a, b))
        return 0.999

    monkeypatch.setattr(runtime, "agreement", agreement)
    model, x = conv3_model(), torch.randn(2, 3, 32, 32)
    calls = []
    model[0].register_forward_hook(lambda *args: calls.append(1))
    runner = Runner(model, torch.device("cpu"), "auto")
    runner(x)
    assert runner.precision == "bf16" and runner.freeze_note == "frozen (traced)"
    assert len(calls) == 1  # the trace's own call; the bf16 pass ran on the frozen copy
    ((reference, candidate),) = compared
    with torch.inference_mode():
        eager = torch.softmax(conv3_model()(x[:1]), 1)
        frozen = torch.softmax(runner._frozen(x[:1]).float(), 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            frozen_bf16 = torch.softmax(runner._frozen(x[:1]).float(), 1)
    assert torch.allclose(reference, frozen, atol=1e-6)  # the network that runs, in fp32
    assert torch.allclose(reference, eager, atol=1e-3)
    assert torch.equal(candidate, frozen_bf16)


def test_the_network_variant_does_not_depend_on_timing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever the clock says (a loaded machine makes every timing noisy), every run of a model
    on CPU runs the same variant: the frozen trace."""
    import random
    import time

    noise = random.Random(0)
    monkeypatch.setattr(time, "perf_counter", lambda: noise.uniform(0, 1e6))
    monkeypatch.setattr(time, "monotonic", lambda: noise.uniform(0, 1e6))
    monkeypatch.setenv("GEOSEG_CACHE_DIR", "off")
    notes = set()
    for seed in range(4):
        runner = Runner(conv3_model(seed=seed), torch.device("cpu"), "fp32")
        runner(torch.randn(2, 3, 32, 32))
        notes.add(runner.freeze_note)
    assert notes == {"frozen (traced)"}


def test_an_untraceable_model_is_recorded_as_eager(cache_root: Path) -> None:
    class Untraceable(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.jit.is_tracing():
                raise RuntimeError("this model cannot be traced")
            return x[:, :2]

    x = torch.randn(2, 3, 32, 32)
    runner = Runner(Untraceable(), torch.device("cpu"), "fp32")
    runner(x)
    assert runner.freeze_note == "eager (cannot freeze)" and runner._frozen is None
    records = list((cache_root / "models").glob("*.json"))
    assert len(records) == 1 and '"frozen": false' in records[0].read_text()


def test_a_runner_never_changes_the_module_it_is_given() -> None:
    """The module stays where and as it was (a loaded model may serve several threads)."""
    model = conv3_model()
    before = {k: (v.data_ptr(), v.stride()) for k, v in model.state_dict().items()}
    model.train()
    Runner(model, torch.device("cpu"), "fp32")(torch.randn(1, 3, 32, 32))
    after = {k: (v.data_ptr(), v.stride()) for k, v in model.state_dict().items()}
    assert after == before and model.training


def test_a_cached_checkpoint_starts_without_building_the_network(
    cache_root: Path, monkeypatch: pytest.MonkeyPatch, make_raster, textured_rgb, tmp_path: Path
) -> None:
    import geoseg.inference.session as session
    from geoseg.inference import predict_raster

    ckpt = tiny_unet_checkpoint(tmp_path)
    src = make_raster(textured_rgb(150, 150))
    first = predict_raster(src, tmp_path / "a.tif", ckpt, device="cpu", precision="fp32")

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network should come from the cache")

    monkeypatch.setattr(session, "resolve_model", no_build)
    second = predict_raster(src, tmp_path / "b.tif", ckpt, device="cpu", precision="fp32")
    assert first.tiles_run == second.tiles_run
    assert (first.network, second.network) == ("frozen (traced)", "scripted")
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert (a.read() == b.read()).all()  # the trace kept on disk is the trace that ran


def test_a_loaded_checkpoint_and_its_path_share_one_cache_entry(
    cache_root: Path, make_raster, textured_rgb, tmp_path: Path
) -> None:
    """The same weights run the same network whether given as a path or as the loaded module."""
    from geoseg.inference import predict_raster
    from geoseg.models import load_checkpoint
    from geoseg.models.digest import file_digest, module_digest

    ckpt = tiny_unet_checkpoint(tmp_path)
    src = make_raster(textured_rgb(150, 150))
    predict_raster(src, tmp_path / "a.tif", ckpt, device="cpu", precision="fp32")
    records = sorted((cache_root / "models").glob("*.json"))
    loaded = load_checkpoint(ckpt)
    assert module_digest(loaded.model) == file_digest(ckpt)
    result = predict_raster(src, tmp_path / "b.tif", loaded, device="cpu", precision="fp32")
    assert result.network == "frozen (cached)"
    assert sorted((cache_root / "models").glob("*.json")) == records  # no second entry
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert (a.read() == b.read()).all()
    with torch.no_grad():
        next(loaded.model.parameters()).mul_(2)  # changed weights: no longer the checkpoint's
    assert module_digest(loaded.model) != file_digest(ckpt)
    assert module_digest(loaded.model.float()) == module_digest(loaded.model)


def test_file_digest_follows_a_rewritten_file(tmp_path: Path) -> None:
    from geoseg.models.digest import file_digest

    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 100)
    first = file_digest(path)
    assert file_digest(path) == first  # remembered
    (tmp_path / "new.bin").write_bytes(b"b" * 100)
    (tmp_path / "new.bin").replace(path)  # how checkpoints are written: same size, new file
    assert file_digest(path) != first
    second = file_digest(path)
    path.write_bytes(b"c" * 101)  # rewritten in place, another size
    assert file_digest(path) not in (first, second)


def test_auto_takes_the_agreement_the_checkpoint_records(
    cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recorded figure decides ``auto`` without a check on the input's first tile."""
    monkeypatch.setattr(runtime, "fast_precision", lambda device: "bf16")

    def no_check(*args: object) -> float:
        raise AssertionError("the recorded agreement should have been used")

    monkeypatch.setattr(runtime, "agreement", no_check)
    x = torch.randn(1, 3, 32, 32)
    good = Runner(conv3_model(), torch.device("cpu"), "auto", recorded={"bf16": 0.999})
    good(x)
    assert (good.precision, good.agreement) == ("bf16", 0.999)
    bad = Runner(conv3_model(seed=1), torch.device("cpu"), "auto", recorded={"bf16": 0.97})
    bad(x)
    assert (bad.precision, bad.agreement) == ("fp32", 0.97)
    assert "bf16 agreed with fp32 on 97.0%" in bad.precision_note()
    assert runtime.recorded_agreement({"precision": {"bf16": {"agreement": 0.97}}}) == {
        "bf16": 0.97
    }
