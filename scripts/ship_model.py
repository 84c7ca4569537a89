"""Ship a trained model as a bundled one: int8 weight storage, held-out test scores in its config.

python scripts/ship_model.py RUN/model.safetensors RUN/test/metrics.json DEST.safetensors "Tile 8"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from geoseg.models.checkpoint import convert_checkpoint
from geoseg.models.config import read_config


def portable(recipe: dict[str, Any]) -> dict[str, Any]:
    """The training config with the data and output folders reduced to their names: a shipped
    model records what it was trained on, not where that sat on the training machine."""
    out = json.loads(json.dumps(recipe))
    data = out.get("data", {})
    if data.get("root"):
        data["root"] = Path(data["root"]).name
    if out.get("output"):
        out["output"] = Path(out["output"]).name
    return out


def main(checkpoint: str, report: str, dest: str, split: str) -> None:
    scores = json.loads(Path(report).read_text(encoding="utf-8"))
    test = {k: scores[k] for k in ("miou", "mf1", "pixel_accuracy", "per_class")}
    recipe = read_config(checkpoint).training.get("config", {})
    out = convert_checkpoint(
        checkpoint,
        dest,
        storage="int8",
        metrics={"test": {"split": split, **test}},
        training={"config": portable(recipe)},
    )
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB, held-out ({split}) mIoU {test['miou']:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
