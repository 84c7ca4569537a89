"""Benchmark the bundled default model on CPU: end-to-end Mpx/s of ``geoseg predict``.

Builds a textured 3-band uint8 raster (tiled 512, DEFLATE, like a COG) of ``--size``², then
times, in one run, ``predict_raster`` with the bundled model and its own defaults (tile 512,
overlap 64, gaussian blend, ``--precision auto``), and the pure forward pass of the same tiles
(already in memory) for reference. Prints medians over ``--repeat`` runs.

Usage: python benchmarks/bench_default_model.py [--size 4096] [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import make_raster

from geoseg.inference import predict_raster
from geoseg.models import load_checkpoint
from geoseg.models.default import default_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = default_model()
    loaded = load_checkpoint(path)
    cfg = loaded.config
    weights_mb = path.stat().st_size / 1e6
    params = sum(p.numel() for p in loaded.model.parameters())
    with tempfile.TemporaryDirectory(prefix="geoseg-bench-default-") as tmp:
        src = make_raster(Path(tmp, "scene.tif"), args.size)
        runs, precision = [], ""
        for k in range(args.repeat):
            res = predict_raster(src, Path(tmp, f"out{k}.tif"), loaded, precision="auto")
            runs.append(res.megapixels_per_second)
            precision = res.precision
        # pure forward of full tiles at the chosen precision, same batch size as predict on CPU
        x = torch.randn(2, cfg.in_channels, cfg.tile_size, cfg.tile_size).contiguous(memory_format=torch.channels_last)
        model = loaded.model.to(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            model(x)
            start = time.perf_counter()
            n = 0
            while time.perf_counter() - start < 5:
                model(x)
                n += 1
            fwd = n * 2 * cfg.tile_size**2 / (time.perf_counter() - start) / 1e6
    stride = cfg.tile_size - cfg.overlap
    print(f"default model {path.name}: {cfg.architecture}/{cfg.encoder}, {params / 1e6:.2f} M parameters, "
          f"{weights_mb:.1f} MB on disk, tile {cfg.tile_size}, overlap {cfg.overlap}")
    print(f"  {args.size}x{args.size} RGB raster, {args.threads} threads, precision {precision}")
    print(f"  geoseg predict end to end: first run {runs[0]:.2f} Mpx/s (what one CLI call gets: it includes tracing the "
          f"model), later runs median {statistics.median(runs[1:] or runs):.2f} Mpx/s (runs {', '.join(f'{r:.2f}' for r in runs)})")
    print(f"  pure forward of 512-px tiles: {fwd:.2f} Mpx of tiles/s = {fwd * (stride / cfg.tile_size) ** 2:.2f} Mpx/s "
          f"of raster at this overlap")
    print(f"  end to end (later runs) / eager forward-bound rate: {statistics.median(runs[1:] or runs) / (fwd * (stride / cfg.tile_size) ** 2):.2f}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
