"""The self-describing model config stored beside the weights. JSON only, no torch."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from geoseg._version import __version__
from geoseg.classes import ClassTable
from geoseg.errors import CheckpointError
from geoseg.normalize import Normalization

__all__ = ["FORMAT_VERSION", "ModelConfig", "checkpoint_files", "read_config"]

_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".bin")

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and feed it correctly.

    Attributes:
        architecture: registry name (``unet``, ``unetplusplus``, ``fpn``, ``deeplabv3plus``...).
        encoder: encoder name (``vgg11``, ``resnet34``, ``efficientnet-b0``...).
        in_channels: number of input bands.
        classes: class ids, names and colours.
        band_names: names of the input bands, in model order (e.g. ``["red", "green", "blue"]``).
        band_dtype: dtype of the imagery the model was trained on (e.g. ``"uint8"``).
        normalization: how raw values become model inputs.
        nodata: input nodata value, if any.
        gsd: ground sample distance of the training imagery, in metres.
        tile_size: training tile size (pixels); the default for prediction.
        overlap: recommended overlap (pixels) for prediction.
        output_stride: input sizes must be multiples of this (32 for a 5-stage U-Net).
        tiling: how prediction lays, fills and combines tiles, a name from
            :data:`geoseg.inference.tiles.TILINGS`: ``geoseg``, or ``deepness`` in a model
            exported for QGIS Deepness (its grid, so that both runtimes give the same answer).
        model_kwargs: extra keyword arguments for the architecture (``encoder_depth``...).
        metrics: validation metrics recorded at training time.
        training: free-form description of the training data and run.
        variants: other forms of the network the checkpoint carries, by name: ``int8`` (the
            scales of a calibrated quantized network, how it was calibrated and how closely it
            agrees with fp32; see :mod:`geoseg.inference.int8`).
        geoseg_version: version that wrote the checkpoint.
        format_version: checkpoint format version.
    """

    architecture: str
    encoder: str
    in_channels: int
    classes: ClassTable
    band_names: tuple[str, ...] = ()
    band_dtype: str | None = None
    normalization: Normalization = field(default_factory=Normalization)
    nodata: float | None = None
    gsd: float | None = None
    tile_size: int = 512
    overlap: int = 128
    output_stride: int = 32
    tiling: str = "geoseg"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, Any] = field(default_factory=dict)
    geoseg_version: str = __version__
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.band_names and len(self.band_names) != self.in_channels:
            raise CheckpointError(
                f"band_names lists {len(self.band_names)} band(s) but in_channels is "
                f"{self.in_channels}"
            )
        nb = self.normalization.bands
        if nb is not None and nb != self.in_channels:
            raise CheckpointError(
                f"normalization has statistics for {nb} band(s) but in_channels is "
                f"{self.in_channels}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def replace(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "geoseg_version": self.geoseg_version,
            "architecture": self.architecture,
            "encoder": self.encoder,
            "in_channels": self.in_channels,
            "band_names": list(self.band_names),
            "band_dtype": self.band_dtype,
            "normalization": self.normalization.to_dict(),
            "nodata": self.nodata,
            "gsd": self.gsd,
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "output_stride": self.output_stride,
            **({} if self.tiling == "geoseg" else {"tiling": self.tiling}),
            "classes": self.classes.to_list(),
            "model_kwargs": self.model_kwargs,
            "metrics": self.metrics,
            "training": self.training,
            **({"variants": self.variants} if self.variants else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> ModelConfig:
        version = d.get("format_version")
        if not isinstance(version, int):
            raise CheckpointError(
                f"{source}: no integer 'format_version'; expected a geoseg model config"
            )
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: checkpoint format {version} was written by geoseg "
                f"{d.get('geoseg_version', '?')}, this geoseg {__version__} reads format <= "
                f"{FORMAT_VERSION}; upgrade geoseg (pip install -U geoseg)"
            )
        missing = [k for k in ("architecture", "encoder", "in_channels", "classes") if k not in d]
        if missing:
            raise CheckpointError(
                f"{source}: config lacks {missing}; expected a config written by "
                "geoseg.save_checkpoint"
            )
        try:
            return cls(
                architecture=str(d["architecture"]),
                encoder=str(d["encoder"]),
                in_channels=int(d["in_channels"]),
                classes=ClassTable.from_list(d["classes"]),
                band_names=tuple(d.get("band_names") or ()),
                band_dtype=d.get("band_dtype"),
                normalization=Normalization.from_dict(d.get("normalization") or {}),
                nodata=d.get("nodata"),
                gsd=d.get("gsd"),
                tile_size=int(d.get("tile_size", 512)),
                overlap=int(d.get("overlap", 128)),
                output_stride=int(d.get("output_stride", 32)),
                tiling=str(d.get("tiling", "geoseg")),
                model_kwargs=dict(d.get("model_kwargs") or {}),
                metrics=dict(d.get("metrics") or {}),
                training=dict(d.get("training") or {}),
                variants=dict(d.get("variants") or {}),
                geoseg_version=str(d.get("geoseg_version", "?")),
                format_version=version,
            )
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: malformed config ({exc})") from None

    @classmethod
    def from_json(cls, text: str, *, source: str = "config") -> ModelConfig:
        try:
            return cls.from_dict(json.loads(text), source=source)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{source}: config is not valid JSON ({exc})") from None


def checkpoint_files(path: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """The weights file of a checkpoint (a ``.safetensors`` file or a checkpoint folder) and its
    config sidecar, if any.

    Raises:
        CheckpointError: nothing there, a folder without weights, or a pickle.
    """
    path = Path(path)
    if path.is_dir():
        weights = path / "model.safetensors"
        cfg = path / "config.json"
        if not weights.exists():
            raise CheckpointError(
                f"{path}: folder has no model.safetensors; expected a geoseg checkpoint folder"
            )
        return weights, cfg if cfg.exists() else None
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: is a pickle ({path.suffix}); geoseg never unpickles checkpoints. Expected a "
            ".safetensors checkpoint: load the state dict yourself with torch.load(..., "
            "weights_only=True) and save it with geoseg.save_checkpoint(model, config, "
            "'model.safetensors')"
        )
    if not path.exists():
        raise CheckpointError(
            f"{path}: no such checkpoint; expected a .safetensors file, a checkpoint folder or a "
            "bundled model (quality, fast)"
        )
    sidecar = path.with_suffix(".json")
    return path, sidecar if sidecar.exists() else None


def read_config(path: str | os.PathLike[str]) -> ModelConfig:
    """Read only the config of a checkpoint (cheap: no weights, no torch model)."""
    weights, cfg = checkpoint_files(path)
    if cfg is not None:
        return ModelConfig.from_json(cfg.read_text(encoding="utf-8"), source=str(cfg))
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise CheckpointError(
            f"{weights}: not a readable safetensors file ({exc}); expected a geoseg checkpoint"
        ) from None
    if "geoseg_config" not in meta:
        raise CheckpointError(
            f"{weights}: safetensors file carries no geoseg config; expected one written by "
            "geoseg.save_checkpoint"
        )
    return ModelConfig.from_json(meta["geoseg_config"], source=str(weights))
