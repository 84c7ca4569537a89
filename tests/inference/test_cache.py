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

    def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
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


def test_freeze_is_measured_once_and_cached(
    cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Runner, "FREEZE_GAIN", 0.0)  # keep it whatever the timing on a busy machine
    model, x = conv3_model(), torch.randn(2, 3, 32, 32)
    eager = Runner(model, torch.device("cpu"), "fp32", freeze=False)(x)
    runner = Runner(model, torch.device("cpu"), "fp32", tiles=4)
    out = [runner(x), runner(x)]  # the second (warm) batch is timed, then the trace measured
    assert runner.freeze_note == "frozen (measured)" and runner._frozen is not None
    assert all(torch.allclose(o, eager, atol=1e-4) for o in out)
    later = Runner(conv3_model(), torch.device("cpu"), "fp32", tiles=4)
    assert torch.allclose(later(x), eager, atol=1e-4)
    assert later.freeze_note == "frozen (cached)"
    frozen, precision = cached_frozen(
        ModelCache(module_digest(model)), torch.device("cpu"), "fp32", (1, 3, 32, 32)
    )
    assert frozen is not None and precision == "fp32"


def test_slow_trace_is_recorded_as_eager(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Runner, "FREEZE_GAIN", float("inf"))  # never pays
    monkeypatch.setattr(Runner, "FREEZE_SMALL_PARAMS", 0)  # and the network counts as large
    x = torch.randn(2, 3, 32, 32)
    runner = Runner(conv3_model(), torch.device("cpu"), "fp32", tiles=20)
    runner(x), runner(x)
    assert runner.freeze_note == "eager (measured)" and runner._frozen is None
    later = Runner(conv3_model(), torch.device("cpu"), "fp32", tiles=20)
    later(x)
    assert later.freeze_note == "eager (cached measurement)"


def test_few_tiles_of_a_large_network_are_not_traced(
    cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Runner, "FREEZE_SMALL_PARAMS", 0)
    x = torch.randn(2, 3, 32, 32)
    runner = Runner(conv3_model(), torch.device("cpu"), "fp32", tiles=4)
    runner(x), runner(x)
    assert runner.freeze_note == "eager" and not (cache_root / "models").exists()


def test_a_cached_checkpoint_starts_without_building_the_network(
    cache_root: Path, monkeypatch: pytest.MonkeyPatch, make_raster, textured_rgb, tmp_path: Path
) -> None:
    import geoseg.inference.engine as engine
    from geoseg.inference import predict_raster

    monkeypatch.setattr(Runner, "FREEZE_GAIN", 0.0)
    monkeypatch.setattr(
        Runner, "FREEZE_SMALL_PARAMS", 10**9
    )  # 9 tiles: measured as a small network is
    ckpt = tiny_unet_checkpoint(tmp_path)
    src = make_raster(textured_rgb(150, 150))
    first = predict_raster(src, tmp_path / "a.tif", ckpt, device="cpu", precision="fp32")

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network should come from the cache")

    monkeypatch.setattr(engine, "resolve_model", no_build)
    second = predict_raster(src, tmp_path / "b.tif", ckpt, device="cpu", precision="fp32")
    assert first.tiles_run == second.tiles_run
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert (
            a.read() == b.read()
        ).mean() > 0.999  # folded batch norms: float rounding may flip a near tie


def test_a_loaded_checkpoint_and_its_path_share_one_cache_entry(
    cache_root: Path, monkeypatch: pytest.MonkeyPatch, make_raster, textured_rgb, tmp_path: Path
) -> None:
    """The same weights run the same network variant whether given as a path or as the loaded
    module: the second run follows the first's recorded trace decision instead of timing its own
    (which, on a busy machine, could choose the other variant and change the last bits)."""
    from geoseg.inference import predict_raster
    from geoseg.models import load_checkpoint
    from geoseg.models.digest import file_digest, module_digest

    monkeypatch.setattr(Runner, "FREEZE_SMALL_PARAMS", 0)  # a large network: timing decides
    monkeypatch.setattr(Runner, "FREEZE_GAIN", float("inf"))  # the first timing says eager
    ckpt = tiny_unet_checkpoint(tmp_path)
    src = make_raster(textured_rgb(150, 150))
    predict_raster(src, tmp_path / "a.tif", ckpt, device="cpu", precision="fp32")
    records = sorted((cache_root / "models").glob("*.json"))
    monkeypatch.setattr(Runner, "FREEZE_GAIN", 0.0)  # a new timing would say frozen
    loaded = load_checkpoint(ckpt)
    assert module_digest(loaded.model) == file_digest(ckpt)
    predict_raster(src, tmp_path / "b.tif", loaded, device="cpu", precision="fp32")
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
