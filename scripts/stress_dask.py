"""Run ``geoseg predict`` many times on a Dask worker with several threads and count the worker's
deaths from its own log (the nanny restarts a dead worker silently, so a run can succeed while a
worker crashed under it).

A scheduler and one worker (``--nthreads``) start on 127.0.0.1 as a user would start them; each
run predicts one raster as blocks with the bundled ``fast`` model, so the worker's threads share
one model. Every mask must equal the in-process mask.

Usage: python scripts/stress_dask.py [--runs 20] [--nthreads 2] [--size 1024] [--block 256]
Exit status 1 when a worker died or a mask differed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

DEATHS = ("was killed by signal", "exited with status", "Restarting worker")


def raster(path: Path, size: int) -> Path:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:size, 0:size]
    data = np.stack([np.sin(x / (9.0 + k)) + np.cos(y / 13.0) for k in range(3)])
    data = np.clip((data + rng.normal(0, 0.3, data.shape) + 2.5) * 50, 1, 255).astype(np.uint8)
    profile = {"driver": "GTiff", "height": size, "width": size, "count": 3, "dtype": "uint8"}
    transform = rasterio.transform.from_origin(600000, 5800000, 0.5, 0.5)
    with rasterio.open(
        path, "w", crs="EPSG:32631", transform=transform, tiled=True, **profile
    ) as ds:
        ds.write(data)
    return path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--nthreads", type=int, default=2)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--block", type=int, default=256)
    args = parser.parse_args()
    from distributed import Client

    from geoseg.distributed import predict_many
    from geoseg.inference import predict_raster

    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or "dask"
    with tempfile.TemporaryDirectory(prefix="geoseg-stress-dask-") as tmp:
        root = Path(tmp)
        scene = raster(root / "scene.tif", args.size)
        predict_raster(scene, root / "reference.tif", "fast", precision="fp32")
        with rasterio.open(root / "reference.tif") as ds:
            reference = ds.read()
        info, log = root / "scheduler.json", root / "worker.log"
        with (root / "scheduler.log").open("w") as slog, log.open("w") as wlog:
            scheduler = subprocess.Popen(
                [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                 "--scheduler-file", str(info)], stdout=slog, stderr=subprocess.STDOUT,
            )  # fmt: skip
            while not info.exists():
                time.sleep(0.1)
            address = json.loads(info.read_text())["address"]
            worker = subprocess.Popen(
                [dask, "worker", address, "--nthreads", str(args.nthreads), "--nworkers", "1",
                 "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "0"],
                stdout=wlog, stderr=subprocess.STDOUT,
            )  # fmt: skip
            differed, ran = 0, None  # ran: log bytes written during the runs
            try:
                with Client(address, timeout="30s") as client:
                    client.wait_for_workers(1, timeout=120)
                for run in range(args.runs):
                    out = root / f"run{run}"
                    start = time.perf_counter()
                    predict_many(
                        [scene], out, "fast", scheduler=address, block_size=args.block,
                        precision="fp32",
                    )  # fmt: skip
                    with rasterio.open(out / "scene_classes.tif") as ds:
                        same = bool((ds.read() == reference).all())
                    differed += not same
                    print(
                        f"run {run + 1}/{args.runs}: {time.perf_counter() - start:.1f} s, mask "
                        f"{'identical' if same else 'DIFFERS'}",
                        flush=True,
                    )
                time.sleep(1.0)  # the worker logs a death within its nanny's poll interval
                ran = log.stat().st_size  # what follows is the teardown, stopped by this script
            finally:
                worker.terminate()
                scheduler.terminate()
                worker.wait(timeout=60)
                scheduler.wait(timeout=60)
        text = log.read_bytes().decode(errors="replace")
        deaths = [line for line in text[:ran].splitlines() if any(d in line for d in DEATHS)]
        after = text[ran:] if ran is not None else ""
        stopped = [line for line in after.splitlines() if any(d in line for d in DEATHS)]
    print(
        f"{args.runs} runs on one worker x {args.nthreads} threads: {len(deaths)} worker "
        f"death(s) in its log, {differed} mask(s) different from the in-process one"
    )
    for line in deaths:
        print("  " + line)
    if stopped:
        print(f"(and {len(stopped)} line(s) from stopping the worker after the last run)")
    return 1 if deaths or differed else 0


if __name__ == "__main__":
    os.environ.setdefault("GEOSEG_CACHE_DIR", tempfile.mkdtemp(prefix="geoseg-stress-cache-"))
    sys.exit(main())
