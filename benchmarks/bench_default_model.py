"""Benchmark the bundled models on CPU: end-to-end Mpx/s of ``geoseg predict``, default against
fast.

Builds a textured 3-band uint8 raster (tiled 512, DEFLATE, like a COG) of ``--size``², then times,
in one run and alternating, ``predict_raster`` with each bundled model (``quality``, the default,
and ``fast``) at their own defaults (tile 512, the model's overlap, gaussian blend,
``--precision auto``). The first call of each model (it chooses the precision and measures the
frozen trace) is reported on its own; the figure is the median of the later calls, with the spread,
and the ratio of the two medians.

Usage: python benchmarks/bench_default_model.py [--size 8192] [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import machine_facts, make_raster, spread

from geoseg.inference import predict_raster
from geoseg.models import load_checkpoint
from geoseg.models.default import BUNDLED_MODELS, bundled_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine_facts()}")
    with tempfile.TemporaryDirectory(prefix="geoseg-bench-default-") as tmp:
        os.environ["GEOSEG_CACHE_DIR"] = str(Path(tmp, "model-cache"))
        src = make_raster(Path(tmp, "scene.tif"), args.size)
        models = {}
        for name in BUNDLED_MODELS:
            path = bundled_model(name)
            assert path is not None
            loaded = load_checkpoint(path)
            cfg = loaded.config
            params = sum(p.numel() for p in loaded.model.parameters())
            held = (cfg.metrics.get("test") or {}).get("miou")
            print(
                f"{name}: {path.name}, {cfg.architecture}/{cfg.encoder}, {params / 1e6:.2f} M "
                f"parameters, {path.stat().st_size / 1e6:.1f} MB on disk, tile {cfg.tile_size}, "
                f"overlap {cfg.overlap}"
                + (f", held-out mIoU {held:.3f}" if held is not None else "")
            )
            models[name] = path
        runs: dict[str, list[float]] = {n: [] for n in models}
        first: dict[str, tuple[float, str]] = {}
        for k in range(args.repeat + 1):
            for name, path in models.items():
                res = predict_raster(src, Path(tmp, f"{name}{k}.tif"), path, precision="auto")
                if k == 0:
                    first[name] = (res.megapixels_per_second, res.precision)
                else:
                    runs[name].append(res.megapixels_per_second)
    print(
        f"{args.size}x{args.size} RGB raster, {args.threads} threads, {args.repeat} timed runs "
        "each, alternating"
    )
    for name in models:
        print(
            f"  {name:8s} first call {first[name][0]:.2f} Mpx/s (precision {first[name][1]}), "
            f"later calls {spread(runs[name])} Mpx/s (median, min..max)"
        )
    q, f = statistics.median(runs["quality"]), statistics.median(runs["fast"])
    print(f"  quality / fast speed: {q / f:.2f} (fast is {f / q:.2f}x faster)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
