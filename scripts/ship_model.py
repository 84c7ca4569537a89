"""Ship a trained model as a bundled one: fp16 storage, held-out test scores in its config.

python scripts/ship_model.py RUN/model.safetensors RUN/test/metrics.json DEST.safetensors "Tile 8"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from geoseg.models.checkpoint import convert_checkpoint


def main(checkpoint: str, report: str, dest: str, split: str) -> None:
    scores = json.loads(Path(report).read_text(encoding="utf-8"))
    test = {k: scores[k] for k in ("miou", "mf1", "pixel_accuracy", "per_class")}
    out = convert_checkpoint(
        checkpoint, dest, storage="float16", metrics={"test": {"split": split, **test}}
    )
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB, held-out ({split}) mIoU {test['miou']:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
