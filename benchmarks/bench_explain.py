"""Benchmark Grad-CAM against the forward pass of the same tiles (ratio measured in one run).

Reads ``--tiles`` real 512-px tiles of the sample scene (normalized as predict does), then times
in one process: the eager fp32 forward of each batch (``inference_mode``), and Grad-CAM and
Grad-CAM++ of the same batches (forward with autograd, backward to the layer, channel weights).
Prints per-tile seconds and the ratio Grad-CAM / forward. On a CUDA machine it also runs there.

Usage: python benchmarks/bench_explain.py [--model CKPT] [--layer decoder.block3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from rasterio.windows import Window

from geoseg.explain.cam import CamComputer
from geoseg.explain.layers import resolve_layer
from geoseg.inference.tiles import read_tile
from geoseg.io.reader import RasterReader
from geoseg.models import load_checkpoint
from geoseg.models.default import default_model

SCENE = Path(__file__).resolve().parents[1] / "sample_data" / "rotterdam_ps_rgb.tif"


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--layer", default=None)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    loaded = load_checkpoint(args.model or default_model())
    cfg = loaded.config
    with RasterReader(SCENE) as reader:
        tiles = [
            read_tile(reader, Window(c, r, 512, 512), cfg.normalization)
            for r, c in ((388, 0), (388, 388))
        ]
    x = torch.from_numpy(np.stack([t[0] for t in tiles if t is not None][: args.batch]))
    masks = torch.ones(x.shape[0], *x.shape[-2:])
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"{cfg.architecture}/{cfg.encoder}, batch {x.shape[0]} x 512 px tiles of {SCENE.name}, "
        f"median of {args.repeat}"
    )
    for dev in devices:
        model = loaded.model.eval().to(dev)
        name, layer = resolve_layer(model.cpu(), args.layer, cfg.in_channels)
        model.to(dev)
        xd = x.to(dev)

        def forward(model: torch.nn.Module = model, xd: torch.Tensor = xd, dev: str = dev) -> None:
            with torch.inference_mode():
                model(xd)
            if dev == "cuda":
                torch.cuda.synchronize()

        fwd = timed(forward, args.repeat)
        line = [f"  {dev}: forward {fwd / x.shape[0] * 1000:.0f} ms/tile"]
        for method in ("gradcam", "gradcam++"):
            cam = CamComputer(model, layer, 0, method, dev)

            def run(cam: CamComputer = cam, xd: torch.Tensor = xd, dev: str = dev) -> None:
                cam(xd, masks)
                if dev == "cuda":
                    torch.cuda.synchronize()

            t = timed(run, args.repeat)
            cam.close()
            line.append(
                f"{method} at {name} {t / x.shape[0] * 1000:.0f} ms/tile = {t / fwd:.2f} x forward"
            )
        print("; ".join(line))


if __name__ == "__main__":
    main()
