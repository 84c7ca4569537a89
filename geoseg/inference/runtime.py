"""Device, precision and test-time augmentation: how a batch of tiles goes through the network."""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from geoseg.errors import DeviceError
from geoseg.inference.cache import ModelCache, module_digest
from geoseg.inference.options import PRECISIONS, TTA_MODES, Precision

__all__ = [
    "TTA_MODES",
    "FrozenNetwork",
    "Runner",
    "agreement",
    "cached_frozen",
    "cpu_supports_bf16",
    "frozen_network",
    "prepared_network",
    "resolve_device",
]

log = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU.

    Raises:
        DeviceError: an unknown device, or CUDA (or that GPU) asked for but not available.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"unknown device {str(device)!r}; expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise DeviceError(
                f"device {str(device)!r} was asked for but no CUDA GPU is visible; use --device "
                "cpu or --device auto"
            )
        if dev.index is not None and dev.index >= count:
            raise DeviceError(
                f"device {str(device)!r} was asked for but only {count} CUDA GPU(s) are visible "
                f"(cuda:0..cuda:{count - 1}); use one of those or --device auto"
            )
    return dev


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 or AMX), where autocast pays off."""
    try:
        return bool(
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def fast_precision(device: torch.device) -> str:
    """The reduced precision worth trying on this device, or ``fp32`` when none is."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def _flips(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, k, dims=(-2, -1)) if k else x
    return torch.flip(x, dims=(-1,)) if flip else x


def _unflips(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.flip(x, dims=(-1,)) if flip else x
    return torch.rot90(x, -k, dims=(-2, -1)) if k else x


def agreement(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor | None = None) -> float:
    """Fraction of pixels (the ``valid`` ``(N, H, W)`` ones, or all) whose argmax class agrees
    between two ``(N, C, H, W)`` outputs."""
    same = a.argmax(1) == b.argmax(1)
    if valid is not None:
        same = same[valid.to(same.device)]
    return float(same.float().mean()) if same.numel() else 1.0


def _fmt(memory_format: torch.memory_format) -> str:
    return "cl" if memory_format == torch.channels_last else "nchw"


def recorded_agreement(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The argmax agreement with fp32 of each reduced precision a checkpoint records
    (``metrics.precision``: ``{"bf16": {"agreement": 0.998, ...}}``)."""
    out: dict[str, float] = {}
    for name, figures in (metrics.get("precision") or {}).items():
        value = figures.get("agreement") if isinstance(figures, dict) else None
        if name in _DTYPES and isinstance(value, int | float) and 0 <= value <= 1:
            out[name] = float(value)
    return out


def precision_record(device: torch.device) -> str:
    """Name of the cache record of the precision ``auto`` chose on ``device``."""
    return f"precision/{device.type}/{fast_precision(device)}"


def freeze_record(
    device: torch.device, shape: Sequence[int], memory_format: torch.memory_format
) -> str:
    """Name of the cache record of whether a frozen trace of ``(1, C, H, W)`` tiles exists."""
    return f"frozen/{device.type}/{'x'.join(map(str, shape[1:]))}/{_fmt(memory_format)}"


def module_name(
    device: torch.device, shape: Sequence[int], memory_format: torch.memory_format
) -> str:
    """Name of the cached frozen module for ``(1, C, H, W)`` tiles."""
    return f"{device.type}-{'x'.join(map(str, shape[1:]))}-{_fmt(memory_format)}"


def cached_frozen(
    cache: ModelCache,
    device: torch.device,
    precision: str,
    shape: Sequence[int],
    *,
    channels_last: bool = True,
) -> tuple[Any, str]:
    """The frozen module an earlier run kept for ``(1, C, H, W)`` tiles, with the precision to run
    it at (``auto`` resolved from the cache); else ``(None, precision)``.

    Lets a run start without building the eager model (no segmentation-models-pytorch import).
    """
    if not cache.enabled or device.type != "cpu":
        return None, precision
    if precision == "auto":
        if fast_precision(device) == "fp32":
            precision = "fp32"
        else:
            record = cache.get(precision_record(device))
            if not isinstance(record, dict) or record.get("precision") not in (
                "fp32",
                fast_precision(device),
            ):
                return None, "auto"
            precision = record["precision"]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    record = cache.get(freeze_record(device, shape, fmt))
    if not (isinstance(record, dict) and record.get("frozen")):
        return None, precision
    return cache.load_module(module_name(device, shape, fmt)), precision


# What every runner of one process shares about a module: its copies prepared for a device and
# memory format, and its frozen traces. Built once, under the lock, and never modified after, so
# threads (a Dask worker's tasks, the app's queue) can run one model at once.
_LOCK = threading.Lock()
_PREPARED: weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, str], nn.Module]] = (
    weakref.WeakKeyDictionary()
)
_FROZEN: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], Any]] = (
    weakref.WeakKeyDictionary()
)
_BUILDING: dict[tuple[int, tuple[Any, ...]], threading.Lock] = {}


def prepared_network(
    model: nn.Module, device: torch.device, memory_format: torch.memory_format
) -> nn.Module:
    """``model`` ready to run on ``device`` in ``memory_format`` (eval mode, no weight requiring
    grad): a copy made once per process and shared by every runner, so the caller's module is
    never moved or converted, and no thread ever converts a module that another is running.
    TorchScript modules and modules run by another runtime (onnxruntime) are used as they are."""
    if isinstance(model, torch.jit.ScriptModule) or getattr(model, "runs_outside_torch", False):
        return model.eval()
    key = (str(device), _fmt(memory_format))
    with _LOCK:
        held = _PREPARED.setdefault(model, {})
        if key not in held:
            copy = _copy_of(model).requires_grad_(False)  # it runs, it never trains
            held[key] = copy.eval().to(device=device, memory_format=memory_format)  # type: ignore[call-overload]
        return held[key]


def _copy_of(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that shares nothing with it."""
    import copy

    return copy.deepcopy(model)


class FrozenNetwork(NamedTuple):
    """What :func:`frozen_network` found or made."""

    module: Any
    """The frozen TorchScript module, or None (the model runs eagerly)."""
    note: str
    """Where it came from: ``frozen (traced)``, ``frozen (cached)``, ``eager (cannot freeze)``."""
    reference: torch.Tensor | None = None
    """The fp32 probabilities on the example of the network that will run (the frozen copy, else
    the eager network), when it was traced now (its check computes them anyway); else None."""


def frozen_network(
    model: nn.Module,
    example: torch.Tensor,
    cache: ModelCache | None,
    memory_format: torch.memory_format = torch.channels_last,
) -> FrozenNetwork:
    """The frozen TorchScript copy of a prepared ``model`` for tiles shaped like ``example``
    ``(1, C, H, W)``: from this process, else the model cache, else traced now (and kept in both).
    None when the model cannot be traced or its trace disagrees with it.

    The decision is the same on every machine and under any load: a trace that reproduces the
    eager model's probabilities is always used on CPU (frozen copies ran 1.5-1.8x faster than the
    eager U-Nets where measured); nothing is timed.

    Returns:
        The frozen module (or None), where it came from, and the fp32 probabilities on
        ``example`` of the network that will run, when it was traced now.
    """
    fmt = memory_format
    shape = tuple(example.shape)
    key = (example.device.type, shape, _fmt(fmt))
    with _LOCK:
        held = _FROZEN.setdefault(model, {})
        if key in held:
            return FrozenNetwork(held[key], _held_note(held[key]))
        building = _BUILDING.setdefault((id(model), key), threading.Lock())
    with building:  # one thread traces; the others wait for its result
        with _LOCK:
            if key in held:
                return FrozenNetwork(held[key], _held_note(held[key]))
        frozen, note, reference = None, "frozen (traced)", None
        store = cache if cache is not None and cache.enabled else None
        record = store.get(freeze_record(example.device, shape, fmt)) if store else None
        if isinstance(record, dict) and not record.get("frozen"):
            note = "eager (cannot freeze)"
        else:
            if isinstance(record, dict) and store is not None:
                frozen = store.load_module(module_name(example.device, shape, fmt))
                note = "frozen (cached)"
            if frozen is None:
                frozen, reference = _freeze(model, example)
                note = "frozen (traced)" if frozen is not None else "eager (cannot freeze)"
                if store is not None:
                    if frozen is not None:
                        store.save_module(module_name(example.device, shape, fmt), frozen.save)
                    store.put(
                        freeze_record(example.device, shape, fmt), {"frozen": frozen is not None}
                    )
        with _LOCK:
            held[key] = frozen
            _BUILDING.pop((id(model), key), None)
        return FrozenNetwork(frozen, note, reference)


def _held_note(frozen: Any) -> str:
    return "frozen" if frozen is not None else "eager (cannot freeze)"


class Runner:
    """Runs ``(N, C, H, W)`` float32 batches through a model and returns class probabilities.

    A runner never modifies the module it is given: it runs a copy prepared once per process
    (:func:`prepared_network`), so one loaded model can serve several threads, each with its own
    runner.

    Args:
        model: network returning ``(N, classes, H, W)`` logits (a TorchScript module counts as
            already frozen).
        device: where to run.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto``: the fast precision of the device if
            its argmax agrees with fp32 on >= 99.5 % of the pixels, as the checkpoint records it
            (``recorded``), else as measured on the first tile holding data; else fp32. The
            choice is kept in the model cache, so later runs of the same model skip the check.
            ``int8``: ``model`` is already quantized (:func:`~geoseg.inference.int8.int8_network`)
            and runs as it is, on the CPU.
        tta: ``none``, ``flip`` (2 passes) or ``d4`` (8 passes): averaged probabilities.
        channels_last: use the channels-last memory format (faster convolutions on CPU and GPU).
        freeze: run a TorchScript-frozen copy of the model (batch norms folded into the
            convolutions), one tile at a time, whenever it traces and its probabilities agree with
            the eager model's within 1e-3. ``None`` (default): on CPU; ``False``: never. The trace
            is kept in the model cache.
        cache: where to keep what was learnt (:class:`~geoseg.inference.cache.ModelCache`);
            default: the user cache, keyed by a digest of the model's weights.
        recorded: the argmax agreement with fp32 of each reduced precision, measured when the
            checkpoint was made (``metrics.precision``): ``auto`` then runs no check of its own.
    """

    AGREEMENT = 0.995

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        precision: Precision = "auto",
        tta: str = "none",
        *,
        channels_last: bool = True,
        freeze: bool | None = None,
        cache: ModelCache | None = None,
        recorded: Mapping[str, float] | None = None,
    ) -> None:
        if tta not in TTA_MODES:
            raise DeviceError(f"unknown tta {tta!r}; expected one of {', '.join(TTA_MODES)}")
        if precision not in PRECISIONS:
            raise DeviceError(
                f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}"
            )
        if precision == "fp16" and device.type == "cpu":
            raise DeviceError("fp16 is not supported on CPU; use --precision bf16 or fp32")
        if precision == "int8" and device.type != "cpu":
            raise DeviceError("int8 runs on the CPU only; use --device cpu, or bf16 on the GPU")
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.source = model
        self.scripted = isinstance(model, torch.jit.ScriptModule)
        self.model = prepared_network(model, device, self.memory_format)
        self.tta = TTA_MODES[tta]
        self.precision: str = precision
        self.agreement: float | None = None
        self.reason: str | None = None  # why a precision was chosen elsewhere (int8 by auto)
        outside = bool(getattr(model, "runs_outside_torch", False))
        self.freeze = (device.type == "cpu" and not outside) if freeze is None else freeze
        self._cache = cache
        self._recorded = dict(recorded or {})
        self._frozen: Any = None
        self._frozen_shape: tuple[int, ...] | None = None
        self.freeze_note = "scripted" if self.scripted else "eager"

    @property
    def cache(self) -> ModelCache:
        """The model's cache entry (computed on first use: a digest of the weights)."""
        if self._cache is None:
            self._cache = ModelCache(module_digest(self.source))
        return self._cache

    def _plan_freeze(self, x: torch.Tensor) -> torch.Tensor | None:
        """At the first batch: the frozen copy for its tile shape, when freezing applies.

        Returns:
            The fp32 probabilities of ``x[:1]`` from the network that runs, when this call traced
            it (the trace's check computes them); else None.
        """
        if not self.freeze or self.scripted or self._frozen_shape is not None:
            return None
        x1 = x[:1].contiguous(memory_format=self.memory_format)
        self._frozen_shape = tuple(x1.shape)
        found = frozen_network(self.model, x1, self.cache, self.memory_format)
        self._frozen, self.freeze_note = found.module, found.note
        log.info("network: %s", self.freeze_note)
        return found.reference

    def _net(self, x: torch.Tensor) -> Any:
        """The frozen model for tiles of the traced shape, else the eager one; a frozen model
        (traced on one tile, or loaded from the cache) runs one tile at a time."""
        if self.scripted or (
            self._frozen is not None and tuple(x.shape[1:]) == self._frozen_shape[1:]  # type: ignore[index]
        ):
            frozen = self.model if self.scripted else self._frozen

            def tile_by_tile(t: torch.Tensor) -> torch.Tensor:
                return (
                    torch.cat([frozen(t[i : i + 1]) for i in range(len(t))])
                    if len(t) > 1
                    else frozen(t)
                )

            return tile_by_tile
        return self.model

    @contextlib.contextmanager
    def _autocast(self, precision: str) -> Iterator[None]:
        if precision in ("fp32", "int8"):  # an int8 network runs as it was quantized
            yield
        else:
            with torch.autocast(self.device.type, dtype=_DTYPES[precision]):
                yield

    def _forward(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        out: torch.Tensor | None = None
        with torch.inference_mode(), self._autocast(precision):
            for k, flip in self.tta:
                xt = _flips(x, k, flip).contiguous(memory_format=self.memory_format)
                logits = self._net(xt)(xt)
                probs = _unflips(torch.softmax(logits.float(), dim=1), k, flip)
                out = probs if out is None else out.add_(probs)
            assert out is not None
            return out.div_(len(self.tta)) if len(self.tta) > 1 else out

    def choose_precision(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> str:
        """Resolve ``auto`` on a ``(1, C, H, W)`` tile holding data: from the cache, else by
        comparing fp32 and the fast precision on its ``valid`` ``(1, H, W)`` pixels (all when
        None); recorded for later runs. Returns the precision; a resolved precision stays."""
        if self.precision != "auto":
            return self.precision
        fast = fast_precision(self.device)
        if fast == "fp32":
            self.precision = "fp32"
            return self.precision
        record = self.cache.get(precision_record(self.device)) if self.cache.enabled else None
        if isinstance(record, dict) and record.get("precision") in ("fp32", fast):
            self.precision, self.agreement = record["precision"], record.get("agreement")
            log.info("precision auto: %s (recorded for this model)", self.precision)
            return self.precision
        if fast in self._recorded:  # measured where the model was made, on many tiles
            self.agreement = float(self._recorded[fast])
        else:
            x = x.to(self.device)
            reference = self._fp32_reference(x)
            candidate = self._forward(x, fast)  # the network that will run: frozen if it froze
            self.agreement = agreement(reference, candidate, valid)
        self.precision = fast if self.agreement >= self.AGREEMENT else "fp32"
        log.info(
            "precision auto: %s argmax agrees with fp32 on %.3f%% of pixels -> %s",
            fast,
            100 * self.agreement,
            self.precision,
        )
        self.cache.put(
            precision_record(self.device),
            {"precision": self.precision, "agreement": self.agreement},
        )
        return self.precision

    def _fp32_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The fp32 probabilities of the tile ``x`` ``(1, C, H, W)`` from the network that runs:
        those the trace's check computed on this tile (freezing comes first, so a first run pays
        no extra fp32 pass), else a forward pass now. Either way they come from the same network,
        so the choice does not depend on which thread traced or whether the trace was cached."""
        traced = self._plan_freeze(x)
        if traced is not None and len(self.tta) == 1 and len(x) == 1:
            return traced
        return self._forward(x, "fp32")

    def precision_note(self) -> str:
        """The precision used, said so a person understands why (``fp32``; ``fp32 (bf16 agreed
        with fp32 on 97.2 % of a tile's pixels, 99.5 % needed)``)."""
        if self.reason is not None:
            return f"{self.precision} ({self.reason})"
        if self.agreement is None:
            return self.precision
        fast = fast_precision(self.device)
        verdict = "chosen" if self.precision == fast else f"{self.AGREEMENT:.1%} needed"
        return (
            f"{self.precision} (precision auto: {fast} agreed with fp32 on "
            f"{self.agreement:.1%} of a tile's pixels, {verdict})"
        )

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, classes, H, W)`` float32 for a float32 batch."""
        x = batch.to(self.device, non_blocking=True)
        if self.precision == "auto":
            self.choose_precision(x[:1])
        self._plan_freeze(x)
        return self._forward(x, self.precision)


class _AsOne(nn.Module):
    """``model`` as one module to the tracer: its submodules are not registered here, so the
    tracer wraps none of them into a ScriptModule (two thirds of a trace's time for the bundled
    U-Nets, 340 modules) and takes its weights as constants of the graph, which is what freezing
    makes of them anyway. The output of the traced call (eager arithmetic) is kept."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.__dict__["net"] = model  # not registered as a submodule
        self.__dict__["outputs"] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.__dict__["net"](x)
        self.__dict__["outputs"].append(out)
        return out


def _traced(model: nn.Module, example: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """A frozen trace of ``model`` and its eager output on ``example``: traced as one module
    when its weights are plain tensors, else (an int8 network's packed weights, which cannot be
    constants of a graph) module by module."""
    state = model.state_dict().values()
    if all(isinstance(v, torch.Tensor) and not v.is_quantized for v in state):
        whole = _AsOne(model).eval()
        frozen = torch.jit.freeze(torch.jit.trace(whole, example, check_trace=False))
        return frozen, whole.__dict__["outputs"][0]
    frozen = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
    return frozen, model(example)


def _freeze(model: nn.Module, example: torch.Tensor) -> tuple[Any, torch.Tensor | None]:
    """A frozen TorchScript trace of ``model`` for inputs shaped like ``example``, or None when it
    cannot be traced or its fp32 probabilities differ from the eager model's by more than 1e-3;
    with the fp32 probabilities on ``example`` of whichever of the two will run (None when
    tracing failed)."""
    import warnings

    try:
        with (
            torch.no_grad(),
            torch.autocast(example.device.type, enabled=False),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            frozen, eager = _traced(model, example)
            ref = torch.softmax(eager.float(), 1)
            got = torch.softmax(frozen(example).float(), 1)
        if not torch.allclose(ref, got, atol=1e-3):
            log.info(
                "frozen model differs from the eager one (max %.2e); using the eager model",
                float((ref - got).abs().max()),
            )
            return None, ref
        return frozen, got
    except Exception as exc:  # tracing is best effort: any model still runs eagerly
        log.info(
            "cannot freeze the model (%s: %s); using the eager model",
            type(exc).__name__,
            str(exc).splitlines()[0][:200],
        )
        return None, None


def make_runner(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    precision: Precision,
    tta: str,
    *,
    freeze: bool | None = None,
    cache: ModelCache | None = None,
    recorded: Mapping[str, float] | None = None,
) -> Runner:
    """A :class:`Runner` for a module (plain callables are wrapped)."""
    if not isinstance(model, nn.Module):
        fn = model

        class _Wrapped(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return fn(x)

        model = _Wrapped()
    return Runner(model, device, precision, tta, freeze=freeze, cache=cache, recorded=recorded)
