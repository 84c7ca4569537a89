"""Architectures by name (or any callable) over segmentation-models-pytorch."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geoseg._lazy import imports_deferred
from geoseg.errors import ModelError, WeightsError

__all__ = [
    "ARCHITECTURES",
    "build_model",
    "list_architectures",
    "list_encoders",
    "load_encoder_weights",
    "register_architecture",
]

log = logging.getLogger(__name__)

Builder = Callable[..., nn.Module]


def _smp_module() -> Any:
    """``segmentation_models_pytorch``, imported with W&B deferred (timm imports it at start-up
    when installed, for nothing a network needs; it loads on its first use)."""
    import sys

    if "segmentation_models_pytorch" in sys.modules:
        return sys.modules["segmentation_models_pytorch"]
    with imports_deferred("wandb"):
        import segmentation_models_pytorch as smp

    return smp


def _smp(name: str) -> Builder:
    def build(**kwargs: Any) -> nn.Module:
        return getattr(_smp_module(), name)(**kwargs)

    build.__name__ = name
    build.__doc__ = f"segmentation_models_pytorch.{name}"
    return build


ARCHITECTURES: dict[str, Builder] = {
    "unet": _smp("Unet"),
    "unetplusplus": _smp("UnetPlusPlus"),
    "fpn": _smp("FPN"),
    "deeplabv3plus": _smp("DeepLabV3Plus"),
    "linknet": _smp("Linknet"),
    "manet": _smp("MAnet"),
    "pspnet": _smp("PSPNet"),
}
_ALIASES = {"unet++": "unetplusplus", "deeplabv3+": "deeplabv3plus"}


def register_architecture(name: str, builder: Builder) -> None:
    """Add an architecture:
    ``builder(encoder_name=, encoder_weights=, in_channels=, classes=, **kw)``."""
    ARCHITECTURES[name.lower()] = builder


def list_architectures() -> list[str]:
    """The registered architecture names, sorted."""
    return sorted(ARCHITECTURES)


def list_encoders() -> list[str]:
    """Encoder names segmentation-models-pytorch knows."""
    return sorted(_smp_module().encoders.get_encoder_names())


def _resolve(architecture: str | Builder) -> Builder:
    if callable(architecture):
        return architecture
    key = _ALIASES.get(architecture.lower(), architecture.lower())
    if key not in ARCHITECTURES:
        raise ModelError(
            f"unknown architecture {architecture!r}; expected one of "
            f"{', '.join(list_architectures())} or a callable"
        )
    return ARCHITECTURES[key]


def load_encoder_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a local encoder state dict (``.safetensors``, or ``.pth`` read with
    ``weights_only=True``).

    Keys may be bare or prefixed with ``encoder.``; a first convolution trained on 3 bands is
    adapted to the model's band count (mean over RGB, repeated). Nothing is unpickled.

    Raises:
        WeightsError: missing file, unreadable file, or no key that matches the encoder.
    """
    from geoseg.models.pretrained import adapt_in_channels

    p = Path(path)
    if not p.is_file():
        raise WeightsError(
            f"{p}: encoder weights file not found; expected a local .safetensors or .pth state dict"
        )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            raw = torch.load(str(p), map_location="cpu", weights_only=True)
            state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    except Exception as exc:
        raise WeightsError(
            f"{p}: cannot read encoder weights ({exc}); expected a tensor state dict"
        ) from None
    encoder: nn.Module = (
        model.encoder if isinstance(getattr(model, "encoder", None), nn.Module) else model  # type: ignore[assignment]
    )
    own = encoder.state_dict()
    loaded = {}
    for key, value in state.items():
        k = key.removeprefix("encoder.")
        if k not in own:
            continue
        target = own[k]
        value = adapt_in_channels(value, target.shape)
        if value.shape == target.shape:
            loaded[k] = value
    if not loaded:
        raise WeightsError(
            f"{p}: no tensor in the file matches the encoder's parameters; is it for this encoder?"
        )
    encoder.load_state_dict(loaded, strict=False)
    log.info("loaded %d/%d encoder tensors from %s", len(loaded), len(own), p)


HUB_PROBE_SECONDS = 3.0  # how long to wait for the model hub's address and a TCP connection


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``), where encoder weights come from, answers a
    TCP connection within ``timeout`` seconds. Name lookup runs in a thread, as it has no
    timeout."""
    import socket
    import threading
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = (
        url.hostname or "huggingface.co",
        url.port or (443 if url.scheme == "https" else 80),
    )
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answer.append(True)
        except Exception:  # no name, no route, refused, or a network guard
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(answer and answer[0])


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Tell huggingface_hub to use its cache only (it reads HF_HUB_OFFLINE once, at import)."""
    if not offline:
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def build_model(
    architecture: str | Builder = "unet",
    encoder: str = "resnet34",
    *,
    in_channels: int = 3,
    classes: int = 2,
    encoder_weights: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a segmentation network that maps ``(N, in_channels, H, W)`` to ``(N, classes, H, W)``
    logits.

    Args:
        architecture: a registry name (see :func:`list_architectures`) or a builder callable.
        encoder: an encoder name of segmentation-models-pytorch (``vgg11``, ``resnet34``...).
        in_channels: input bands.
        classes: output classes.
        encoder_weights: None (random init, the default), the name of weights a pip package
            ships (:func:`~geoseg.models.pretrained.list_pretrained`, e.g.
            ``"efficientnet-lite0-imagenet"``; offline), ``"imagenet"`` (downloads; needs a
            network), or a path to a local state-dict file.
        **kwargs: passed to the architecture (``encoder_depth``, ``decoder_channels``...).

    Raises:
        ModelError: unknown architecture or encoder, or bad options.
        WeightsError: weights cannot be downloaded or loaded.
    """
    builder = _resolve(architecture)
    if not callable(architecture):
        known = list_encoders()
        if encoder.startswith("tu-"):
            import timm

            if not timm.is_model(encoder[3:].split(".")[0]):
                raise ModelError(
                    f"unknown encoder {encoder!r}: 'tu-' encoders name a timm model, and timm has "
                    f"no {encoder[3:]!r}; see timm.list_models(), e.g. tu-resnet18, "
                    "tu-mobilenetv3_small_100"
                )
        elif encoder not in known:
            close = [e for e in known if e.startswith(encoder.split("-")[0][:6])][:8]
            raise ModelError(
                f"unknown encoder {encoder!r}; expected a segmentation-models-pytorch encoder "
                f"such as {', '.join(close or known[:8])}"
            )
    from geoseg.models.pretrained import PRETRAINED, load_pretrained

    packaged = (
        str(encoder_weights)
        if encoder_weights is not None and str(encoder_weights) in PRETRAINED
        else None
    )
    local = (
        packaged is None
        and encoder_weights is not None
        and str(encoder_weights) not in ("imagenet",)
        and (
            os.sep in str(encoder_weights)
            or Path(str(encoder_weights)).suffix in (".pth", ".pt", ".safetensors", ".bin")
        )
    )
    hub: Any = None if (local or packaged) else encoder_weights
    if hub is not None and encoder.startswith("tu-"):
        hub = (
            True  # timm universal encoders take a flag; the pretrained variant is part of the name
        )
    offline = hub is not None and not hub_reachable()
    try:
        with _hub_offline(offline):  # offline: the local cache only, no minute of retries
            model = builder(
                encoder_name=encoder,
                encoder_weights=hub,
                in_channels=in_channels,
                classes=classes,
                **kwargs,
            )
    except (KeyError, ValueError, TypeError) as exc:
        if hub is not None and "weights" in str(exc).lower():
            raise WeightsError(
                f"encoder {encoder!r} has no {hub!r} weights ({exc}); use encoder_weights=None or "
                "a local file"
            ) from None
        raise ModelError(f"cannot build {architecture!r} with encoder {encoder!r}: {exc}") from None
    except Exception as exc:
        if hub is not None:
            why = (
                "the model hub cannot be reached (offline?)"
                if offline
                else f"the download failed ({type(exc).__name__})"
            )
            raise WeightsError(
                f"could not get {encoder_weights!r} weights for encoder {encoder!r}: {why} and "
                "they are not in the local cache. Pass a local weights file instead "
                "(--encoder-weights path/to/encoder.safetensors) or use random initialization."
            ) from None
        raise
    if packaged is not None:
        load_pretrained(model, packaged, encoder=encoder)
    elif local and encoder_weights is not None:
        load_encoder_weights(model, encoder_weights)
    return model
