"""Benchmark ``predict_raster`` against the pure forward pass and pytorch-toolbelt, in one run.

Builds textured 3-band uint8 rasters (tiled 512, DEFLATE) of 2048² and 16384², a U-Net-ResNet34
with 6 classes (random weights: speed does not depend on them), and prints:

1. the pure forward time of exactly the tiles geoseg runs (read into memory beforehand, same
   batch size, precision, channels_last, inference_mode) against geoseg's end-to-end time
   (read, normalise, forward, blend, write the COG): the ratio should be <= 1.10;
2. geoseg against pytorch-toolbelt's ImageSlicer/TileMerger (fp32, batch 4, same 50 % overlap,
   whole image in memory, pyramid weights, argmax, GeoTIFF written);
3. peak RSS of a whole ``geoseg predict`` process on 2048² and 16384² (child processes).

The model cache (auto precision, frozen-vs-eager measurement, frozen modules) lives in a fresh
folder of the run: the first geoseg call fills it (and is reported on its own line), the timed
runs use it, as every call after the first does on a user's machine.

Usage: python benchmarks/bench_predict.py [--big 16384] [--skip-big] [--skip-toolbelt]
       [--repeat 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from geoseg.classes import ClassTable
from geoseg.inference import predict_raster
from geoseg.inference.runtime import Runner
from geoseg.inference.tiles import read_tile
from geoseg.io.reader import RasterReader
from geoseg.io.windows import plan_tiles
from geoseg.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
from geoseg.normalize import Normalization

TILE, CLASSES, BATCH = 512, 6, 4


def machine_facts() -> str:
    """CPU model, cores, load averages and library versions, for the header of a benchmark."""
    cpu = platform.processor() or "cpu"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, load average {load} (1/5/15 min; above the core count the "
        f"machine is shared/busy); Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, CPU bf16 native: "
        f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}"
    )


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """``median (min..max)`` of some values."""
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}..{fmt.format(max(values))})"
    )


def make_raster(path: Path, size: int, seed: int = 0) -> Path:
    """Textured imagery (smooth fields + edges + noise), written strip by strip."""
    rng = np.random.default_rng(seed)
    profile = dict(
        driver="GTiff",
        height=size,
        width=size,
        count=3,
        dtype="uint8",
        crs="EPSG:32631",
        transform=rasterio.transform.from_origin(600000, 5700000, 0.5, 0.5),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        nodata=0,
    )
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, 1024):
            h = min(1024, size - r)
            y, x = np.mgrid[r : r + h, 0:size].astype(np.float32)
            bands = []
            for k in range(3):
                v = (
                    90
                    + 40 * np.sin(x / (37 + 11 * k)) * np.cos(y / (53 - 7 * k))
                    + 30 * ((x // 97 + y // 61) % 3)
                )
                bands.append(v + rng.normal(0, 12, size=(h, size)))
            dst.write(
                np.clip(np.stack(bands), 1, 255).astype(np.uint8), window=Window(0, r, size, h)
            )
    return path


def make_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(
        "unet",
        "resnet34",
        3,
        ClassTable.from_names(["background", "building", "land", "road", "vegetation", "water"]),
        band_names=("red", "green", "blue"),
        band_dtype="uint8",
        normalization=Normalization("scale", scale=255.0),
        tile_size=TILE,
        overlap=128,
    )
    return save_checkpoint(
        build_model("unet", "resnet34", in_channels=3, classes=CLASSES), cfg, path
    )


def pure_forward(src: Path, ckpt: Path, overlap: float, precision: str) -> tuple[float, int]:
    """Seconds for the model alone on the same tiles geoseg runs (no I/O, no blending), through the
    same network geoseg uses (eager or frozen, as the model cache says)."""
    loaded = load_checkpoint(ckpt)
    runner = Runner(loaded.model, torch.device("cpu"), precision)  # type: ignore[arg-type]
    with RasterReader(src) as r:
        plan = plan_tiles(r.height, r.width, TILE, overlap)
        tiles = [read_tile(r, t.window, loaded.config.normalization) for t in plan]
    xs = [t[0] for t in tiles if t is not None]
    runner(torch.from_numpy(np.stack(xs[:1])))  # warm-up, as geoseg's first batch is
    start = time.perf_counter()
    for i in range(0, len(xs), BATCH):
        runner(torch.from_numpy(np.stack(xs[i : i + BATCH])))
    return time.perf_counter() - start, len(xs)


def geoseg_e2e(
    src: Path, ckpt: Path, out: Path, overlap: float, precision: str
) -> tuple[float, str]:
    loaded = load_checkpoint(ckpt)
    warm = "fp32" if precision == "auto" else precision
    Runner(loaded.model, torch.device("cpu"), warm)(
        torch.zeros(1, 3, TILE, TILE)
    )  # the same warm-up as pure_forward
    start = time.perf_counter()
    res = predict_raster(
        src,
        out,
        loaded,
        overlap=overlap,
        batch_size=BATCH,
        precision=precision,  # type: ignore[arg-type]
        device="cpu",
        overwrite=True,
    )
    return time.perf_counter() - start, res.precision


def net_used(ckpt: Path, precision: str) -> str:
    """What the model cache says about the network geoseg ran: the frozen trace, or the eager
    network when the model cannot be traced (the choice is the same on every run: nothing is
    timed)."""
    from geoseg.inference.cache import ModelCache, module_digest
    from geoseg.inference.runtime import freeze_record

    cache = ModelCache(module_digest(load_checkpoint(ckpt).model))
    rec = cache.get(freeze_record(torch.device("cpu"), (1, 3, TILE, TILE), torch.channels_last))
    return f"network: {'frozen TorchScript' if (rec or {}).get('frozen') else 'eager'}"


def toolbelt(src: Path, ckpt: Path, out: Path, *, own: bool = False) -> float:
    """pytorch-toolbelt's documented recipe: whole image in memory, ImageSlicer/TileMerger; with
    ``own``, the checkpoint's own normalization, tile size and overlap (else x / 255, 512 px tiles
    at 50 % overlap)."""
    from pytorch_toolbelt.inference.tiles import ImageSlicer, TileMerger

    loaded = load_checkpoint(ckpt)
    model, cfg = loaded.model.eval(), loaded.config
    tile, step = (cfg.tile_size, cfg.tile_size - cfg.overlap) if own else (TILE, TILE // 2)
    start = time.perf_counter()
    with rasterio.open(src) as ds:
        image = ds.read()
        profile = ds.profile
    image = (cfg.normalization.apply(image.astype(np.float32)) if own else image / 255.0).astype(
        np.float32
    )
    image = image.transpose(1, 2, 0)
    slicer = ImageSlicer(image.shape, tile_size=tile, tile_step=step, weight="pyramid")
    tiles = [t.transpose(2, 0, 1) for t in slicer.split(image)]
    merger = TileMerger(slicer.target_shape, cfg.num_classes, slicer.weight)
    with torch.inference_mode():
        for i in range(0, len(tiles), BATCH):
            batch = torch.from_numpy(np.stack(tiles[i : i + BATCH]))
            probs = torch.softmax(model(batch), 1)
            merger.integrate_batch(probs, slicer.crops[i : i + BATCH])
    merged = merger.merge().numpy()
    mask = slicer.crop_to_orignal_size(merged.transpose(1, 2, 0)).argmax(-1).astype(np.uint8)
    profile.update(count=1, dtype="uint8", nodata=255, compress="deflate")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(mask, 1)
    return time.perf_counter() - start


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    res = predict_raster(
        args.src, args.out, args.ckpt, precision=args.precision, device="cpu", overwrite=True
    )
    # VmHWM, not ru_maxrss: the latter keeps the forked parent's high-water mark across exec
    hwm = next(
        line
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM")
    )
    rss = int(hwm.split()[1]) / 1024
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - start,
                "peak_rss_mb": rss,
                "precision": res.precision,
                "mpx_s": res.megapixels_per_second,
                "tiles": res.tiles,
            }
        )
    )


def run_child(src: Path, ckpt: Path, out: Path, precision: str, threads: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--src",
        str(src),
        "--ckpt",
        str(ckpt),
        "--out",
        str(out),
        "--precision",
        precision,
        "--threads",
        str(threads),
    ]
    return json.loads(  # type: ignore[no-any-return]
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=2048, help="edge of the raster of sections 0-3")
    ap.add_argument("--big", type=int, default=16384)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-toolbelt", action="store_true")
    ap.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="runs of the end-to-end vs forward comparison (medians)",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path)
    ap.add_argument("--ckpt", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument(
        "--keep", action="store_true", help="keep the generated files (their folder is printed)"
    )
    args = ap.parse_args()
    if args.child:
        return child(args)
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="geoseg-bench-"))
    if not args.keep:  # the rasters and outputs take hundreds of MB
        atexit.register(shutil.rmtree, tmp, True)
    os.environ["GEOSEG_CACHE_DIR"] = str(tmp / "model-cache")  # child processes inherit it
    print(f"machine: {machine_facts()}; files in {tmp}")
    ckpt = make_checkpoint(tmp / "unet_r34.safetensors")
    small = make_raster(tmp / f"scene_{args.size}.tif", args.size)
    mpx, side = args.size**2 / 1e6, f"{args.size}²"

    print(
        "\n0) first geoseg call with an empty model cache (chooses auto precision, measures the "
        f"trace), {side}"
    )
    for precision in ("fp32", "bf16"):
        cold, _ = geoseg_e2e(small, ckpt, tmp / "mask.tif", 0.5, precision)
        print(f"   {precision}: {cold:6.2f} s; {net_used(ckpt, precision)}")

    print(f"\n1) end-to-end vs pure forward, {side}, same tiles (overlap 50 %), batch 4")
    for precision in ("fp32", "bf16"):
        # alternate the two measurements and take medians: single runs vary by ~10 % on a shared
        # machine
        runs = [
            (
                pure_forward(small, ckpt, 0.5, precision),
                geoseg_e2e(small, ckpt, tmp / "mask.tif", 0.5, precision)[0],
            )
            for _ in range(args.repeat)
        ]
        n = runs[0][0][1]
        fwd = statistics.median(f for (f, _), _ in runs)
        e2e = statistics.median(e for _, e in runs)
        ratios = [e / f for (f, _), e in runs]
        print(
            f"   {precision}: {n} tiles, pure forward {spread([f for (f, _), _ in runs])} s, "
            f"geoseg end-to-end {spread([e for _, e in runs])} s (medians (min..max) of "
            f"{args.repeat}), ratio of medians {e2e / fwd:.3f}, single-run ratios "
            f"{spread(ratios, '{:.3f}')}; {mpx / e2e:.2f} Mpx/s"
        )
        if precision == "fp32":
            e2e_fp32 = e2e
        else:
            e2e_bf16 = e2e
    auto_t, auto_p = geoseg_e2e(small, ckpt, tmp / "mask.tif", 0.5, "auto")
    print(
        f"   auto: geoseg end-to-end {auto_t:6.2f} s, chose {auto_p} (random weights tie often, "
        "which can keep fp32)"
    )

    if not args.skip_toolbelt:
        print(
            f"\n2) geoseg vs pytorch-toolbelt ImageSlicer/TileMerger, {side}, 50 % overlap, batch 4"
        )
        tbs = [toolbelt(small, ckpt, tmp / "toolbelt.tif") for _ in range(3)]
        tb = statistics.median(tbs)
        print(
            f"   toolbelt fp32 {spread(tbs)} s (median (min..max) of 3) | geoseg fp32 "
            f"{e2e_fp32:6.2f} s ({tb / e2e_fp32:.2f}x) | geoseg bf16 {e2e_bf16:6.2f} s "
            f"({tb / e2e_bf16:.2f}x faster)"
        )

    print(
        "\n3) peak RSS of a whole geoseg predict process (bf16, default batch, checkpoint overlap "
        "128 px)"
    )
    r_small = run_child(small, ckpt, tmp / "m_small.tif", "bf16", args.threads)
    print(
        f"   {side}:  {r_small['peak_rss_mb']:7.0f} MB peak RSS, {r_small['seconds']:6.1f} s, "
        f"{r_small['mpx_s']:.2f} Mpx/s"
    )
    if not args.skip_big:
        big = make_raster(tmp / f"scene_{args.big}.tif", args.big)
        r_big = run_child(big, ckpt, tmp / "m_big.tif", "bf16", args.threads)
        print(
            f"   {args.big}²: {r_big['peak_rss_mb']:7.0f} MB peak RSS, {r_big['seconds']:6.1f} s, "
            f"{r_big['mpx_s']:.2f} Mpx/s, {r_big['tiles']} tiles; growth from {side}: "
            f"{r_big['peak_rss_mb'] - r_small['peak_rss_mb']:.0f} MB"
        )
    print(f"\nload average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
