"""Device, precision and test-time augmentation: how a batch of tiles goes through the network."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from geoseg.errors import DeviceError
from geoseg.inference.cache import ModelCache, module_digest
from geoseg.inference.options import TTA_MODES, Precision

__all__ = [
    "TTA_MODES",
    "Runner",
    "agreement",
    "cached_frozen",
    "cpu_supports_bf16",
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


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of pixels whose argmax class agrees between two ``(N, C, H, W)`` outputs."""
    return float((a.argmax(1) == b.argmax(1)).float().mean())


def _fmt(memory_format: torch.memory_format) -> str:
    return "cl" if memory_format == torch.channels_last else "nchw"


def precision_record(device: torch.device) -> str:
    """Name of the cache record of the precision ``auto`` chose on ``device``."""
    return f"precision/{device.type}/{fast_precision(device)}"


def freeze_record(
    device: torch.device, shape: Sequence[int], memory_format: torch.memory_format, precision: str
) -> str:
    """Name of the cache record of the frozen-vs-eager measurement for ``(1, C, H, W)`` tiles."""
    return f"freeze/{device.type}/{'x'.join(map(str, shape[1:]))}/{_fmt(memory_format)}/{precision}"


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
    """The cached frozen module for ``(1, C, H, W)`` tiles, when earlier runs measured that it pays
    here, with the precision to run it at (``auto`` resolved from the cache); else
    ``(None, precision)``.

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
    record = cache.get(freeze_record(device, shape, fmt, precision))
    if not (isinstance(record, dict) and record.get("keep")):
        return None, precision
    return cache.load_module(module_name(device, shape, fmt)), precision


class Runner:
    """Runs ``(N, C, H, W)`` float32 batches through a model and returns class probabilities.

    Args:
        model: network returning ``(N, classes, H, W)`` logits (a TorchScript module counts as
            already frozen).
        device: where to run.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (the fast precision of the device if its
            argmax agrees with fp32 on >= 99.5 % of the pixels of the first tile, else fp32; the
            choice is recorded in the model cache, so later runs of the same model skip the check).
        tta: ``none``, ``flip`` (2 passes) or ``d4`` (8 passes): averaged probabilities.
        channels_last: use the channels-last memory format (faster convolutions on CPU and GPU).
        freeze: run a TorchScript-frozen copy of the model (batch norms folded into the
            convolutions), one tile at a time. ``True``: whenever it traces and agrees with the
            eager model (probabilities within 1e-3); ``False``: never; ``None`` (default): on CPU,
            when it was measured to pay here: the first run with at least ``FREEZE_MIN_TILES`` tiles
            times the frozen copy against the eager model once and records the result (and the
            frozen module when it wins by ``FREEZE_GAIN``) in the model cache.
        cache: where to record what was learnt (:class:`~geoseg.inference.cache.ModelCache`);
            default: the user cache, keyed by a digest of the model's weights.
        tiles: how many tiles the run will send (``None``: unknown), so that a trace is measured
            only when enough tiles remain to pay for the measurement.
    """

    AGREEMENT = 0.995
    FREEZE_MIN_TILES = 8  # a large network is traced only when this many tiles remain to pay for it
    # a network this small is cheap to trace, whatever the raster, and keeps the trace
    FREEZE_SMALL_PARAMS = 5_000_000
    # a cached frozen module starts a run without building the network (no
    # segmentation-models-pytorch import), so it is kept unless it runs measurably slower than the
    # eager model
    FREEZE_GAIN = 0.95

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
        tiles: int | None = None,
    ) -> None:
        if tta not in TTA_MODES:
            raise DeviceError(f"unknown tta {tta!r}; expected one of {', '.join(TTA_MODES)}")
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise DeviceError(f"unknown precision {precision!r}; expected auto, fp32, bf16 or fp16")
        if precision == "fp16" and device.type == "cpu":
            raise DeviceError("fp16 is not supported on CPU; use --precision bf16 or fp32")
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.scripted = isinstance(model, torch.jit.ScriptModule)
        if self.scripted:
            self.model = model.eval()
        else:
            self.model = model.eval().to(device=device, memory_format=self.memory_format)  # type: ignore[call-overload]
        self.tta = TTA_MODES[tta]
        self.precision: str = precision
        self.agreement: float | None = None
        self.freeze: bool | None = (
            (None if device.type == "cpu" else False) if freeze is None else freeze
        )
        self._cache = cache
        self._tiles_left = tiles
        self._frozen: Any = None
        self._frozen_shape: tuple[int, ...] | None = None
        self.freeze_note = "scripted" if self.scripted else "eager"

    @property
    def cache(self) -> ModelCache:
        """The model's cache entry (computed on first use: a digest of the weights)."""
        if self._cache is None:
            self._cache = ModelCache(module_digest(self.model))
        return self._cache

    def _plan_freeze(self, x: torch.Tensor) -> None:
        """Decide, at a batch, whether to run frozen: from the cache, or by measuring once."""
        if self.freeze is False or self.scripted or self._frozen_shape is not None:
            return
        tile = (1, *x.shape[1:])
        if self.freeze is True:
            self._frozen_shape = tile
            self._frozen = _freeze(self.model, x[:1].contiguous(memory_format=self.memory_format))
            self.freeze_note = "frozen" if self._frozen is not None else "eager (cannot freeze)"
            return
        record = (
            self.cache.get(freeze_record(self.device, tile, self.memory_format, self.precision))
            if self.cache.enabled
            else None
        )
        if isinstance(record, dict):
            self._frozen_shape = tile
            if record.get("keep"):
                self._frozen = self.cache.load_module(
                    module_name(self.device, tile, self.memory_format)
                )
            self.freeze_note = (
                "frozen (cached)" if self._frozen is not None else "eager (cached measurement)"
            )
            if self._frozen is not None or not record.get("keep"):
                return
            self._frozen_shape = None  # the module file went missing: measure again

    def _should_measure(self) -> bool:
        """Whether to measure a trace now: there is somewhere to keep the result, no decision yet,
        and the trace is cheap (a small network) or enough tiles remain to pay for it."""
        if (
            self.freeze is not None
            or self.scripted
            or self._frozen_shape is not None
            or not self.cache.enabled
        ):
            return False
        if self._tiles_left is None or self._tiles_left >= self.FREEZE_MIN_TILES:
            return True
        return self._small()

    def _small(self) -> bool:
        return sum(p.numel() for p in self.model.parameters()) <= self.FREEZE_SMALL_PARAMS

    def _measure_freeze(self, x1: torch.Tensor, eager_per_tile: float) -> None:
        """Trace, check and time a frozen copy against the eager model on one tile; record it."""
        frozen = _freeze(self.model, x1)
        keep, speedup = False, None
        if frozen is not None:
            with torch.inference_mode(), self._autocast(self.precision):
                frozen(x1)  # the first calls of a TorchScript module optimise its graph
                per_tile = math.inf
                for _ in range(2):  # the faster of two: a busy machine only ever slows a run down
                    start = time.perf_counter()
                    frozen(x1)
                    per_tile = min(per_tile, time.perf_counter() - start)
            speedup = eager_per_tile / max(per_tile, 1e-9)
            # a small network keeps its frozen copy whatever one timing on a busy machine says: it
            # was 14-37 % faster per tile where measured quietly, and loading it from the cache
            # saves building the network (seconds of imports) on every later run
            keep = speedup >= self.FREEZE_GAIN or self._small()
        log.info(
            "frozen model: %s per tile vs eager -> %s",
            f"{speedup:.2f}x" if speedup else "not traceable",
            "frozen" if keep else "eager",
        )
        self.cache.put(
            freeze_record(self.device, x1.shape, self.memory_format, self.precision),
            {"keep": keep, "speedup": speedup},
        )
        if keep:
            self.cache.save_module(
                module_name(self.device, x1.shape, self.memory_format), frozen.save
            )
            self._frozen = frozen
        self.freeze_note = "frozen (measured)" if keep else "eager (measured)"

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
        if precision == "fp32":
            yield
        else:
            with torch.autocast(self.device.type, dtype=_DTYPES[precision]):
                yield

    def _forward(self, x: torch.Tensor, precision: str, *, eager: bool = False) -> torch.Tensor:
        out: torch.Tensor | None = None
        with torch.inference_mode(), self._autocast(precision):
            for k, flip in self.tta:
                xt = _flips(x, k, flip).contiguous(memory_format=self.memory_format)
                logits = (self.model if eager else self._net(xt))(xt)
                probs = _unflips(torch.softmax(logits.float(), dim=1), k, flip)
                out = probs if out is None else out.add_(probs)
        assert out is not None
        return out.div_(len(self.tta)) if len(self.tta) > 1 else out

    def _choose(self, x: torch.Tensor) -> torch.Tensor | None:
        """Resolve ``auto``: from the cache, else by comparing fp32 and the fast precision on ``x``
        (then the output of the chosen precision is returned, else None)."""
        fast = fast_precision(self.device)
        if fast == "fp32":
            self.precision = "fp32"
            return None
        record = self.cache.get(precision_record(self.device)) if self.cache.enabled else None
        if isinstance(record, dict) and record.get("precision") in ("fp32", fast):
            self.precision, self.agreement = record["precision"], record.get("agreement")
            log.info("precision auto: %s (recorded for this model)", self.precision)
            return None
        reference = self._forward(x, "fp32", eager=True)
        candidate = self._forward(x, fast, eager=True)
        self.agreement = agreement(reference, candidate)
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
        return candidate if self.precision == fast else reference

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, classes, H, W)`` float32 for a float32 batch."""
        x = batch.to(self.device, non_blocking=True)
        first: torch.Tensor | None = None
        if self.precision == "auto":
            # decide on the first tile only: one extra fp32 pass, not a whole batch
            first = self._choose(x[:1])
        self._plan_freeze(x)
        if self._frozen is None and self._should_measure():
            # decide before any tile is returned, so one run uses one network for every tile (a
            # block predicted alone then gets the very bits of a full run)
            x1 = x[:1].contiguous(memory_format=self.memory_format)
            self._frozen_shape = (1, *x.shape[1:])
            self._measure_freeze(x1, self._time_eager(x1))
            if self._frozen is not None:
                first = None
        if first is not None and len(x) == 1:
            return self._counted(x, first)
        out = (
            self._forward(x, self.precision)
            if first is None
            else torch.cat([first, self._forward(x[1:], self.precision)])
        )
        return self._counted(x, out)

    def _time_eager(self, x1: torch.Tensor) -> float:
        """Seconds per tile of the eager model: the faster of two warm calls."""
        per_tile = math.inf
        with torch.inference_mode(), self._autocast(self.precision):
            self.model(x1)
            for _ in range(2):
                start = time.perf_counter()
                self.model(x1)
                per_tile = min(per_tile, time.perf_counter() - start)
        return per_tile

    def _counted(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self._tiles_left is not None:
            self._tiles_left -= len(x)
        return out


def _freeze(model: nn.Module, example: torch.Tensor) -> Any:
    """A frozen TorchScript trace of ``model`` for inputs shaped like ``example``, or None when it
    cannot be traced or its fp32 probabilities differ from the eager model's by more than 1e-3."""
    import warnings

    try:
        with (
            torch.no_grad(),
            torch.autocast(example.device.type, enabled=False),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            frozen = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
            ref = torch.softmax(model(example).float(), 1)
            got = torch.softmax(frozen(example).float(), 1)
        if not torch.allclose(ref, got, atol=1e-3):
            log.info(
                "frozen model differs from the eager one (max %.2e); using the eager model",
                float((ref - got).abs().max()),
            )
            return None
        return frozen
    except Exception as exc:  # tracing is best effort: any model still runs eagerly
        log.info(
            "cannot freeze the model (%s: %s); using the eager model",
            type(exc).__name__,
            str(exc).splitlines()[0][:200],
        )
        return None


def make_runner(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    precision: Precision,
    tta: str,
    *,
    freeze: bool | None = None,
    cache: ModelCache | None = None,
    tiles: int | None = None,
) -> Runner:
    """A :class:`Runner` for a module (plain callables are wrapped)."""
    if not isinstance(model, nn.Module):
        fn = model

        class _Wrapped(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return fn(x)

        model = _Wrapped()
    return Runner(model, device, precision, tta, freeze=freeze, cache=cache, tiles=tiles)
