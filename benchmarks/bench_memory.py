"""Peak memory of ``evaluate`` and ``diagnose`` on a large, mostly-nodata raster.

Makes a ``--size`` x ``--size`` 3-band uint8 GeoTIFF (default 20000², tiled and compressed) whose
only data is a ``--data`` px square in the middle, and a uint8 label raster of the same grid
(random classes over the data, background elsewhere), both written window by window. Then runs
``evaluate`` (with quicklooks) and ``diagnose`` (every output) with the bundled ``fast`` model on
the CPU, each in a fresh process, and prints each process's peak resident memory (``ru_maxrss``).
Both stream the image in bands of rows, so the figure should stay near the engine's own working
set whatever the size (goal: <= 2 GB each). Memory, unlike time, is not disturbed by a busy
machine.

Usage: python benchmarks/bench_memory.py [--size 20000] [--data 2048] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
GOAL_GB = 2.0

_RUN = """
import json, resource, sys, time
from geoseg.evaluation.evaluate import EvalPair, evaluate
from geoseg.evaluation.diagnose import diagnose
from geoseg.models.default import named_model

tool, image, labels, out = sys.argv[1:5]
pairs = [EvalPair(image, labels, "big")]
start = time.perf_counter()
if tool == "evaluate":
    report = evaluate(named_model("fast"), pairs, out_dir=out, device="cpu")
else:
    report = diagnose(named_model("fast"), pairs, out, device="cpu", overwrite=True).report
print(json.dumps({
    "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "seconds": time.perf_counter() - start,
    "pixels": int(report.scores.confusion.sum()),
}))
"""


def make_inputs(folder: Path, size: int, data: int, seed: int = 0) -> tuple[Path, Path]:
    """The image (data only in a centred ``data``-px square, 0 = nodata elsewhere) and its labels,
    written in bands of 512 rows so the generator itself stays small."""
    rng = np.random.default_rng(seed)
    transform = rasterio.transform.from_origin(500_000, 5_800_000, 0.5, 0.5)
    common = {
        "driver": "GTiff",
        "height": size,
        "width": size,
        "dtype": "uint8",
        "crs": "EPSG:32640",
        "transform": transform,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "bigtiff": "if_safer",
    }
    lo, hi = (size - data) // 2, (size - data) // 2 + data
    image, labels = folder / "image.tif", folder / "labels.tif"
    with (
        rasterio.open(image, "w", count=3, nodata=0, **common) as img,
        rasterio.open(labels, "w", count=1, **common) as lab,
    ):
        for r0 in range(0, size, 512):
            rows = min(512, size - r0)
            pixels = np.zeros((3, rows, size), np.uint8)
            truth = np.zeros((1, rows, size), np.uint8)
            a, b = max(lo, r0), min(hi, r0 + rows)
            if a < b:
                pixels[:, a - r0 : b - r0, lo:hi] = rng.integers(1, 255, (3, b - a, data))
                truth[:, a - r0 : b - r0, lo:hi] = rng.integers(0, 5, (1, b - a, data))
            window = Window(0, r0, size, rows)
            img.write(pixels, window=window)
            lab.write(truth, window=window)
    return image, labels


def run(tool: str, image: Path, labels: Path, out: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, tool, str(image), str(labels), str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise SystemExit(f"{tool} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000, help="raster edge in pixels")
    parser.add_argument("--data", type=int, default=2048, help="edge of the square holding data")
    parser.add_argument("--workdir", type=Path, help="where to write (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the rasters and outputs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="geoseg-bench-memory-", dir=args.workdir))
    try:
        start = time.perf_counter()
        image, labels = make_inputs(work, args.size, args.data)
        print(
            f"inputs: {args.size}x{args.size} px, data in a {args.data}x{args.data} px square "
            f"({time.perf_counter() - start:.0f} s to write)"
        )
        worst = 0.0
        for tool in ("evaluate", "diagnose"):
            got = run(tool, image, labels, work / tool)
            gb = got["peak_rss_kb"] * 1024 / 1e9
            worst = max(worst, gb)
            print(
                f"{tool:<9} peak RSS {gb:.2f} GB ({got['pixels']:,} labelled pixels scored, "
                f"{got['seconds']:.0f} s)"
            )
        print(f"goal <= {GOAL_GB:.0f} GB each: {'met' if worst <= GOAL_GB else 'NOT met'}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
