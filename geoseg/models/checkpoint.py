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
from geoseg.models.config import ModelConfig, checkpoint_files, read_config
from geoseg.models.digest import file_digest, remember_digest
from geoseg.models.native import native_network
from geoseg.models.registry import build_model

__all__ = [
    "LoadedModel",
    "convert_checkpoint",
    "load_checkpoint",
    "model_from_config",
    "read_config",
    "replace_config",
    "rewrite_checkpoint",
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
    weights are stored in that type (batch-norm statistics stay float32). ``storage="int8"``
    quarters it: convolution and linear weights are stored as int8 with one float32 scale per
    output channel, the rest as float16. Loading restores the model's own compute dtype.
    """
    p = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if storage is not None:
        state = _stored(state, storage)
    if p.suffix == ".safetensors":
        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(p) as tmp:
            _write_tensors(tmp, state, {"format": "pt", "geoseg_config": config.to_json()})
        return p
    p.mkdir(parents=True, exist_ok=True)
    with (
        atomic_output(p / "model.safetensors") as tmp,
        atomic_output(p / "config.json") as tmp_config,
    ):
        _write_tensors(tmp, state, {"format": "pt"})
        tmp_config.write_text(config.to_json(), encoding="utf-8")
    return p


STORAGE = ("float32", "float16", "bfloat16", "int8")
SCALE_SUFFIX = ":int8_scale"  # the per-channel scales of an int8 tensor, stored beside it
_KEEP_FLOAT32 = ("running_mean", "running_var")
_INT8_MIN_SIZE = 1024  # smaller weights are not worth quantizing


def _stored(state: dict[str, torch.Tensor], storage: str) -> dict[str, torch.Tensor]:
    """``state`` as it is written with ``storage`` (see :func:`save_checkpoint`)."""
    if storage not in STORAGE:
        raise CheckpointError(f"storage {storage!r}: expected one of {', '.join(STORAGE)}")
    half = torch.float16 if storage == "int8" else getattr(torch, storage)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not value.is_floating_point() or key.endswith(_KEEP_FLOAT32):
            out[key] = value
        elif storage == "int8" and value.ndim >= 2 and value.numel() >= _INT8_MIN_SIZE:
            w = value.float()
            scale = w.abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True).clamp_min(1e-12) / 127
            out[key] = torch.round(w / scale).clamp_(-127, 127).to(torch.int8)
            out[key + SCALE_SUFFIX] = scale
        else:
            out[key] = value.to(half)
    return out


def _restored(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights stored as int8 (with their scales) back to float32; other tensors as they are."""
    return {
        key: value.float() * state[key + SCALE_SUFFIX] if key + SCALE_SUFFIX in state else value
        for key, value in state.items()
        if not key.endswith(SCALE_SUFFIX)
    }


def read_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A checkpoint's weights as a state dict (stored int8/fp16 tensors restored), on the CPU,
    without building its network."""
    from safetensors.torch import load_file

    weights, _ = checkpoint_files(path)
    return _restored(load_file(str(weights), device="cpu"))


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu", native: bool = True
) -> LoadedModel:
    """Load a checkpoint into a ready-to-run model (``eval()`` mode).

    Args:
        path: a ``.safetensors`` file or a checkpoint folder.
        device: where the model goes.
        native: build the network with torch alone where :mod:`geoseg.models.native` describes
            it (the bundled models' U-Nets: the same modules, weights and outputs, without the
            2 s of importing segmentation-models-pytorch); ``False`` always builds through smp.

    Raises:
        CheckpointError: missing file, a pickle, a newer format, or weights that do not fit.
    """
    config = read_config(path)
    weights, sidecar = checkpoint_files(path)
    model = native_network(config) if native else None
    if model is None:
        model = model_from_config(config)
    try:
        model.load_state_dict(read_state(path), strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"{path}: weights do not fit the model its config describes ({first})"
        ) from None
    model.eval().to(device)
    # a run given this module and a run given the path then share the model cache (and so run
    # the same network variant, bit for bit)
    remember_digest(model, file_digest(weights, sidecar))
    return LoadedModel(model, config)


def rewrite_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], config: ModelConfig
) -> Path:
    """Write checkpoint ``src`` again as the one file ``dst`` (``.safetensors``) with ``config``:
    only the config changes (recorded figures, an int8 variant, class colours: facts about the
    model that change no weight). A one-file ``src`` keeps its weights byte for byte (streamed,
    never all in memory); a folder's stored tensors are copied as they are (int8 or fp16 storage
    stays).

    Raises:
        CheckpointError: ``src`` is not a readable safetensors checkpoint; nothing is written.
    """
    weights = _one_file(src)
    p = Path(dst)
    p.parent.mkdir(parents=True, exist_ok=True)
    if weights is None:  # a folder: load and write again
        from safetensors.torch import load_file

        state = load_file(str(checkpoint_files(src)[0]), device="cpu")
        with atomic_output(p) as tmp:
            _write_tensors(tmp, state, {"format": "pt", "geoseg_config": config.to_json()})
        return p
    import shutil

    with open(weights, "rb") as f:
        header = _header_with(f, config, weights)
        with atomic_output(p) as tmp, open(tmp, "wb") as out:
            out.write(header)
            shutil.copyfileobj(f, out, 1 << 20)  # the data section, as it is
    return p


def _header_with(f: Any, config: ModelConfig, path: Path) -> bytes:
    """The size-prefixed safetensors header read from ``f`` (left at the data section), with
    ``config`` in its metadata."""
    import json
    import struct

    try:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        metadata = header.get("__metadata__") or {}
        metadata["geoseg_config"] = config.to_json()
        header["__metadata__"] = metadata
    except (struct.error, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({type(exc).__name__}); expected a "
            "checkpoint written by geoseg"
        ) from None
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text


def _write_tensors(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file as any new file is written (mode 0o666 less the umask): the
    library's own ``save_file`` creates it readable by its owner only, so a checkpoint shared in
    a team folder could not be read by the others."""
    from safetensors.torch import save

    path.write_bytes(save(state, metadata=metadata))


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


def replace_config(path: str | os.PathLike[str], config: ModelConfig) -> Path:
    """Write ``config`` into the one-file checkpoint ``path`` in place, its weights copied byte
    for byte (:func:`rewrite_checkpoint` onto itself).

    Raises:
        CheckpointError: not a one-file ``.safetensors`` checkpoint, or not a readable one.
    """
    if _one_file(path) is None:
        raise CheckpointError(f"{path}: expected a one-file .safetensors checkpoint")
    return rewrite_checkpoint(path, path, config)


def _one_file(path: str | os.PathLike[str]) -> Path | None:
    """``path`` when it is a one-file checkpoint (weights and config in one safetensors file),
    else None."""
    weights, sidecar = checkpoint_files(path)
    return weights if sidecar is None and weights == Path(path) else None
