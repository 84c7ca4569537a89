"""int8 inference on CPU: a statically quantized copy of a network, rebuilt from recorded scales.

A checkpoint's int8 variant (``config.variants["int8"]``, written by
:func:`geoseg.export.quantize.quantize_checkpoint`) holds what rebuilds its quantized network the
same way on every load: the scale and zero point of every activation quantizer, named after the
graph node it observes, and the layers kept in float; with it, how it was calibrated and how
closely its classes agreed with fp32. Nothing is pickled and nothing is timed: the network is
rebuilt with PyTorch's FX graph mode quantization on the ``x86`` backend (convolutions with their
batch norms folded, and their activations, in int8; weights per output channel, activations per
tensor), and ``--precision auto`` picks it from the recorded figures alone.
"""

from __future__ import annotations

import copy
import logging
import threading
import warnings
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from geoseg.errors import CheckpointError, DeviceError, LowAgreementWarning
from geoseg.models.config import ModelConfig
from geoseg.models.variants import BACKEND, INT8, MIN_AGREEMENT, REDUCE_RANGE, Int8Variant

__all__ = [
    "build_int8",
    "calibrate",
    "int8_available",
    "int8_network",
    "int8_precision",
    "observed_nodes",
    "quantizable",
    "quantization_groups",
]

log = logging.getLogger(__name__)


def int8_available() -> bool:
    """Whether this torch runs int8 convolutions on this CPU (the ``x86`` quantized engine)."""
    return BACKEND in torch.backends.quantized.supported_engines


def int8_precision(config: ModelConfig, device: torch.device, precision: str) -> str:
    """The precision to run ``config``'s model at, deciding only whether it is int8.

    ``int8`` asked for by name needs a CPU and a calibrated variant (a low recorded agreement
    warns); ``auto`` becomes ``int8`` on a CPU when the checkpoint has an int8 variant whose
    recorded agreement with fp32 is at least :data:`MIN_AGREEMENT`, and stays ``auto`` otherwise
    (never for a variant whose agreement is unknown). Decided from the recorded figures alone:
    the same on every run and under any load. Other precisions are returned as they are.

    Raises:
        DeviceError: ``int8`` on a GPU, without a calibrated variant, or without the engine.
    """
    if precision not in ("auto", INT8):
        return precision
    variant = Int8Variant.of(config)
    if precision == "auto":
        value = variant.agreement_value if variant is not None else None
        usable = device.type == "cpu" and value is not None and value >= MIN_AGREEMENT
        return INT8 if usable and int8_available() else "auto"
    if device.type != "cpu":
        raise DeviceError(
            f"int8 runs on the CPU only, got --device {device}; use --device cpu, or --precision "
            "bf16 or fp16 on the GPU"
        )
    if variant is None:
        raise DeviceError(
            "this checkpoint has no int8 variant; calibrate one on images like its training data "
            "with geoseg quantize CKPT OUT --calibration IMAGES..., then predict with OUT"
        )
    if not int8_available():
        raise DeviceError(
            f"this torch build has no {BACKEND} quantized engine (it has "
            f"{', '.join(torch.backends.quantized.supported_engines)}); use --precision fp32"
        )
    value = variant.agreement_value
    if value is None or value < MIN_AGREEMENT:
        said = "an unknown share" if value is None else f"{value:.2%}"
        warnings.warn(
            f"the int8 variant agreed with fp32 on {said} of held-out pixels (auto needs "
            f"{MIN_AGREEMENT:.0%}); expect classes to differ from --precision fp32",
            LowAgreementWarning,
            stacklevel=2,
        )
    return INT8


def quantizable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) that FX quantization can fuse: timm's batch norms with a
    built-in activation (``BatchNormAct2d``) become a plain batch norm followed by that activation,
    so each folds into the convolution before it; identities vanish from the graph."""
    out = copy.deepcopy(model).eval()
    _plain_norms(out)
    _static_same_padding(out)
    return out


def _static_same_padding(module: nn.Module) -> None:
    """timm's TensorFlow-style convolutions (``Conv2dSame``) work out their padding from the
    input's size at every call, which FX cannot trace. On the sizes geoseg runs (tiles whose sides
    are multiples of the network's output stride, so every stage's input is a multiple of its
    stride) that padding is always the same: a fixed zero padding before a plain convolution."""
    for name, child in list(module.named_children()):
        if type(child).__name__ == "Conv2dSame" and isinstance(child, nn.Conv2d):
            pads = []
            for k, s, d in zip(child.kernel_size, child.stride, child.dilation, strict=True):
                total = max((k - 1) * d + 1 - s, 0)
                pads.append((total // 2, total - total // 2))
            (top, bottom), (left, right) = pads
            conv = nn.Conv2d(
                child.in_channels,
                child.out_channels,
                child.kernel_size,  # type: ignore[arg-type]  # 2-tuples on a Conv2d
                child.stride,  # type: ignore[arg-type]
                0,
                child.dilation,  # type: ignore[arg-type]
                child.groups,
                child.bias is not None,
            )
            conv.load_state_dict(child.state_dict())
            padded: nn.Module = (
                nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv)
                if left or right or top or bottom
                else conv
            )
            setattr(module, name, padded.train(child.training))
        else:
            _static_same_padding(child)


class _Through(nn.Module):
    """An identity FX traces through (``nn.Identity`` is a graph node, and each node between
    quantized layers costs a requantization)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _plain_norms(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if type(child) is nn.Identity:
            setattr(module, name, _Through())
        elif (
            isinstance(child, nn.BatchNorm2d)
            and type(child) is not nn.BatchNorm2d
            and isinstance(getattr(child, "act", None), nn.Module)
        ):
            bn = nn.BatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, True
            ).eval()
            bn.load_state_dict(
                {k: v for k, v in child.state_dict().items() if k in bn.state_dict()}
            )
            parts = [getattr(child, "drop", None), child.act]  # identities add nothing
            kept = [p for p in parts if isinstance(p, nn.Module) and not isinstance(p, nn.Identity)]
            setattr(module, name, nn.Sequential(bn, *kept).eval())
        else:
            _plain_norms(child)


def _recorded_observer() -> type:
    from torch.ao.quantization.observer import MinMaxObserver

    class RecordedObserver(MinMaxObserver):
        """Observes nothing; answers the scale and zero point it was given."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.recorded: tuple[float, int] | None = None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

        def calculate_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
            assert self.recorded is not None, "no recorded qparams"
            scale, zero = self.recorded
            return torch.tensor([scale], dtype=torch.float32), torch.tensor([zero])

    return RecordedObserver


_RECORDED: type | None = None


def _mapping(activation: Any, float_layers: Iterable[str], reduce_range: bool) -> Any:
    """The x86 backend's default QConfigMapping with ``activation`` as the observer of every op
    observed with a histogram by default (fixed-range ops such as sigmoid keep theirs), and
    ``float_layers`` left unquantized."""
    from torch.ao.quantization import HistogramObserver, QConfig, get_default_qconfig_mapping

    mapping = get_default_qconfig_mapping(BACKEND)
    default = mapping.global_qconfig
    assert default is not None
    ours = QConfig(
        activation=activation.with_args(reduce_range=reduce_range), weight=default.weight
    )
    mapping.set_global(ours)
    for key, qconfig in list(mapping.object_type_qconfigs.items()):
        if qconfig is not None and isinstance(qconfig.activation(), HistogramObserver):
            mapping.set_object_type(key, ours)
    for name in float_layers:
        mapping.set_module_name(name, None)
    return mapping


def observed_nodes(prepared: Any, kind: type) -> Iterator[tuple[str, Any, Any]]:
    """``(name of the observed node, observer, observer's node)`` for each observer of class
    ``kind`` in a prepared FX graph, in graph order (a node observed twice gets ``#2``...)."""
    seen: dict[str, int] = {}
    for node in prepared.graph.nodes:
        if node.op != "call_module":
            continue
        module = prepared.get_submodule(node.target)
        if type(module) is not kind or not node.args:
            continue
        name = getattr(node.args[0], "name", str(node.args[0]))
        seen[name] = seen.get(name, 0) + 1
        yield (name if seen[name] == 1 else f"{name}#{seen[name]}"), module, node


def _clip_range(prepared: Any, node: Any) -> tuple[float, float] | None:
    """The range a clipping activation (ReLU, ReLU6, hardtanh) leaves of its input, when ``node``
    is one; None otherwise."""
    import torch.nn.functional as F

    target: Any = node.target
    if node.op == "call_module":
        target = type(prepared.get_submodule(node.target))
    from torch.ao.quantization.observer import ObserverBase

    if target in (nn.Identity, nn.Dropout) or (
        isinstance(target, type) and issubclass(target, ObserverBase)
    ):  # passes values on: the clip, if any, is further on
        ranges = [_clip_range(prepared, user) for user in node.users]
        if not ranges or any(r is None for r in ranges):
            return None
        return min(r[0] for r in ranges), max(r[1] for r in ranges)  # type: ignore[index]
    if target in (nn.ReLU, F.relu, torch.relu, "relu", "relu_"):
        return 0.0, float("inf")
    if target in (nn.ReLU6, F.relu6):
        return 0.0, 6.0
    if target is nn.Hardtanh:
        module = prepared.get_submodule(node.target)
        return float(module.min_val), float(module.max_val)
    return None


def _clip_to_users(prepared: Any, observer: Any, node: Any) -> None:
    """An activation read only by clipping activations needs only the range they keep: quantized
    to it, the values they clip saturate exactly as they would (a convolution before ReLU6 is
    quantized over [0, 6], not over its whole pre-activation range)."""
    ranges = [_clip_range(prepared, user) for user in node.users]
    if not ranges or any(r is None for r in ranges):
        return
    low = min(r[0] for r in ranges)  # type: ignore[index]
    high = max(r[1] for r in ranges)  # type: ignore[index]
    observer.min_val.clamp_(min=low, max=high)
    observer.max_val.clamp_(min=low, max=high)


def _prepare(
    model: nn.Module, activation: Any, float_layers: Iterable[str], reduce_range: bool, bands: int
) -> Any:
    from torch.ao.quantization.quantize_fx import prepare_fx

    torch.backends.quantized.engine = BACKEND
    example = torch.zeros(1, bands, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX quantization's deprecation notices
        return prepare_fx(
            quantizable(model),
            _mapping(activation, float_layers, reduce_range),
            example_inputs=(example,),
        )


def calibrate(
    model: nn.Module,
    tiles: Iterable[torch.Tensor],
    bands: int,
    *,
    reduce_range: bool = REDUCE_RANGE,
) -> dict[str, tuple[float, int]]:
    """Observe the activations of ``model`` on normalized ``(1, bands, H, W)`` tiles and return
    the scale and zero point of each activation quantizer, by observed node. Deterministic: the
    same tiles in the same order give the same numbers.

    The observers keep each activation's whole range (min/max): histogram observers, which clip
    rare large activations, lost up to 6 more points of agreement with fp32 on the bundled
    model, whose encoder passes such activations on.

    Raises:
        CheckpointError: no tile, or a network FX cannot trace.
    """
    from torch.ao.quantization import MinMaxObserver

    try:
        prepared = _prepare(model, MinMaxObserver, (), reduce_range, bands)
    except Exception as exc:
        raise CheckpointError(
            f"this network cannot be quantized ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}); use --precision bf16 or fp32"
        ) from None
    count = 0
    with torch.inference_mode(False), torch.no_grad():
        for x in tiles:
            prepared(x.float())
            count += 1
    if not count:
        raise CheckpointError("no calibration tile held valid pixels; give images with data")
    out: dict[str, tuple[float, int]] = {}
    for name, observer, node in observed_nodes(prepared, MinMaxObserver):
        _clip_to_users(prepared, observer, node)
        scale, zero = observer.calculate_qparams()
        out[name] = (float(scale), int(zero))
    return out


def quantization_groups(model: nn.Module, bands: int, most: int = 16) -> dict[str, int]:
    """Parts of ``model`` that int8 may keep in float, each a module name, in network order, with
    the multiply-adds of its convolutions on a ``(1, bands, 64, 64)`` tile: starting from the
    model's top-level modules, the part holding the most convolutions is split into its children
    until there are ``most`` parts (for a U-Net: the encoder's stem and stages, its largest
    stage's blocks, the decoder's blocks, the head). Convolutions that tile does not run do not
    count (an encoder may hold stages it does not use).
    """
    macs: dict[nn.Module, int] = {}

    def count(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        assert isinstance(module, nn.Conv2d)
        kernel = module.weight[0].numel()  # in channels / groups x kernel height x width
        macs[module] = int(output.numel() * kernel)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, bands, 64, 64))
    finally:
        for hook in hooks:
            hook.remove()

    def convs(module: nn.Module) -> int:
        return sum(m in macs for m in module.modules())

    def parts(prefix: str, module: nn.Module) -> list[tuple[str, nn.Module]]:
        return [
            (f"{prefix}.{n}" if prefix else n, child)
            for n, child in module.named_children()
            if convs(child)
        ]

    groups = parts("", model)
    while len(groups) < most:
        splittable = [(convs(m), -i, i) for i, (_, m) in enumerate(groups) if convs(m) > 1]
        if not splittable:
            break
        *_, i = max(splittable)
        children = parts(*groups[i])
        while len(children) == 1:  # a lone wrapper (encoder.model): look inside
            children = parts(*children[0])
        groups[i : i + 1] = children
    return {name: sum(macs.get(m, 0) for m in part.modules()) for name, part in groups}


def build_int8(model: nn.Module, variant: Int8Variant, bands: int) -> nn.Module:
    """The int8 network of ``model`` that ``variant`` describes (a new module; ``model`` is not
    touched): quantizers get the recorded scales, weights are quantized per channel.

    Raises:
        CheckpointError: the recorded quantizers do not match the graph this torch builds (a
            variant calibrated with another torch or for another network).
    """
    from torch.ao.quantization.quantize_fx import convert_fx

    global _RECORDED
    if _RECORDED is None:
        _RECORDED = _recorded_observer()
    prepared = _prepare(model, _RECORDED, variant.float_layers, variant.reduce_range, bands)
    missing = []
    for name, observer, _ in observed_nodes(prepared, _RECORDED):
        if name in variant.qparams:
            scale, zero = variant.qparams[name]
            observer.recorded = (float(scale), int(zero))
        else:
            missing.append(name)
    if missing:
        raise CheckpointError(
            f"the int8 variant has no scale for {len(missing)} quantizer(s) of this network "
            f"({', '.join(missing[:3])}...): it was calibrated with torch {variant.torch or '?'} "
            f"or for another network; calibrate it again with geoseg quantize"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = convert_fx(prepared).eval()
    _drop_idle_clips(converted)
    return converted


def _drop_idle_clips(graph_module: Any) -> None:
    """Remove the clipping activations (ReLU6, ReLU) that follow a quantized layer whose output
    range already lies inside theirs: the layer's int8 output saturates where they would clip
    (calibration quantizes such outputs over the clipped range), so they are identities, and
    PyTorch runs a quantized ReLU6 as a copy costing as much as a convolution."""
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op != "call_module" or len(node.args) != 1:
            continue
        clip = _clip_range(graph_module, node)
        source = node.args[0]
        if clip is None or getattr(source, "op", None) != "call_module":
            continue
        layer = graph_module.get_submodule(source.target)
        scale, zero = getattr(layer, "scale", None), getattr(layer, "zero_point", None)
        if scale is None or zero is None:
            continue
        low, high = (0 - int(zero)) * float(scale), (255 - int(zero)) * float(scale)
        if low >= clip[0] - float(scale) / 2 and high <= clip[1] + float(scale) / 2:
            node.replace_all_uses_with(source)
            graph.erase_node(node)
    graph.lint()
    graph_module.recompile()


# int8 networks built in this process, per source module and variant digest: built once, under
# the lock, never modified, shared by every runner (threads included)
_LOCK = threading.Lock()
_BUILT: weakref.WeakKeyDictionary[nn.Module, dict[str, nn.Module]] = weakref.WeakKeyDictionary()
_BUILDING: dict[tuple[int, str], threading.Lock] = {}


def int8_network(model: nn.Module, variant: Int8Variant, bands: int) -> nn.Module:
    """:func:`build_int8`, once per process for each module and variant."""
    key = variant.digest
    with _LOCK:
        held = _BUILT.setdefault(model, {})
        if key in held:
            return held[key]
        building = _BUILDING.setdefault((id(model), key), threading.Lock())
    with building:
        with _LOCK:
            if key in held:
                return held[key]
        net = build_int8(model, variant, bands)
        with _LOCK:
            held[key] = net
            _BUILDING.pop((id(model), key), None)
        log.info("int8 network built (%d quantizers)", len(variant.qparams))
        return net
