"""``train``: one call from a config to a self-describing checkpoint, with logs and curves.

A run folder (``cfg.output``) holds ``config.yaml`` (what was asked), ``last.ckpt`` (Lightning
state for resuming, written every epoch and on Ctrl-C), ``best.safetensors`` (the best validation
model so far, a geoseg checkpoint), ``model.safetensors`` (the final export), ``metrics.csv``,
TensorBoard events and ``curves.png``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from geoseg.errors import ConfigError, TrainingError
from geoseg.io.atomic import atomic_output, check_run_folder, claim_folder
from geoseg.training.config import TrainConfig, config_from_dict

if TYPE_CHECKING:  # pragma: no cover
    from geoseg.models.config import ModelConfig

__all__ = ["TrainResult", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    run_dir: Path
    metrics: dict[str, Any]
    epochs: int
    interrupted: bool = False


def _precision(p: str) -> str:
    return {
        "fp32": "32-true",
        "bf16": "bf16-mixed",
        "16-mixed": "16-mixed",
        "bf16-mixed": "bf16-mixed",
    }[p]


RESUME_SAFE = frozenset(
    {"epochs", "patience", "logger", "accelerator", "data.num_workers"}
)  # may change on resume
STATE = "state.json"  # epochs done and whether the run finished


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("data", "model", "optim", "loss"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _read_state(run: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((run / STATE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _merge_history(run: Path, earlier: list[dict[str, str]]) -> None:
    """Put the rows of the runs before a resume back in front of ``metrics.csv``."""
    import csv

    path = run / "metrics.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8"))) if path.is_file() else []
    merged = earlier + rows
    fields: list[str] = []
    for row in merged:
        fields += [k for k in row if k not in fields]
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(merged)


def _prepare_run(cfg: TrainConfig, *, resume: bool, overwrite: bool) -> tuple[Path, Path | None]:
    """The run folder and, on resume, its last checkpoint: checks only, nothing is touched (a new
    run's folder is cleared and made by :func:`_start_run` once the model has been built)."""
    run = Path(cfg.output)
    weights = cfg.model.encoder_weights
    check_run_folder(
        run,
        {
            "data.root": cfg.data.root or None,
            "model.encoder_weights": weights if weights and Path(weights).exists() else None,
            "model.init": cfg.model.init
            if cfg.model.init and Path(cfg.model.init).exists()
            else None,
        },
    )
    saved = run / "config.yaml"
    last = run / "last.ckpt"
    if resume:
        if not last.is_file():
            raise TrainingError(
                f"{run}: nothing to resume (no last.ckpt); start the run without --resume"
            )
        before = yaml.safe_load(saved.read_text(encoding="utf-8")) if saved.is_file() else None
        now = json.loads(json.dumps(cfg.to_dict()))
        if before is not None:  # checked before anything in the run folder is touched
            old, new = _flat(before), _flat(now)
            changed = sorted(
                k for k in set(old) | set(new) if k not in RESUME_SAFE and old.get(k) != new.get(k)
            )
            if changed:
                raise TrainingError(
                    f"{run}: cannot resume with a different config (changed: "
                    f"{', '.join(changed)}); only {', '.join(sorted(RESUME_SAFE))} may change on "
                    "resume. Resume with the saved config (geoseg train --resume -o RUN) or start "
                    "a new output folder"
                )
        state = _read_state(run)
        done = int(state.get("epochs_done", 0))
        if state.get("finished") and cfg.epochs <= done:
            raise TrainingError(
                f"{run}: this run is finished ({done} of {done} epochs); to train longer resume "
                f"with more epochs (geoseg train --resume -o {run} --epochs {done + 1}), or start "
                "a new output folder"
            )
        return run, last
    if run.exists() and any(run.iterdir()) and not overwrite:
        raise TrainingError(
            f"{run}: run folder exists and is not empty; pass --resume to continue it, "
            "--overwrite to start again, or choose another output"
        )
    return run, None


def _start_run(run: Path) -> None:
    """An empty run folder (an earlier run in it goes: --overwrite was checked)."""
    run.mkdir(parents=True, exist_ok=True)
    for p in run.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _loggers(cfg: TrainConfig, run: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    out: list[Any] = []
    for name in cfg.logger:
        if name == "csv":
            out.append(CSVLogger(str(run), name="", version=""))
        elif name == "tensorboard":
            out.append(TensorBoardLogger(str(run), name="", version="", default_hp_metric=False))
        elif name == "wandb":
            try:
                import wandb  # noqa: F401
                from lightning.pytorch.loggers import WandbLogger
            except ImportError:
                raise ConfigError(
                    "logger: wandb is not installed; pip install 'geoseg[wandb]' (or wandb), or "
                    "use csv/tensorboard"
                ) from None
            offline = os.environ.get("WANDB_MODE", "") != "online" and not os.environ.get(
                "WANDB_API_KEY"
            )
            out.append(
                WandbLogger(
                    project="geoseg", name=cfg.name or run.name, save_dir=str(run), offline=offline
                )
            )
    return out


def _provenance(cfg: TrainConfig, init: tuple[Path, ModelConfig] | None) -> Any:
    """What the run folder records: the model trained (and the checkpoint it starts from), the
    whole config (every key changes the weights), the data."""
    from geoseg.models.identity import model_identity
    from geoseg.provenance import Provenance

    start = model_identity(init[0]) if init is not None else None
    return Provenance(
        model=f"{cfg.model.architecture}-{cfg.model.encoder}"
        + (f" from {start.label}" if start is not None else ""),
        model_digest=start.digest if start is not None else None,
        options=json.loads(json.dumps(cfg.to_dict(), default=str)),
        inputs=(str(cfg.data.root),),
    )


def _init_checkpoint(cfg: TrainConfig) -> tuple[Path, ModelConfig] | None:
    """The checkpoint ``model.init`` names (a path or a bundled model), with its config."""
    if not cfg.model.init:
        return None
    from geoseg.models.config import read_config
    from geoseg.models.default import named_model

    path = Path(named_model(cfg.model.init))
    return path, read_config(path)


def _load_init(
    model: Any,
    cfg: TrainConfig,
    class_names: Sequence[str],
    bands: int,
    path: Path,
    init: ModelConfig,
) -> None:
    """Start ``model`` from the weights of the checkpoint at ``path``, refusing one of another
    shape (network, bands or classes)."""
    from geoseg.models.checkpoint import read_state

    ours = (cfg.model.architecture, cfg.model.encoder, dict(cfg.model.kwargs), bands)
    theirs = (init.architecture, init.encoder, dict(init.model_kwargs), init.in_channels)
    if ours != theirs or tuple(class_names) != tuple(init.classes.names):
        raise ConfigError(
            f"model.init: {path.name} is {init.architecture}-{init.encoder} {init.model_kwargs} "
            f"with {init.in_channels} band(s) and classes {', '.join(init.classes.names)}, but "
            f"this run builds {cfg.model.architecture}-{cfg.model.encoder} {cfg.model.kwargs} "
            f"with {bands} band(s) and classes {', '.join(class_names)}; set model.architecture, "
            "model.encoder and model.kwargs to the checkpoint's, on data with its bands and classes"
        )
    model.load_state_dict(read_state(path))


def train(
    cfg: TrainConfig | dict[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
) -> TrainResult:
    """Train the model ``cfg`` describes and export the best validation checkpoint.

    Args:
        cfg: a :class:`TrainConfig` or the dict form of one.
        resume: continue the run in ``cfg.output`` from its ``last.ckpt`` (same config required).
        overwrite: delete an existing, non-empty run folder first.
        progress: show a progress bar.
        max_steps: stop after this many optimizer steps (smoke tests).

    Raises:
        ConfigError, DatasetError, TrainingError: bad config, no data, or a run that cannot resume.
    """
    import lightning as L

    from geoseg.training.data import build_data

    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    run, ckpt_path = _prepare_run(cfg, resume=resume, overwrite=overwrite)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    init = _init_checkpoint(cfg)
    data = build_data(cfg, normalization=init[1].normalization if init else None)
    model, stride = _network(cfg, data, init)
    # everything that can refuse the config has run: only now is the run folder touched, held
    # against a second run into it, and checked again now that nothing else can write there
    with claim_folder(run, "train"):
        run, ckpt_path = _prepare_run(cfg, resume=resume, overwrite=overwrite)
        if ckpt_path is None:
            _start_run(run)
        try:
            return _run(cfg, run, ckpt_path, data, (model, stride), init, progress, max_steps)
        except BaseException:
            # a new run that failed (a full disk) or stopped before its first checkpoint leaves
            # nothing, so the same command can run again; one with a checkpoint stays to resume
            if ckpt_path is None and not (run / "last.ckpt").exists():
                shutil.rmtree(run, ignore_errors=True)
            raise


def _run(
    cfg: TrainConfig,
    run: Path,
    ckpt_path: Path | None,
    data: Any,
    network: tuple[Any, int],
    init: Any,
    progress: bool,
    max_steps: int | None,
) -> TrainResult:
    """The run itself, in its claimed folder: the config and provenance, the task, the fit and
    the export."""
    from geoseg.training.losses import build_loss
    from geoseg.training.task import SegmentationTask

    model, stride = network
    earlier = _earlier_history(run, ckpt_path)
    with atomic_output(run / "config.yaml") as tmp:
        tmp.write_text(
            yaml.safe_dump(json.loads(json.dumps(cfg.to_dict())), sort_keys=False),
            encoding="utf-8",
        )
    _provenance(cfg, init).write(run)
    describe = _describer(cfg, data, stride, init)
    n = len(data.classes)
    loss = build_loss(cfg.loss, class_weights=cfg.class_weights, num_classes=n)
    task = SegmentationTask(
        model, loss, n, cfg.optim, class_names=data.classes.names, max_epochs=cfg.epochs
    )
    train_loader, val_loader = data.loaders(cfg.batch_size, cfg.data.num_workers)
    monitor = cfg.monitor if val_loader is not None else "train_loss_epoch"
    callbacks = _callbacks(cfg, run, task, describe, monitor)
    trainer = _trainer(cfg, run, callbacks, progress, max_steps)
    _fit(trainer, task, train_loader, val_loader, ckpt_path, run)
    return _finish(cfg, run, task, trainer, describe, earlier)


def _network(cfg: TrainConfig, data: Any, init: Any) -> tuple[Any, int]:
    """The network to train (its initial weights loaded when asked) and its output stride; the
    sizes and the encoder's learning-rate scale are checked against it."""
    from geoseg.models.registry import build_model
    from geoseg.training.task import parameter_groups

    model = build_model(
        cfg.model.architecture,
        cfg.model.encoder,
        in_channels=len(data.band_names),
        classes=len(data.classes),
        encoder_weights=cfg.model.encoder_weights,
        **cfg.model.kwargs,
    )
    if init is not None:
        _load_init(model, cfg, data.classes.names, len(data.band_names), *init)
    stride = 2 ** int(cfg.model.kwargs.get("encoder_depth", 5))
    if cfg.data.patch_size % stride or cfg.tile_size % stride:
        raise ConfigError(
            f"data.patch_size ({cfg.data.patch_size}) and tile_size ({cfg.tile_size}) must be "
            f"multiples of the model's output stride {stride}"
        )
    parameter_groups(model, cfg.optim.lr, cfg.optim.encoder_lr_scale)  # refuses a bad scale now
    return model, stride


def _earlier_history(run: Path, ckpt_path: Path | None) -> list[dict[str, str]]:
    """The metrics a resumed run logged before (Lightning starts metrics.csv over)."""
    if ckpt_path is None or not (run / "metrics.csv").is_file():
        return []
    import csv

    with (run / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _describer(cfg: TrainConfig, data: Any, stride: int, init: Any) -> Callable[..., Any]:
    """``describe(metrics)``: the self-describing config of a checkpoint of this run."""
    from geoseg.models.config import ModelConfig
    from geoseg.models.pretrained import PRETRAINED, pretrained_record

    weights = cfg.model.encoder_weights
    start: dict[str, Any] = (
        {"encoder_weights": pretrained_record(weights)} if weights in PRETRAINED else {}
    )
    if init is not None:
        start["init"] = {"checkpoint": init[0].name, "metrics": init[1].metrics}

    def describe(metrics: dict[str, Any]) -> ModelConfig:
        return ModelConfig(
            architecture=cfg.model.architecture,
            encoder=cfg.model.encoder,
            in_channels=len(data.band_names),
            classes=data.classes,
            band_names=data.band_names,
            band_dtype=data.band_dtype,
            normalization=data.normalization,
            nodata=data.nodata,
            gsd=data.gsd,
            tile_size=cfg.tile_size,
            overlap=cfg.overlap,
            output_stride=stride,
            model_kwargs=dict(cfg.model.kwargs),
            metrics=metrics,
            training={
                "data": data.description,
                "stats": data.stats.to_dict(),
                **start,
                "config": json.loads(json.dumps(cfg.to_dict())),
            },
        )

    return describe


def _callbacks(
    cfg: TrainConfig, run: Path, task: Any, describe: Callable[..., Any], monitor: str
) -> list[Any]:
    """Export the best checkpoint as the monitored figure improves, keep ``last.ckpt`` (also on
    Ctrl-C), and stop early when asked."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

    from geoseg.models.checkpoint import save_checkpoint

    mode = "min" if "loss" in monitor else "max"

    class ExportBest(Callback):
        """Writes best.safetensors whenever the monitored figure improves."""

        best = -math.inf if mode == "max" else math.inf

        def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            value = trainer.callback_metrics.get(monitor)
            if value is None:
                return
            v = float(value)
            if (mode == "max" and v > self.best) or (mode == "min" and v < self.best):
                self.best = v
                metrics = {
                    "epoch": trainer.current_epoch,
                    "monitor": monitor,
                    monitor: v,
                    "validation": task.last_scores,
                }
                save_checkpoint(task.model, describe(metrics), run / "best.safetensors")

        def on_exception(
            self, trainer: L.Trainer, module: L.LightningModule, exc: BaseException
        ) -> None:
            if isinstance(exc, KeyboardInterrupt) and trainer.global_step > 0:
                trainer.save_checkpoint(str(run / "last.ckpt"))

    callbacks: list[Any] = [
        ExportBest(),
        ModelCheckpoint(
            dirpath=str(run),
            filename="last",
            save_last=False,
            save_top_k=1,
            monitor=None,
            enable_version_counter=False,
        ),
    ]
    if cfg.patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience))
    return callbacks


def _trainer(
    cfg: TrainConfig, run: Path, callbacks: list[Any], progress: bool, max_steps: int | None
) -> Any:
    """The Lightning trainer of this run: device, precision, loggers, quiet unless ``-v``."""
    import lightning as L
    import torch

    accelerator = "gpu" if cfg.accelerator == "cuda" else cfg.accelerator
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError(
            "accelerator: gpu asked but no CUDA device is visible; use accelerator=cpu or auto"
        )
    precision = _precision(cfg.precision)
    if precision == "16-mixed" and not torch.cuda.is_available():
        precision = "bf16-mixed"
    if log.getEffectiveLevel() > logging.INFO:
        # Lightning's banners and tips, unless -v; nothing but errors with -q
        for name in (
            "lightning.pytorch",
            "lightning.fabric",
            "lightning.pytorch.utilities.rank_zero",
            "lightning.fabric.utilities.rank_zero",
        ):
            logging.getLogger(name).setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Lightning's checkpoints written as every geoseg output is: under a temporary name in
        the run folder, renamed when complete (Lightning's own write goes through /tmp and a
        copy, which a full disk cuts short under the final name)."""

        def save_checkpoint(
            self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
        ) -> None:
            buffer = io.BytesIO()  # a full disk then fails as an OSError, not torch's C++ one
            torch.save(checkpoint, buffer)
            with atomic_output(Path(path)) as tmp:
                tmp.write_bytes(buffer.getbuffer())

    return L.Trainer(
        plugins=[AtomicCheckpointIO()],
        max_epochs=cfg.epochs,
        max_steps=max_steps or -1,
        accelerator=accelerator,
        devices=1,
        precision=precision,  # type: ignore[arg-type]
        gradient_clip_val=cfg.grad_clip,
        logger=_loggers(cfg, run) or False,
        callbacks=callbacks,
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=str(run),
        num_sanity_val_steps=0,
        log_every_n_steps=10,
    )


def _fit(
    trainer: Any,
    task: Any,
    train_loader: Any,
    val_loader: Any,
    ckpt_path: Path | None,
    run: Path,
) -> None:
    """Run the training loop; Ctrl-C ends in a KeyboardInterrupt that says how to resume."""
    with warnings.catch_warnings():
        for pattern in (
            ".*does not have many workers.*",
            ".*The number of training batches.*",
            ".*exists and is not empty.*",
            ".*dataloader is not resumable.*",
            ".*isinstance.treespec, LeafSpec.*",
        ):
            warnings.filterwarnings("ignore", pattern)
        try:
            trainer.fit(
                task, train_loader, val_loader, ckpt_path=str(ckpt_path) if ckpt_path else None
            )
        except SystemExit:
            if not trainer.interrupted:
                raise
            import signal

            # Lightning ignores further Ctrl-C
            signal.signal(signal.SIGINT, signal.default_int_handler)
            saved = (run / "last.ckpt").is_file()
            raise KeyboardInterrupt(
                f"training stopped; the last checkpoint is {run / 'last.ckpt'}: resume with "
                f"geoseg train --resume -o {run}"
                if saved
                else "training stopped before the first step; nothing to resume"
            ) from None


def _finish(
    cfg: TrainConfig,
    run: Path,
    task: Any,
    trainer: Any,
    describe: Callable[..., Any],
    earlier: list[dict[str, str]],
) -> TrainResult:
    """The run's state, the exported model (the best checkpoint, else the last weights) and its
    curves."""
    from geoseg.models.checkpoint import save_checkpoint
    from geoseg.models.config import read_config

    interrupted = bool(trainer.interrupted)
    if earlier:
        _merge_history(run, earlier)
    with atomic_output(run / STATE) as tmp:
        tmp.write_text(
            json.dumps({"epochs_done": int(trainer.current_epoch), "finished": not interrupted}),
            encoding="utf-8",
        )
    best = run / "best.safetensors"
    final = run / "model.safetensors"
    if best.is_file():
        with atomic_output(final) as tmp:
            shutil.copyfile(best, tmp)
    else:
        save_checkpoint(task.model, describe({"epoch": trainer.current_epoch}), final)
    if "csv" in cfg.logger:
        from geoseg.training.curves import plot_curves

        plot_curves(run / "metrics.csv", run / "curves.png")
    return TrainResult(final, run, read_config(final).metrics, trainer.current_epoch, interrupted)
