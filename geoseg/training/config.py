"""Training configs: YAML in, validated dataclasses out, with ``key.sub=value`` overrides.

Every unknown key and every bad value is reported with its dotted name and what is allowed, so a
typo in a config fails before any data is read.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from geoseg.datasets.kinds import DataSource
from geoseg.errors import ConfigError, refuse_extra_keys

__all__ = [
    "DataConfig",
    "ModelSpec",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "resolve_config",
]


@dataclass(frozen=True)
class DataConfig(DataSource):
    """Where samples come from (the :class:`~geoseg.datasets.DataSource` keys) and how they are cut.

    ``kind`` is any registered dataset kind (:func:`geoseg.datasets.register_dataset_kind`).
    ``split`` depends on it: for ``dubai`` the tile numbers held out (``{val: [1], test: [8]}``);
    for ``geotiff`` and ``spacenet6`` the fraction of locations held out
    (``{val: 0.2, test: 0.0}``),
    split by location so overlapping tiles stay on one side.

    With ``augment``, optical patches get flips and rotations plus ``brightness``/``contrast``
    jitter, and may imitate other sensors: ``scale: [low, high]`` (window-to-patch size factors,
    e.g. ``[0.6, 2.0]`` for 0.3-1 m imagery from 0.5 m training data), ``saturation``, ``blur``,
    ``haze`` and ``jpeg`` (probabilities) and ``noise`` (see
    :class:`~geoseg.datasets.augment.Augment`).
    """

    patch_size: int = 256
    samples_per_epoch: int = 1000
    val_stride: int | None = None
    sampler: Literal["random", "balanced"] = "random"
    balance_power: float = 0.5
    max_nodata: float = 0.5
    normalization: Literal["meanstd", "percentile", "scale"] = "meanstd"
    augment: bool = True
    brightness: float = 0.1
    contrast: float = 0.1
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    saturation: float = 0.0
    blur: float = 0.0
    haze: float = 0.0
    jpeg: float = 0.0
    noise: float = 0.0
    num_workers: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """The network. ``init``: a geoseg checkpoint (path, or a bundled model's name such as
    ``quality``) whose weights and input normalization start the run, to fine-tune it; its
    architecture, encoder, ``kwargs``, band count and class names must be this run's."""

    architecture: str = "unet"
    encoder: str = "resnet34"
    encoder_weights: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: Literal["onecycle", "cosine", "none"] = "onecycle"
    # the encoder learns at ``lr * encoder_lr_scale``: below 1 a pretrained encoder keeps more of
    # what it learned (ImageNet features) while the decoder and head learn at the full rate
    encoder_lr_scale: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run. ``loss`` maps loss names to weights (summed)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: dict[str, float] = field(default_factory=lambda: {"ce": 1.0})
    class_weights: list[float] | None = None
    batch_size: int = 8
    epochs: int = 10
    precision: Literal["fp32", "bf16", "16-mixed", "bf16-mixed"] = "fp32"
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = "auto"
    seed: int = 0
    grad_clip: float | None = 1.0
    patience: int | None = None
    monitor: str = "val_miou"
    tile_size: int = 512
    overlap: int = 64
    logger: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])
    output: str = "runs/train"
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _allowed(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    return None


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where or 'config'}: expected a mapping of keys, got {type(raw).__name__} {raw!r}"
        )
    hints = typing.get_type_hints(cls)
    refuse_extra_keys(
        raw,
        (f.name for f in dataclasses.fields(cls)),
        lambda extra, known: ConfigError(
            f"{where + '.' if where else ''}{extra[0]}: unknown key; allowed keys here: {known}"
        ),
    )
    values = {}
    for key, value in raw.items():
        dotted = f"{where}.{key}" if where else key
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            values[key] = _build(typing.cast(type, tp), value or {}, dotted)
            continue
        values[key] = _check(dotted, tp, value)
    return cls(**values)


def _check(dotted: str, tp: Any, value: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None:
        if type(None) in typing.get_args(tp):
            return None
        raise ConfigError(f"{dotted}: may not be empty")
    allowed = next((a for a in map(_allowed, [tp, *args]) if a), None)
    if allowed is not None:
        if value not in allowed:
            raise ConfigError(
                f"{dotted}: {value!r} is not allowed; expected one of "
                f"{', '.join(map(str, allowed))}"
            )
        return value
    base = typing.get_origin(tp) or tp
    if base in (typing.Union, types.UnionType):  # Optional[X] / X | None: check X
        base = typing.get_origin(args[0]) or args[0]
    try:
        if base is int and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base is float and not isinstance(value, bool):
            return float(value)
        if base is str:
            return str(value)
        if base is bool and isinstance(value, bool):
            return value
        if base is list and isinstance(value, list | tuple):
            return list(value)
        if base is dict and isinstance(value, dict):
            return dict(value)
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{dotted}: expected {getattr(base, '__name__', base)}, got {value!r}")


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: where (1-based line and column) and what."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = " ".join(
        str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p
    )
    return where + (what or " ".join(str(exc).split()))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.01"`` to (``["optim", "lr"]``, 0.01); values are read as YAML."""
    if "=" not in text:
        raise ConfigError(
            f"override {text!r}: expected KEY=VALUE, e.g. optim.lr=0.01 or data.root=/data/dubai"
        )
    key, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"override {text!r}: the value is not valid YAML ({yaml_problem(exc)}); quote it, "
            "e.g. data.root='/data/my [2024] set'"
        ) from None
    return key.strip().split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with ``key.sub=value`` overrides applied (values read as YAML)."""
    out = dict(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[path[-1]] = value
    return out


def resolve_config(name: str | os.PathLike[str]) -> Path:
    """A config path, or the bundled config of that name (``dubai-default``)."""
    p = Path(name)
    if p.is_file():
        return p
    bundled = Path(__file__).resolve().parent.parent / "configs" / f"{p.stem}.yaml"
    if bundled.is_file() and p.suffix in ("", ".yaml", ".yml") and len(p.parts) == 1:
        return bundled
    known = sorted(q.stem for q in bundled.parent.glob("*.yaml"))
    raise ConfigError(
        f"{name}: config file not found; give a YAML path or a bundled config ({', '.join(known)})"
    )


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    cfg: TrainConfig = _build(TrainConfig, raw, "")
    _validate(cfg)
    return cfg


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> TrainConfig:
    """Read a YAML config (a path or a bundled name; defaults when None) and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = resolve_config(path)
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {yaml_problem(exc)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{p}: expected a YAML mapping at the top level, got {type(raw).__name__}"
            )
    return config_from_dict(apply_overrides(raw, list(overrides)))


def _validate(cfg: TrainConfig) -> None:
    from geoseg.datasets.kinds import dataset_kind
    from geoseg.training.losses import LOSSES

    dataset_kind(cfg.data.kind)  # a registered kind, or a ConfigError listing them
    for name, weight in cfg.loss.items():
        if name not in LOSSES:
            raise ConfigError(
                f"loss.{name}: unknown loss; expected some of {', '.join(sorted(LOSSES))}"
            )
        if not isinstance(weight, int | float) or weight < 0:
            raise ConfigError(f"loss.{name}: expected a weight >= 0, got {weight!r}")
    if not cfg.loss:
        raise ConfigError(
            f"loss: name at least one loss, e.g. {{ce: 1.0, dice: 1.0}}; known: "
            f"{', '.join(sorted(LOSSES))}"
        )
    checks = [
        ("batch_size", cfg.batch_size >= 1, "an integer >= 1"),
        ("epochs", cfg.epochs >= 1, "an integer >= 1"),
        ("optim.lr", cfg.optim.lr > 0, "a learning rate > 0"),
        ("optim.encoder_lr_scale", cfg.optim.encoder_lr_scale > 0, "a scale > 0"),
        ("data.patch_size", cfg.data.patch_size >= 32, "at least 32 pixels"),
        ("data.samples_per_epoch", cfg.data.samples_per_epoch >= 1, "an integer >= 1"),
        ("data.max_nodata", 0 <= cfg.data.max_nodata <= 1, "a fraction in [0, 1]"),
        (
            "data.scale",
            len(cfg.data.scale) == 2
            and 0.25 <= min(cfg.data.scale) <= max(cfg.data.scale) <= 4
            and cfg.data.scale[0] <= cfg.data.scale[1],
            "[low, high] window-to-patch factors with 0.25 <= low <= high <= 4",
        ),
        *(
            (f"data.{k}", 0 <= getattr(cfg.data, k) <= 1, "a probability or fraction in [0, 1]")
            for k in ("saturation", "blur", "haze", "jpeg", "noise")
        ),
        ("overlap", 0 <= cfg.overlap < cfg.tile_size, "pixels in [0, tile_size)"),
    ]
    for key, ok, what in checks:
        if not ok:
            raise ConfigError(f"{key}: expected {what}")
    for name in cfg.logger:
        if name not in ("csv", "tensorboard", "wandb", "none"):
            raise ConfigError(
                f"logger: {name!r} is not allowed; expected some of csv, tensorboard, wandb, none"
            )
