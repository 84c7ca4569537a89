"""What a first run pays: ``geoseg predict`` of a 4096² raster with an empty model cache against
the same command with the cache filled, in one run.

Each call is a fresh process (``python -m geoseg predict``) with the bundled model; the cold calls
get a new, empty ``GEOSEG_CACHE_DIR`` each, the warm calls share one filled by an untimed call.
Cold and warm alternate, ``--repeat`` times each; the figure is the ratio of the medians (goal
<= 1.2). Then one cold and one warm process time their phases (building the network, with torch
alone for a bundled model; choosing the precision; tracing and freezing; loading the
kept trace; the forward passes), without a profiler's overhead; and one more cold call runs
under cProfile and its top entries by cumulative time are printed.

Usage: python benchmarks/bench_first_call.py [--size 4096] [--repeat 3] [--model quality]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import machine_facts, make_raster, spread


def call(src: Path, out: Path, model: str, cache: Path) -> float:
    env = {**os.environ, "GEOSEG_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "geoseg", "-q", "predict", str(src), str(out), "--model", model]
    start = time.perf_counter()
    subprocess.run([*cmd, "--overwrite"], check=True, env=env)
    return time.perf_counter() - start


def profile_cold(src: Path, out: Path, model: str, cache: Path, top: int) -> str:
    """The top entries of one cold run, profiled in this process (imports included)."""
    os.environ["GEOSEG_CACHE_DIR"] = str(cache)
    from click.testing import CliRunner

    profiler = cProfile.Profile()
    profiler.enable()
    from geoseg.cli import cli

    result = CliRunner().invoke(
        cli, ["-q", "predict", str(src), str(out), "--model", model, "--overwrite"]
    )
    profiler.disable()
    assert result.exit_code == 0, result.output
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
    return text.getvalue()


PHASES = """
import sys, time, warnings
warnings.simplefilter("ignore")
from geoseg.inference import predict_raster, runtime, session
from geoseg.inference.cache import ModelCache
spent = {}
def timed(owner, name, label):
    inner = getattr(owner, name)
    def call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - start
    setattr(owner, name, call)
timed(session, "resolve_model", "build the network (with torch alone for a bundled model)")
timed(runtime.Runner, "choose_precision", "choose the precision (trace, then bf16 on a tile)")
timed(runtime, "_freeze", "trace, freeze and check")
timed(ModelCache, "load_module", "load the kept trace")
timed(runtime.Runner, "__call__", "all forward passes (tracing included)")
start = time.perf_counter()
predict_raster(sys.argv[1], sys.argv[2], sys.argv[3], overwrite=True)
total = time.perf_counter() - start
print(f"  in-process total {total:.2f} s: " + "; ".join(f"{k} {v:.2f} s" for k, v in spent.items()))
"""


def phases(src: Path, out: Path, model: str, cache: Path) -> str:
    """Where one fresh process spends its time, with ``cache`` as the model cache."""
    env = {**os.environ, "GEOSEG_CACHE_DIR": str(cache)}
    args = [sys.executable, "-c", PHASES, str(src), str(out), model]
    return subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default="quality")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(machine_facts())
    with tempfile.TemporaryDirectory(prefix="geoseg-first-call-") as tmp:
        root = Path(tmp)
        src = make_raster(root / "scene.tif", args.size, seed=0)
        warm_cache = root / "warm-cache"
        call(src, root / "out.tif", args.model, warm_cache)  # fills the warm cache
        cold, warm = [], []
        for i in range(args.repeat):
            cold.append(call(src, root / "out.tif", args.model, root / f"cold-{i}"))
            warm.append(call(src, root / "out.tif", args.model, warm_cache))
        c, w = statistics.median(cold), statistics.median(warm)
        print(f"\n## geoseg predict, {args.size}² raster, model {args.model}, x{args.repeat}")
        print(f"empty model cache: {c:.2f} s {spread(cold)}")
        print(f"filled model cache: {w:.2f} s {spread(warm)}")
        print(f"cold / warm = {c / w:.3f} (goal <= 1.2)")
        print("\n## phases of one cold and one warm process")
        print("cold:" + phases(src, root / "out.tif", args.model, root / "cold-phases"), end="")
        print("warm:" + phases(src, root / "out.tif", args.model, root / "cold-phases"), end="")
        print(f"\n## top {args.top} entries of one cold run (cumulative time)")
        cache = root / "cold-profiled"
        print(profile_cold(src, root / "profiled.tif", args.model, cache, args.top))


if __name__ == "__main__":
    main()
