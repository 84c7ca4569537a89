"""int8 on CPU against fp32, in one run: agreement, held-out mIoU, speed end to end, memory.

1. Agreement of the bundled model's int8 variant with fp32 (``quality`` unless ``--model``):
   the share of valid pixels whose class is the same, each image predicted whole through
   ``predict_classes``, on the 9 held-out Tile 8 images of the Dubai dataset (``--dubai``) and on
   the sample scene; and Tile 8 mIoU in fp32 and in int8 (goal: agreement >= 99 %, mIoU drop
   <= 0.005).
2. Speed end to end (read, normalize, forward, blend, write the COG) on a textured 4096² raster:
   geoseg int8 against geoseg fp32 (goal >= 2.5x) and against pytorch-toolbelt's tiled fp32
   inference of the same network (ImageSlicer/TileMerger, batch 4, the same overlap, whole image
   in memory; goal >= 3.5x), alternating, medians (min..max) of ``--repeat`` runs. The model
   cache lives in a fresh folder: the first geoseg call of each precision fills it (its own
   line), the timed calls use it.
3. Peak RSS of a whole ``geoseg predict --precision int8`` process on a 16384² raster (goal
   <= 1.5 GB; ``--skip-big`` leaves it out).
4. With ``--r34 CKPT`` (a U-Net-ResNet34 trained briefly on Dubai, e.g. ``geoseg train --config
   dubai-default model.encoder=resnet34 ...``): its int8 variant (calibrated here on Dubai tiles
   1-7 unless the checkpoint has one) against pytorch-toolbelt fp32 on the 4096² raster (goal
   >= 4x), and its agreement with fp32 on Tile 8.

Usage: python benchmarks/bench_int8.py --dubai "/data/Semantic segmentation dataset"
       [--model quality] [--r34 CKPT] [--size 4096] [--big 16384] [--skip-big] [--repeat 3]
       [--threads 2]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import machine_facts, make_raster, run_child, spread, toolbelt

from geoseg.classes import MASK_NODATA
from geoseg.datasets.kinds import EvalPair
from geoseg.evaluation.metrics import confusion_matrix, scores
from geoseg.export.quantize import quantize_checkpoint, training_split
from geoseg.inference import predict_classes, predict_raster
from geoseg.models import load_checkpoint
from geoseg.models.default import named_model
from geoseg.models.variants import Int8Variant

SCENE = Path(__file__).resolve().parents[1] / "sample_data" / "rotterdam_ps_rgb.tif"
BATCH = 4


def cpu_flags() -> str:
    """The CPU's int8 and bf16 instructions (VNNI makes int8 convolutions cheap; AMX more)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    wanted = ("avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "amx_tile")
    return ", ".join(f for f in wanted if f in flags) or "none of avx512_vnni/avx_vnni/amx"


def classes_of(image: str, model: Any, precision: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Dubai JPEGs are not georeferenced
        return predict_classes(image, model, precision=precision, device="cpu").data[0]


def agreement_and_miou(model: Any, pairs: list[Any]) -> dict[str, Any]:
    """Agreement of int8 with fp32 over the valid pixels of each pair's image, and the mIoU of
    both where the pair has labels."""
    loaded = load_checkpoint(model)
    ids = [c.id for c in loaded.config.classes]
    n = len(ids)
    same = total = 0
    matrices = {p: np.zeros((n, n), np.int64) for p in ("fp32", "int8")}
    per_image = []
    for pair in pairs:
        masks = {p: classes_of(pair.image, loaded, p) for p in ("fp32", "int8")}
        valid = masks["fp32"] != MASK_NODATA
        hit = int((masks["fp32"] == masks["int8"])[valid].sum())
        same, total = same + hit, total + int(valid.sum())
        per_image.append(hit / max(int(valid.sum()), 1))
        if isinstance(pair.labels, np.ndarray):
            for p, mask in masks.items():
                pred = np.full(mask.shape, -1, np.int64)
                for i, cid in enumerate(ids):
                    pred[mask == cid] = i
                matrices[p] += confusion_matrix(pred, pair.labels, n, valid=valid)
    out: dict[str, Any] = {"agreement": same / total, "per_image": per_image, "pixels": total}
    if any(m.sum() for m in matrices.values()):
        out["miou"] = {p: float(scores(m).miou) for p, m in matrices.items()}
    return out


def dubai_split(dubai: Path) -> tuple[list[str], list[Any]]:
    """Dubai tiles 1-7 (their images train the bundled model) and Tile 8 (held out, labelled)."""
    return training_split("dubai-default", [f"data.root={dubai}"])


def geoseg_e2e(src: Path, model: str, out: Path, precision: str) -> tuple[float, Any]:
    start = time.perf_counter()
    result = predict_raster(
        src, out, model, precision=precision, device="cpu", batch_size=BATCH, overwrite=True
    )
    return time.perf_counter() - start, result


def speed(src: Path, model: str, tmp: Path, repeat: int, with_fp32: bool = True) -> dict[str, Any]:
    """First calls (cache filling), then alternating timed runs: geoseg int8, geoseg fp32,
    toolbelt fp32."""
    firsts = {}
    for precision in ("int8", "fp32") if with_fp32 else ("int8",):
        seconds, result = geoseg_e2e(src, model, tmp / "mask.tif", precision)
        firsts[precision] = (seconds, result.network, result.precision)
    runs: dict[str, list[float]] = {"int8": [], "fp32": [], "toolbelt": []}
    for _ in range(repeat):
        runs["int8"].append(geoseg_e2e(src, model, tmp / "mask.tif", "int8")[0])
        if with_fp32:
            runs["fp32"].append(geoseg_e2e(src, model, tmp / "mask.tif", "fp32")[0])
        runs["toolbelt"].append(toolbelt(src, Path(model), tmp / "toolbelt.tif", own=True))
    return {"first": firsts, "runs": {k: v for k, v in runs.items() if v}}


def print_speed(label: str, side: str, figures: dict[str, Any], repeat: int) -> None:
    mpx = int(side.rstrip("²")) ** 2 / 1e6
    for precision, (seconds, network, used) in figures["first"].items():
        print(
            f"   first geoseg {precision} call (empty model cache): {seconds:6.2f} s "
            f"({used}, {network})"
        )
    runs = figures["runs"]
    median = {k: statistics.median(v) for k, v in runs.items()}
    print(f"   {label}, {side}, medians (min..max) of {repeat}:")
    for name, times in runs.items():
        print(f"     {name:<14} {spread(times)} s  {mpx / median[name]:6.2f} Mpx/s")
    if "fp32" in median:
        ratios = [f / i for f, i in zip(runs["fp32"], runs["int8"], strict=True)]
        print(
            f"     int8 vs geoseg fp32: {median['fp32'] / median['int8']:.2f}x faster (ratio of "
            f"medians; single-run ratios {spread(ratios)})"
        )
    ratios = [t / i for t, i in zip(runs["toolbelt"], runs["int8"], strict=True)]
    print(
        f"     int8 vs toolbelt fp32: {median['toolbelt'] / median['int8']:.2f}x faster (ratio of "
        f"medians; single-run ratios {spread(ratios)})"
    )


def calibrated(ckpt: str, dubai: Path | None, tmp: Path) -> str:
    """``ckpt`` if it has an int8 variant, else a copy calibrated on Dubai tiles 1-7 (Tile 8
    held out)."""
    from geoseg.models.config import read_config

    if Int8Variant.of(read_config(ckpt)) is not None:
        return ckpt
    if dubai is None:
        sys.exit(f"{ckpt} has no int8 variant: pass --dubai to calibrate one here")
    images, held_out = dubai_split(dubai)
    out = tmp / f"{Path(ckpt).stem}-int8.safetensors"
    start = time.perf_counter()
    result = quantize_checkpoint(ckpt, out, images, heldout=held_out)
    print(
        f"   calibrated {Path(ckpt).name} in {time.perf_counter() - start:.0f} s: "
        f"{result.variant.summary()}"
    )
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dubai", type=Path, help="the Dubai dataset folder (holding 'Tile 8')")
    ap.add_argument("--model", default="quality", help="a bundled name or a checkpoint")
    ap.add_argument("--r34", help="a U-Net-ResNet34 checkpoint trained on Dubai")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--big", type=int, default=16384)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-speed", action="store_true", help="agreement and memory only")
    ap.add_argument("--skip-agreement", action="store_true", help="speed and memory only")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="geoseg-bench-int8-"))
    atexit.register(shutil.rmtree, tmp, True)
    os.environ["GEOSEG_CACHE_DIR"] = str(tmp / "model-cache")  # child processes inherit it
    print(f"machine: {machine_facts()}; int8 instructions: {cpu_flags()}")
    model = str(named_model(args.model))
    variant = Int8Variant.of(load_checkpoint(model).config)
    if variant is None:
        sys.exit(f"{args.model} has no int8 variant: geoseg quantize it first")
    print(f"model {args.model}: int8 variant {variant.summary()}")

    print("\n1) agreement of int8 with fp32 (valid pixels, each image predicted whole)")
    if args.skip_agreement:
        print("   (skipped)")
    pair = EvalPair(str(SCENE), "", SCENE.name)
    scene = None if args.skip_agreement else agreement_and_miou(model, [pair])
    if scene is not None:
        share, pixels = scene["agreement"], scene["pixels"]
        print(f"   sample scene {SCENE.name}: {share:.4%} of {pixels:,} pixels")
    if args.dubai is not None and not args.skip_agreement:
        held = agreement_and_miou(model, dubai_split(args.dubai)[1])
        print(
            f"   Dubai Tile 8 (9 held-out images): {held['agreement']:.4%} of "
            f"{held['pixels']:,} pixels; per image {spread(held['per_image'], '{:.4f}')}"
        )
        miou = held["miou"]
        print(
            f"   Tile 8 mIoU: fp32 {miou['fp32']:.4f}, int8 {miou['int8']:.4f} (drop "
            f"{miou['fp32'] - miou['int8']:+.4f})"
        )

    side = f"{args.size}²"
    raster = make_raster(tmp / f"scene_{args.size}.tif", args.size)
    if not args.skip_speed:
        print(f"\n2) end to end on a textured {side} raster, batch {BATCH}, {args.threads} threads")
        print_speed(args.model, side, speed(raster, model, tmp, args.repeat), args.repeat)

    if not args.skip_big:
        big = make_raster(tmp / f"scene_{args.big}.tif", args.big)
        r = run_child(big, Path(model), tmp / "m_big.tif", "int8", args.threads)
        print(
            f"\n3) peak RSS of geoseg predict --precision int8 on {args.big}²: "
            f"{r['peak_rss_mb']:.0f} MB ({r['seconds']:.0f} s, {r['tiles']} tiles, "
            f"{r['precision']})"
        )

    if args.r34:
        print("\n4) U-Net-ResNet34")
        r34 = calibrated(args.r34, args.dubai, tmp)
        if args.dubai is not None:
            held = agreement_and_miou(r34, dubai_split(args.dubai)[1])
            print(
                f"   Tile 8 agreement of int8 with fp32: {held['agreement']:.4%}; mIoU fp32 "
                f"{held['miou']['fp32']:.4f}, int8 {held['miou']['int8']:.4f}"
            )
        if not args.skip_speed:
            print_speed(
                "U-Net-ResNet34", side, speed(raster, r34, tmp, args.repeat, False), args.repeat
            )
    print(f"\nload average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
