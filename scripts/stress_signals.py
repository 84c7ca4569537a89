"""Interrupt ``geoseg predict`` many times at random moments and print the exit-code histogram.

Each run segments a 1024² raster with a small U-Net into a mask, a confidence raster, polygons and
a quicklook (every optional output), and receives SIGTERM or SIGINT at a random moment between
the moment the process catches it (geoseg's handlers installed, read from /proc/PID/status) and
its usual end. Every run must end with 130 (interrupted: nothing half-written) or 0 (finished
before the signal), never with a negative status (killed by a signal: a crash), and its outputs
must all be there, whole, or none of them; a rerun must leave no temporary file.

Usage: python scripts/stress_signals.py [--runs 50] [--signals TERM,INT] [--seed 0]
Exit status 1 when any run crashed or published by halves.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

OUTPUTS = ("mask.tif", "conf.tif", "mask.gpkg", "mask.png")


def handled(pid: int, sig: signal.Signals, timeout: float = 30.0) -> float:
    """Wait until process ``pid`` catches ``sig`` (its bit in ``SigCgt`` of /proc/PID/status: the
    interpreter has reached geoseg's first line, which installs the handler; before that the
    system's default action ends a process that has written nothing). Returns the seconds waited."""
    start = time.perf_counter()
    status = Path(f"/proc/{pid}/status")
    while time.perf_counter() - start < timeout:
        try:
            line = next(x for x in status.read_text().splitlines() if x.startswith("SigCgt:"))
        except (OSError, StopIteration):
            break  # the process has ended (or no /proc): signal it now
        if int(line.split()[1], 16) >> (sig - 1) & 1:
            break
        time.sleep(0.005)
    return time.perf_counter() - start


def make_inputs(folder: Path) -> tuple[Path, Path]:
    """A 1024² textured RGB GeoTIFF and a small 3-stage U-Net checkpoint."""
    from geoseg.classes import ClassTable
    from geoseg.models import ModelConfig, build_model, save_checkpoint

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1024, 0:1024]
    data = np.stack([np.sin(x / (7.0 + k)) + np.cos(y / 11.0) for k in range(3)])
    data = np.clip((data + rng.normal(0, 0.3, data.shape) + 2.5) * 50, 1, 255).astype(np.uint8)
    scene = folder / "scene.tif"
    profile = {"driver": "GTiff", "height": 1024, "width": 1024, "count": 3, "dtype": "uint8"}
    transform = rasterio.transform.from_origin(600000, 5800000, 0.5, 0.5)
    with rasterio.open(scene, "w", crs="EPSG:32631", transform=transform, **profile) as ds:
        ds.write(data)
    kwargs = {"encoder_depth": 3, "decoder_channels": [16, 8, 8]}
    config = ModelConfig(
        "unet", "resnet18", 3, ClassTable.from_names(["background", "building", "water"]),
        band_dtype="uint8", gsd=0.5, tile_size=256, overlap=32, model_kwargs=kwargs,
        output_stride=8,
    )  # fmt: skip
    ckpt = save_checkpoint(
        build_model("unet", "resnet18", in_channels=3, classes=3, **kwargs),
        config,
        folder / "tiny.safetensors",
    )
    return scene, ckpt


def command(scene: Path, ckpt: Path) -> list[str]:
    return [
        sys.executable, "-m", "geoseg", "-q", "predict", str(scene), "out/mask.tif",
        "--model", str(ckpt), "--precision", "fp32", "--confidence", "out/conf.tif",
        "--vector", "out/mask.gpkg", "--quicklook", "out/mask.png",
    ]  # fmt: skip


def verdict(out: Path) -> str | None:
    """What is wrong with the outputs of one run, or None."""
    there = [n for n in OUTPUTS if (out / n).exists()]
    if there and there != list(OUTPUTS):
        return f"published by halves: {there}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50, help="runs per signal")
    parser.add_argument("--signals", default="TERM,INT")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started as a background job: the runs would inherit Ctrl-C ignored, and never stop
        signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = random.Random(args.seed)
    sigs = [getattr(signal, f"SIG{s.strip().upper()}") for s in args.signals.split(",")]
    bad: list[str] = []
    with tempfile.TemporaryDirectory(prefix="geoseg-stress-") as tmp:
        root = Path(tmp)
        scene, ckpt = make_inputs(root)
        (root / "out").mkdir()
        start = time.perf_counter()  # one whole run tells how long a run lasts here
        subprocess.run(command(scene, ckpt), cwd=root, check=True)
        usual = time.perf_counter() - start
        print(
            f"one uninterrupted run: {usual:.1f} s; signals at 0-{usual:.1f} s after geoseg's "
            "handlers are installed",
            flush=True,
        )
        for sig in sigs:
            histogram: collections.Counter[str] = collections.Counter()
            for run in range(args.runs):
                out = root / "out"
                for p in out.iterdir():
                    p.unlink()
                proc = subprocess.Popen(
                    command(scene, ckpt), cwd=root, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
                ready = handled(proc.pid, sig)
                time.sleep(rng.uniform(0.0, max(usual - ready, 0.0)))
                proc.send_signal(sig)
                _, err = proc.communicate(timeout=600)
                rc = proc.returncode
                histogram[signal.Signals(-rc).name if rc < 0 else str(rc)] += 1
                problem = verdict(out)
                if rc < 0:
                    problem = f"killed by {signal.Signals(-rc).name}: {err.strip()[-300:]}"
                elif rc not in (0, 130):
                    problem = f"exit {rc}: {err.strip()[-300:]}"
                if problem:
                    bad.append(f"{sig.name} run {run}: {problem}")
                # the next run of the same command cleans what a killed run could leave
                leftovers = [p.name for p in out.iterdir() if ".partial" in p.name]
                if leftovers and rc in (0, 130):
                    bad.append(f"{sig.name} run {run}: temporary files left: {leftovers}")
            shown = ", ".join(f"{k}: {v}" for k, v in sorted(histogram.items()))
            print(f"SIG{sig.name[3:]} x {args.runs}: exit statuses {{{shown}}}", flush=True)
    for line in bad:
        print(line)
    crashes = sum(1 for line in bad if "killed by" in line)
    print(f"{crashes} crash(es), {len(bad) - crashes} other problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    os.environ.setdefault("GEOSEG_CACHE_DIR", tempfile.mkdtemp(prefix="geoseg-stress-cache-"))
    sys.exit(main())
