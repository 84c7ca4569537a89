"""Self-describing checkpoints: safetensors weights plus the JSON model config. Never unpickles.

Two layouts are read and written:

* one file ``model.safetensors`` whose header metadata holds the config (``geoseg_config``);
* a folder holding ``model.safetensors`` and ``config.json`` (as ``save_pretrained`` does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geoseg.errors import CheckpointError
from geoseg.io.atomic import atomic_output
from geoseg.models.config import ModelConfig, _files, read_config
from geoseg.models.registry import build_model

__all__ = [
    "LoadedModel",
    "convert_checkpoint",
    "load_checkpoint",
    "model_from_config",
    "read_config",
    "save_checkpoint",
]


@dataclass
class LoadedModel:
    """A network with the config that describes its inputs and outputs."""

    model: nn.Module
    config: ModelConfig


def model_from_config(config: ModelConfig) -> nn.Module:
    """Build the (randomly initialised) network a config describes."""
    return build_model(
        config.architecture,
        config.encoder,
        in_channels=config.in_channels,
        classes=config.num_classes,
        encoder_weights=None,
        **config.model_kwargs,
    )


def save_checkpoint(
    model: nn.Module,
    config: ModelConfig,
    path: str | os.PathLike[str],
    *,
    storage: str | None = None,
) -> Path:
    """Save weights and config; a path ending in ``.safetensors`` gives one file, else a folder.

    The file is written under a temporary name and renamed, so a crash never leaves half a
    checkpoint under the final name. ``storage="float16"`` (or ``"bfloat16"``) halves the file:
    weights are stored in that type (batch-norm statistics stay float32) and loading restores
    the model's own compute dtype.
    """
    from safetensors.torch import save_file

    p = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if storage is not None:
        dtype = {
            "float16": torch.float16,
            "bfloat16": torch.bfloat16,
            "float32": torch.float32,
        }.get(storage)
        if dtype is None:
            raise CheckpointError(f"storage {storage!r}: expected float16, bfloat16 or float32")
        state = {
            k: v.to(dtype)
            if v.is_floating_point() and not k.endswith(("running_mean", "running_var"))
            else v
            for k, v in state.items()
        }
    if p.suffix == ".safetensors":
        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(p) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "geoseg_config": config.to_json()})
        return p
    p.mkdir(parents=True, exist_ok=True)
    with (
        atomic_output(p / "model.safetensors") as tmp,
        atomic_output(p / "config.json") as tmp_config,
    ):
        save_file(state, str(tmp), metadata={"format": "pt"})
        tmp_config.write_text(config.to_json(), encoding="utf-8")
    return p


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Load a checkpoint into a ready-to-run model (``eval()`` mode).

    Raises:
        CheckpointError: missing file, a pickle, a newer format, or weights that do not fit.
    """
    from safetensors.torch import load_file

    config = read_config(path)
    weights, _ = _files(Path(path))
    model = model_from_config(config)
    try:
        state: dict[str, Any] = load_file(str(weights), device="cpu")
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"{path}: weights do not fit the model its config describes ({first})"
        ) from None
    model.eval().to(device)
    return LoadedModel(model, config)


def convert_checkpoint(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    storage: str | None = None,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``src`` again as ``dst``: weights stored as ``storage`` (see :func:`save_checkpoint`),
    ``metrics`` (e.g. held-out test scores) added to the config's metrics and ``training`` keys
    replacing those of its training record."""
    import dataclasses

    loaded = load_checkpoint(src)
    config = loaded.config
    if metrics:
        config = dataclasses.replace(config, metrics={**config.metrics, **metrics})
    if training:
        config = dataclasses.replace(config, training={**config.training, **training})
    return save_checkpoint(loaded.model, config, dst, storage=storage)
