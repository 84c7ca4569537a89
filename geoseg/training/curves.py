"""A PNG of the training curves from Lightning's ``metrics.csv``."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from geoseg.io.atomic import atomic_output

__all__ = ["plot_curves"]


def _series(rows: list[dict[str, str]], key: str, x: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key, "")
        if v not in ("", None):
            y = float(v)
            if math.isfinite(y):
                xs.append(float(r.get(x) or 0))
                ys.append(y)
    return xs, ys


def plot_curves(metrics_csv: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path | None:
    """Losses (left) and validation mIoU (right) per epoch; None when there is nothing to plot."""
    src = Path(metrics_csv)
    if not src.is_file():
        return None
    with src.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    from matplotlib.figure import (
        Figure,  # no pyplot: a library must not switch the caller's backend
    )

    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    for key, label in (("train_loss_epoch", "train loss"), ("val_loss", "validation loss")):
        xs, ys = _series(rows, key, "epoch")
        if xs:
            ax1.plot(xs, ys, marker="o", label=label)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    xs, ys = _series(rows, "val_miou", "epoch")
    if xs:
        ax2.plot(xs, ys, marker="o", color="tab:green", label="validation mIoU")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("mIoU")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.tight_layout()
    out = Path(dst)
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return out
