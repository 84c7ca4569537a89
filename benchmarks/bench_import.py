"""Import times of geoseg's entry points, each in a fresh interpreter, against ``import torch``.

The light entry points (``import geoseg``, the dataset checker, the kind registry, the configs,
``evaluate``'s module) must stay far below the cost of torch; the ratio column says how far.
Figures are medians of ``--runs`` fresh processes, measured inside the process (interpreter
start-up excluded), with the baseline measured in the same run.

Usage: python benchmarks/bench_import.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

MODULES = [
    "geoseg",
    "geoseg.datasets.check",
    "geoseg.datasets",
    "geoseg.training",
    "geoseg.evaluation",
    "geoseg.vectorize",
    "geoseg.inference",
]
BASELINE = "torch"


def seconds(module: str) -> tuple[float, bool]:
    """Import time of ``module`` in a fresh interpreter, and whether torch got loaded."""
    code = (
        f"import time; t = time.perf_counter(); import {module}; d = time.perf_counter() - t; "
        "import sys; print(d, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), out[1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    base = statistics.median(seconds(BASELINE)[0] for _ in range(args.runs))
    print(f"{'import':<24} {'seconds':>8} {'/ torch':>8}  torch loaded")
    print(f"{BASELINE:<24} {base:8.3f} {1.0:8.2f}  yes (baseline)")
    for module in MODULES:
        runs = [seconds(module) for _ in range(args.runs)]
        t = statistics.median(r[0] for r in runs)
        print(
            f"{module:<24} {t:8.3f} {t / base:8.2f}  {'yes' if any(r[1] for r in runs) else 'no'}"
        )


if __name__ == "__main__":
    main()
