"""Measure how often a checkpoint's bf16 classes agree with its fp32 classes, and record it.

python scripts/record_precision.py MODEL.safetensors IMAGE [IMAGE ...] [--tiles-per-image 4]

Every tile of the images that holds data (at most ``--tiles-per-image`` per image, spread over it)
goes through the eager network in fp32 and in bf16 (CPU autocast); the share of valid pixels
whose argmax agrees is written into the checkpoint's config as ``metrics.precision.bf16``
(agreement, tiles, pixels, images), its weights copied byte for byte. ``predict --precision auto``
then decides from that figure (bf16 at >= 99.5 %) instead of checking the first tile of each new
input. Give images like the model's training data (for the bundled models: Dubai tiles 1-7, never
the held-out Tile 8). Needs a CPU with bf16 (AVX512-BF16 or AMX).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def main() -> int:
    from geoseg.inference.runtime import Runner, cpu_supports_bf16
    from geoseg.inference.session import open_session
    from geoseg.models.checkpoint import load_checkpoint, replace_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--tiles-per-image", type=int, default=4)
    args = parser.parse_args()
    if not cpu_supports_bf16():
        sys.exit("this CPU has no native bf16: the agreement would say nothing about bf16 CPUs")
    loaded = load_checkpoint(args.checkpoint)
    fp32 = Runner(loaded.model, torch.device("cpu"), "fp32", freeze=False)
    bf16 = Runner(loaded.model, torch.device("cpu"), "bf16", freeze=False)
    same = total = tiles = 0
    for image in args.images:
        with open_session(image, loaded, precision="fp32", device="cpu") as session:
            plan = list(session.plan)
            picks = np.linspace(0, len(plan) - 1, min(args.tiles_per_image, len(plan)))
            for k in sorted({int(i + 0.5) for i in picks}):
                item = session.read_tile(plan[k].window)
                if item is None:
                    continue
                x = torch.from_numpy(item[0][None])
                valid = torch.from_numpy(item[1][None])
                a, b = fp32(x).argmax(1), bf16(x).argmax(1)
                same += int((a == b)[valid].sum())
                total += int(valid.sum())
                tiles += 1
    if not total:
        sys.exit("no tile of the images holds data")
    figure = same / total
    metrics = dict(loaded.config.metrics)
    metrics["precision"] = {
        **(metrics.get("precision") or {}),
        "bf16": {
            "agreement": round(figure, 6),
            "tiles": tiles,
            "pixels": total,
            "images": [Path(i).name for i in args.images],
        },
    }
    replace_config(args.checkpoint, loaded.config.replace(metrics=metrics))
    print(f"{args.checkpoint}: bf16 agrees with fp32 on {figure:.4%} of {total:,} pixels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
