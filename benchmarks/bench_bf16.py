"""How much faster bf16 runs than fp32 on this CPU, for the network of ``bench_predict.py``.

The forward pass alone (no I/O, no blending): a U-Net-ResNet34, 6 classes, 512² tiles, in
channels-last, timed against the eager fp32 forward of a batch of 4 tiles measured in the same run
(the baseline pytorch-toolbelt runs). Variants: eager bf16 (autocast), a frozen TorchScript trace
run tile by tile (what geoseg runs), the same trace on the whole batch, and, with ``--compile``,
``torch.compile``. The best of these bounds what any engine can reach in bf16 against an fp32
baseline on this machine.

Usage: python benchmarks/bench_bf16.py [--repeat 5] [--threads 2] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import machine_facts, spread

TILE, CLASSES, BATCH = 512, 6, 4


def seconds(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Wall times of ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def frozen(model: torch.nn.Module, example: torch.Tensor) -> Any:
    """A frozen TorchScript trace, warmed up (its first calls optimise the graph)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trace = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
    for _ in range(2):
        trace(example)
    return trace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_facts())
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    net = smp.Unet("resnet34", encoder_weights=None, in_channels=3, classes=CLASSES)
    net = net.eval().to(memory_format=torch.channels_last)
    x = torch.randn(BATCH, 3, TILE, TILE).contiguous(memory_format=torch.channels_last)
    one = x[:1]
    results: dict[str, list[float]] = {}
    with torch.inference_mode():
        results["eager fp32, batch 4 (baseline)"] = seconds(lambda: net(x), args.repeat)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results["eager bf16, batch 4"] = seconds(lambda: net(x), args.repeat)
            tile_trace = frozen(net, one)
            results["frozen bf16, tile by tile"] = seconds(
                lambda: [tile_trace(x[i : i + 1]) for i in range(BATCH)], args.repeat
            )
            batch_trace = frozen(net, x)
            results["frozen bf16, batch 4"] = seconds(lambda: batch_trace(x), args.repeat)
    if args.compile:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            compiled = torch.compile(net)
            start = time.perf_counter()
            compiled(x)
            print(f"torch.compile: first call {time.perf_counter() - start:.1f} s")
            results["torch.compile bf16, batch 4"] = seconds(lambda: compiled(x), args.repeat)
    base = statistics.median(results["eager fp32, batch 4 (baseline)"])
    print(f"\nforward of {BATCH} tiles of {TILE}², medians (min..max) of {args.repeat}")
    for name, times in results.items():
        ratio = base / statistics.median(times)
        print(f"  {name:<32} {spread(times, '{:.3f}')} s  {ratio:5.2f}x faster than fp32")


if __name__ == "__main__":
    main()
