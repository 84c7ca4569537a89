"""Training end to end on tiny generated data, through the real CLI and the API."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from click.testing import CliRunner
from PIL import Image

from geoseg.cli import cli
from geoseg.errors import ConfigError, InputCompatibilityWarning, TrainingError
from geoseg.inference import predict_raster
from geoseg.models.checkpoint import load_checkpoint
from geoseg.models.config import read_config
from geoseg.training.config import load_config
from geoseg.training.train import train

TINY = {
    "data": {
        "kind": "dubai",
        "split": {"val": [2], "test": [3]},
        "patch_size": 32,
        "samples_per_epoch": 8,
        "num_workers": 0,
    },
    "model": {
        "architecture": "unet",
        "encoder": "resnet18",
        "kwargs": {"encoder_depth": 3, "decoder_channels": [16, 8, 8]},
    },
    "optim": {"lr": 0.01},
    "loss": {"ce": 1.0, "dice": 0.5},
    "batch_size": 4,
    "epochs": 2,
    "tile_size": 64,
    "overlap": 16,
    "logger": ["csv"],
}


def tiny(tmp_path: Path, dubai_root: Path, **changes) -> Path:
    cfg = json.loads(json.dumps(TINY))
    cfg["data"]["root"] = str(dubai_root)
    cfg["output"] = str(tmp_path / "run")
    cfg.update(changes)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_cli_train_then_predict_and_evaluate(tmp_path, dubai_root) -> None:
    cfg = tiny(tmp_path, dubai_root)
    runner = CliRunner()
    res = runner.invoke(cli, ["-q", "train", "-c", str(cfg), "seed=3"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "run"
    for name in (
        "model.safetensors",
        "best.safetensors",
        "last.ckpt",
        "metrics.csv",
        "curves.png",
        "config.yaml",
    ):
        assert (run / name).is_file(), name
    config = read_config(run / "model.safetensors")
    assert config.classes.names == ["building", "land", "road", "vegetation", "water"]
    assert config.normalization.kind == "meanstd" and len(config.normalization.mean) == 3
    assert (
        config.training["data"]["train_groups"] == ["Tile 1"]
        and config.training["config"]["seed"] == 3
    )
    assert "miou" in config.metrics["validation"]
    image = next((dubai_root / "Tile 3" / "images").glob("*.jpg"))
    res = runner.invoke(
        cli,
        [
            "-q",
            "predict",
            str(image),
            str(tmp_path / "mask.tif"),
            "--model",
            str(run / "model.safetensors"),
        ],
    )
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "mask.tif") as src:
        assert src.shape == (96, 112) and src.read(1).max() < 5
    res = runner.invoke(
        cli,
        [
            "-q",
            "evaluate",
            str(run / "model.safetensors"),
            "-c",
            str(cfg),
            "-o",
            str(tmp_path / "eval"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "mean" in res.output and "pixel accuracy" in res.output
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (
        set(report["per_class"]) == set(config.classes.names)
        and (tmp_path / "eval" / "confusion.png").is_file()
    )
    looks = sorted(
        (tmp_path / "eval" / "quicklooks").glob("*.png")
    )  # truth beside prediction, one per image
    assert [p.stem for p in looks] == sorted(
        e["image"].replace(" ", "").replace("/", "_")[:-4] for e in report["images"]
    )
    assert Image.open(looks[0]).size[0] == 2 * 112 + 8
    # each run folder records how it was made
    trained = json.loads((run / "provenance.json").read_text())
    assert trained["model"] == "unet-resnet18" and trained["inputs"] == [str(dubai_root)]
    assert trained["options"]["seed"] == 3 and trained["created"].endswith("Z")
    scored = json.loads((tmp_path / "eval" / "provenance.json").read_text())
    assert scored["model"] == "model.safetensors" and len(scored["model_digest"]) == 64
    assert len(scored["inputs"]) == len(report["images"]) and scored["options"]["tile_size"] > 0


@pytest.mark.slow
def test_save_load_predict_identical(tmp_path, dubai_root) -> None:
    cfg = load_config(tiny(tmp_path, dubai_root), ["epochs=1"])
    result = train(cfg, progress=False)
    image = next((dubai_root / "Tile 3" / "images").glob("*.jpg"))
    loaded = load_checkpoint(result.checkpoint)
    a = predict_raster(image, tmp_path / "a.tif", loaded, precision="fp32")
    b = predict_raster(image, tmp_path / "b.tif", result.checkpoint, precision="fp32")
    with rasterio.open(a.mask) as x, rasterio.open(b.mask) as y:
        assert np.array_equal(x.read(), y.read())


@pytest.mark.slow
def test_interrupt_keeps_last_checkpoint_and_resumes(tmp_path, dubai_root, monkeypatch) -> None:
    from geoseg.training.task import SegmentationTask

    cfg = load_config(tiny(tmp_path, dubai_root), ["epochs=3"])
    real = SegmentationTask.training_step

    def stop(self, batch, idx):  # Ctrl-C during the second epoch
        if self.global_step == 3:
            raise KeyboardInterrupt
        return real(self, batch, idx)

    monkeypatch.setattr(SegmentationTask, "training_step", stop)
    with pytest.raises(KeyboardInterrupt, match="resume with"):
        train(cfg, progress=False)
    assert (tmp_path / "run" / "last.ckpt").is_file()
    monkeypatch.setattr(SegmentationTask, "training_step", real)
    with pytest.raises(TrainingError, match="not empty"):
        train(cfg, progress=False)
    changed = load_config(tiny(tmp_path, dubai_root), ["epochs=3", "optim.lr=0.5"])
    with pytest.raises(TrainingError, match=r"different config \(changed: optim\.lr\)"):
        train(changed, resume=True, progress=False)
    result = train(cfg, resume=True, progress=False)
    assert result.epochs == 3


def test_config_errors_name_the_key(tmp_path, dubai_root) -> None:
    path = tiny(tmp_path, dubai_root)
    with pytest.raises(
        ConfigError,
        match=r"data.kind: 'tiff' is not allowed; expected one of dubai, geotiff, spacenet6",
    ):
        load_config(path, ["data.kind=tiff"])
    with pytest.raises(
        ConfigError,
        match=r"optim.lrr: unknown key; allowed keys here: encoder_lr_scale, lr, name, "
        r"schedule, weight_decay",
    ):
        load_config(path, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"optim.encoder_lr_scale.*a scale > 0"):
        load_config(path, ["optim.encoder_lr_scale=0"])
    # YAML syntax errors on one line, with where and what
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ndata:\n  split: [1, 2\nepochs: 3\n")
    with pytest.raises(ConfigError, match=r"not valid YAML: line 4, column 7: .*expected ','") as e:
        load_config(broken)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"override 'data.split=\[1, 2'.*not valid YAML"):
        load_config(path, ["data.split=[1, 2"])
    with pytest.raises(
        ConfigError,
        match=r"loss.dise: unknown loss; expected some of ce, dice, focal, jaccard, lovasz",
    ):
        load_config(path, ["loss={dise: 1}"])
    with pytest.raises(ConfigError, match="batch_size: expected int, got 'many'"):
        load_config(path, ["batch_size=many"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(path, ["epochs"])


def test_bad_data_is_reported(tmp_path, dubai_root) -> None:
    with pytest.raises(Exception, match="not a folder; expected the Dubai dataset folder"):
        train(load_config(tiny(tmp_path, tmp_path / "empty"), []), progress=False)
    with pytest.raises(ConfigError, match="class_weights: 2 weight"):
        train(
            load_config(
                tiny(tmp_path, dubai_root),
                ["class_weights=[1, 2]", "output=" + str(tmp_path / "r2")],
            ),
            progress=False,
        )


def test_imagenet_offline_names_the_local_alternative(tmp_path, dubai_root) -> None:
    from geoseg.errors import WeightsError

    cfg = load_config(
        tiny(tmp_path, dubai_root),
        ["model.encoder_weights=imagenet", "output=" + str(tmp_path / "r3")],
    )
    with pytest.raises(WeightsError, match=r"offline.*--encoder-weights path/to/encoder"):
        train(cfg, progress=False)
    assert not (tmp_path / "r3").exists()  # a refused run leaves no folder behind


def test_a_refused_overwrite_keeps_the_earlier_run(tmp_path, dubai_root) -> None:
    from geoseg.errors import WeightsError

    earlier = tmp_path / "r4"
    earlier.mkdir()
    (earlier / "model.safetensors").write_bytes(b"weights of an earlier run")
    cfg = load_config(
        tiny(tmp_path, dubai_root),
        ["model.encoder_weights=imagenet", "output=" + str(earlier)],
    )
    with pytest.raises(WeightsError):
        train(cfg, progress=False, overwrite=True)
    assert (earlier / "model.safetensors").read_bytes() == b"weights of an earlier run"


def test_bundled_default_config_is_valid() -> None:
    from geoseg.training.config import resolve_config

    cfg = load_config(resolve_config("dubai-default"))
    assert cfg.data.kind == "dubai" and cfg.data.split == {
        "val": [],
        "test": [8],
    }  # tiles 1-7 train
    assert cfg.model.encoder_weights == "efficientnet-lite0-imagenet" and cfg.data.scale == [
        0.6,
        2.0,
    ]
    fast = load_config(resolve_config("dubai-fast"))
    assert fast.data.split == {"val": [1], "test": [8]} and fast.model.encoder_weights is None


@pytest.mark.slow
def test_train_spacenet6_sar_with_edge_targets(tmp_path, sn6_root) -> None:
    cfg = load_config(
        None,
        [
            f"data.root={sn6_root}",
            "data.kind=spacenet6",
            "data.patch_size=64",
            "data.samples_per_epoch=4",
            "data.split={val: 0.25}",
            "data.target=footprint-edge-contact",
            "epochs=1",
            "batch_size=2",
            "model.encoder=resnet18",
            "model.kwargs={encoder_depth: 3, decoder_channels: [16, 8, 8]}",
            "logger=[csv]",
            f"output={tmp_path / 'sn6'}",
            "tile_size=64",
            "overlap=16",
        ],
    )
    result = train(cfg, progress=False)
    config = read_config(result.checkpoint)
    assert config.band_names == ("HH", "HV", "VH", "VV")
    assert config.classes.names == ["background", "building", "edge", "contact"]
    assert config.normalization.sar_db and config.training["data"]["split"]["by"] == "location"


@pytest.mark.slow
def test_evaluate_building_model_reports_spacenet_metric(tmp_path, sn6_root) -> None:
    from geoseg.evaluation.evaluate import evaluate, pairs_from_config

    cfg = load_config(
        None,
        [
            f"data.root={sn6_root}",
            "data.kind=spacenet6",
            "data.product=PS-RGB",
            "data.patch_size=64",
            "data.samples_per_epoch=8",
            "data.split={val: 0.25}",
            "epochs=2",
            "batch_size=4",
            "optim.lr=0.01",
            "model.encoder=resnet18",
            "model.kwargs={encoder_depth: 3, decoder_channels: [16, 8, 8]}",
            "logger=[csv]",
            f"output={tmp_path / 'b'}",
            "tile_size=64",
            "overlap=16",
        ],
    )
    result = train(cfg, progress=False)
    pairs = pairs_from_config(cfg, "val")
    assert pairs and pairs[0].footprints  # true footprints from the GeoJSON, in pixel coordinates
    report = evaluate(result.checkpoint, pairs, out_dir=tmp_path / "eval")
    assert report.buildings is not None and report.buildings.fn + report.buildings.tp == 3 * len(
        pairs
    )
    out = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    b = report.buildings
    f1 = 2 * b.tp / (2 * b.tp + b.fp + b.fn) if b.tp else 0.0
    assert out["spacenet"]["spacenet_score"] == pytest.approx(100 * f1, abs=1e-3)
    assert (out["spacenet"]["tp"], out["spacenet"]["fp"], out["spacenet"]["fn"]) == (
        b.tp,
        b.fp,
        b.fn,
    )
    assert "SpaceNet metric" in report.table()


@pytest.mark.slow
def tiny_geotiff(image: Path) -> list[str]:
    """Overrides for a one-epoch run of a small U-Net on the GeoTIFF pair beside ``image``."""
    return [
        f"data.root={image.parent.parent}",
        "data.kind=geotiff",
        "data.patch_size=32",
        "data.samples_per_epoch=4",
        "data.split={val: 0.0}",
        "epochs=1",
        "batch_size=2",
        "model.encoder=resnet18",
        "model.kwargs={encoder_depth: 3, decoder_channels: [16, 8, 8]}",
        "logger=[csv]",
        "tile_size=64",
        "overlap=16",
    ]


@pytest.mark.slow
def test_training_learns_a_learnable_pair(tmp_path, geotiff_pair) -> None:
    import csv

    image, _ = geotiff_pair  # each class has its own brightness: a U-Net learns it in a few epochs
    overrides = [*tiny_geotiff(image), f"output={tmp_path / 'learn'}", "seed=0"]
    overrides += ["epochs=4", "data.samples_per_epoch=16", "batch_size=4", "optim.lr=0.01"]
    result = train(load_config(None, overrides), progress=False)
    with (result.run_dir / "metrics.csv").open(encoding="utf-8") as f:
        losses = [float(r["train_loss_epoch"]) for r in csv.DictReader(f) if r["train_loss_epoch"]]
    assert len(losses) == 4, losses
    # seeded: about 1.0 -> 0.41 -> 0.47 -> 0.25 here; the last two epochs well below the first
    assert max(losses[-2:]) < 0.6 * losses[0], losses


def test_train_geotiff_pairs(tmp_path, geotiff_pair) -> None:
    image, _ = geotiff_pair
    cfg = load_config(None, [*tiny_geotiff(image), f"output={tmp_path / 'gt'}"])
    result = train(cfg, progress=False)
    config = read_config(result.checkpoint)
    assert config.in_channels == 3 and config.num_classes == 3 and config.nodata == 0
    # the files' own dtype and pixel size, not those of the float32 arrays patches are cut from
    assert config.band_dtype == "uint8" and config.gsd == 1.0
    # so the model takes its own training imagery without a warning, even under --strict
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputCompatibilityWarning)
        predict_raster(image, tmp_path / "own.tif", result.checkpoint, strict=True)


@pytest.mark.slow
def test_wandb_logger_records_an_offline_run(tmp_path, dubai_root, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = load_config(tiny(tmp_path, dubai_root), ["epochs=1", "logger=[csv, wandb]"])
    result = train(cfg, progress=False)  # wandb is in the dev extra: the real logger runs
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*")), (
        "an offline W&B run was recorded"
    )
    assert result.checkpoint.is_file()


def test_wandb_logger_without_wandb_is_a_clear_error(tmp_path, dubai_root, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # what an installation without it sees
    cfg = load_config(tiny(tmp_path, dubai_root), ["epochs=1", "logger=[csv, wandb]"])
    with pytest.raises(ConfigError, match=r"pip install 'geoseg\[wandb\]'"):
        train(cfg, progress=False)


def test_fine_tune_starts_from_a_checkpoint(tmp_path, geotiff_pair) -> None:
    image, _ = geotiff_pair
    common = tiny_geotiff(image)
    first = train(load_config(None, [*common, f"output={tmp_path / 'a'}"]), progress=False)
    start = load_checkpoint(first.checkpoint)
    # a learning rate of 1e-30 keeps the weights (batch norm statistics still move): they must be
    # the checkpoint's, not a fresh initialisation
    tuned = train(
        load_config(
            None,
            [
                *common,
                f"output={tmp_path / 'b'}",
                f"model.init={first.checkpoint}",
                "optim.lr=1e-30",
            ],
        ),
        progress=False,
    )
    after = load_checkpoint(tuned.checkpoint)
    weights = {k: v for k, v in start.model.state_dict().items() if k.endswith(".weight")}
    for name, value in weights.items():
        assert np.array_equal(value.numpy(), after.model.state_dict()[name].numpy()), name
    assert after.config.normalization == start.config.normalization
    assert after.config.training["init"]["checkpoint"] == Path(first.checkpoint).name
    with pytest.raises(
        ConfigError,
        match=r"model.init: model.safetensors is unet-resnet18 .*\[8, 8, 8\].*model.architecture",
    ):
        train(
            load_config(
                None,
                [
                    *common,
                    f"output={tmp_path / 'c'}",
                    f"model.init={first.checkpoint}",
                    "model.kwargs={encoder_depth: 3, decoder_channels: [8, 8, 8]}",
                ],
            ),
            progress=False,
        )
