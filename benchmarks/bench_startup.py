"""Start-up latency: ``geoseg predict`` on the 900² sample scene against
``python -c "import torch"``.

What the web app, notebooks and ``make demo`` feel on small rasters is mostly fixed cost: imports,
building the network, choosing the precision. Both commands run as fresh processes, alternating,
``--repeat`` times each; the figure is the ratio of the medians (target <= 2.0). The first
``geoseg predict`` runs with an empty model cache (it chooses the ``auto`` precision and measures
the frozen trace) and is reported on its own line; the timed calls find the cache filled, as every
call after the first does on a user's machine.

Usage: python benchmarks/bench_startup.py [--repeat 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import machine_facts, spread

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "sample_data" / "rotterdam_ps_rgb.tif"


def wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        cmd,
        check=True,
        env=env,
        cwd=tempfile.gettempdir(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return time.perf_counter() - start


def imported(cmd: list[str], env: dict[str, str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` a run of ``cmd`` (a ``python -m ...`` command) imported."""
    code = (
        "import runpy, sys, atexit\n"
        f"atexit.register(lambda: print('MODULES', ' '.join(n for n in {names!r} if n in "
        "sys.modules), file=sys.stderr))\n"
        f"sys.argv = {cmd[2:]!r}\nrunpy.run_module({cmd[2]!r}, run_name='__main__', alter_sys=True)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
    )
    line = next((ln for ln in out.stderr.splitlines() if ln.startswith("MODULES")), "MODULES")
    return line.split()[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="geoseg-bench-startup-") as tmp:
        env = {
            **os.environ,
            "GEOSEG_CACHE_DIR": str(Path(tmp, "model-cache")),
            "OMP_NUM_THREADS": str(args.threads),
        }
        predict = [
            sys.executable,
            "-m",
            "geoseg",
            "-q",
            "predict",
            str(SCENE),
            str(Path(tmp, "mask.tif")),
            "--overwrite",
        ]
        just_torch = [sys.executable, "-c", "import torch"]
        print(f"machine: {machine_facts()}")
        cold = wall(predict, env)
        print(f"first geoseg predict, empty model cache: {cold:.2f} s")
        torch_s, predict_s = [], []
        for _ in range(args.repeat):
            torch_s.append(wall(just_torch, env))
            predict_s.append(wall(predict, env))
        ratio = statistics.median(predict_s) / statistics.median(torch_s)
        print(
            f"python -c 'import torch': {spread(torch_s)} s; geoseg predict 900² (bundled model): "
            f"{spread(predict_s)} s (medians (min..max) of {args.repeat})"
        )
        print(
            f"geoseg predict / import torch: {ratio:.2f} (single pairs "
            f"{spread([p / t for p, t in zip(predict_s, torch_s, strict=True)])}; target <= 2.0)"
        )
        heavy = imported(
            predict,
            env,
            (
                "segmentation_models_pytorch",
                "timm",
                "torchvision",
                "torchgeo",
                "lightning",
                "torch._dynamo",
            ),
        )
        print(f"heavy modules a cached predict imports: {', '.join(heavy) or 'none'}")
        print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
