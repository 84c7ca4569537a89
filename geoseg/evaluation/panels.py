"""Pictures and the summary page of a diagnosis: worst-cell panels and ``index.md``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from geoseg.classes import MASK_NODATA, ClassTable
from geoseg.io.atomic import atomic_output

__all__ = ["write_index", "write_worst_panels"]


def _colours(table: ClassTable) -> np.ndarray:
    lut = np.zeros((256, 3), np.uint8)
    lut[MASK_NODATA] = (255, 255, 255)
    for c in table:
        lut[c.id] = c.color
    return lut


def _labels(pair: Any, window: Window) -> np.ndarray:
    """The labels of one window, read again: a diagnosis keeps no image's labels in memory."""
    from geoseg.io.labels import LabelReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with LabelReader(pair.labels, pair.image, name=pair.name) as reader:
            return reader.read(window)


def write_worst_panels(
    records: list[dict[str, Any]],
    images: dict[str, dict[str, Any]],
    cfg: Any,
    codes: ClassTable,
    folder: Path,
    *,
    count: int = 8,
    cell: int = 256,
    min_fraction: float = 0.1,
) -> list[Path]:
    """One PNG per worst cell (lowest pixel accuracy among cells with at least ``min_fraction`` of
    their pixels labelled): image | truth | prediction | errors | entropy.

    ``images`` maps an image name to its ``pair``, output ``folder`` and ``stem``; every panel
    re-reads what it draws (the image, its labels and the outputs) for its cell alone.
    """
    from matplotlib.figure import Figure  # no pyplot: never switch the caller's backend
    from matplotlib.patches import Patch

    from geoseg.io.overlay import read_display, save_figure

    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    eligible = [r for r in records if r["pixels"] >= min_fraction * cell * cell]
    chosen = sorted(eligible, key=lambda r: (r["accuracy"], -r["pixels"]))[:count]
    class_lut, code_lut = _colours(cfg.classes), _colours(codes)
    ids = np.array([c.id for c in cfg.classes] + [MASK_NODATA] * (256 - len(cfg.classes)), np.uint8)
    written = []
    for rank, rec in enumerate(chosen, start=1):
        info = images[rec["image"]]
        f = info["folder"]
        win = Window(rec["col_off"], rec["row_off"], cell, cell)
        with rasterio.open(f / "prediction.tif") as p:
            win = win.intersection(Window(0, 0, p.width, p.height))
            pred = p.read(1, window=win)
        with rasterio.open(f / "errors.tif") as e:
            err = e.read(1, window=win)
        with rasterio.open(f / "entropy.tif") as h:
            ent = h.read(1, window=win)
        r0, c0 = int(win.row_off), int(win.col_off)
        truth = _labels(info["pair"], win)
        truth_ids = np.where(
            (truth >= 0) & (truth < len(cfg.classes)), ids[np.clip(truth, 0, 255)], MASK_NODATA
        ).astype(np.uint8)
        image = read_display(info["pair"].image, win, max_size=cell)
        fig = Figure(figsize=(16, 3.8))
        axes = fig.subplots(1, 5)
        panels = [
            (image, "image"),
            (class_lut[truth_ids], "truth"),
            (class_lut[pred], "prediction"),
            (code_lut[err], "errors"),
        ]
        for ax, (arr, title) in zip(axes, panels, strict=False):
            ax.imshow(arr, interpolation="nearest")
            ax.set_title(title)
        shown = axes[4].imshow(np.ma.masked_invalid(ent), cmap="magma", vmin=0, vmax=1)
        axes[4].set_title("entropy")
        fig.colorbar(shown, ax=axes[4], fraction=0.046, pad=0.02)
        for ax in axes:
            ax.set_axis_off()
        present = [c for c in codes if c.id != 0 and (err == c.id).mean() > 0.01]
        handles = [
            Patch(color=(c.color[0] / 255, c.color[1] / 255, c.color[2] / 255), label=c.name)
            for c in cfg.classes
        ]
        handles += [
            Patch(
                color=(c.color[0] / 255, c.color[1] / 255, c.color[2] / 255),
                label=f"error {c.name}",
                hatch="//",
            )
            for c in present[:6]
        ]
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(len(handles), 6),
            fontsize=8,
            frameon=False,
        )
        fig.suptitle(
            f"#{rank} {rec['image']} rows {r0}-{r0 + int(win.height)}, cols "
            f"{c0}-{c0 + int(win.width)}: accuracy {rec['accuracy']:.3f}, mIoU "
            f"{rec['miou'] or float('nan'):.3f}, mean entropy {rec['mean_entropy']:.3f}"
        )
        fig.subplots_adjust(bottom=0.18)
        written.append(save_figure(fig, folder / f"{rank:02d}-{info['stem']}-r{r0}-c{c0}.png"))
    return written


def write_index(result: Any, cfg: Any) -> Path:
    """The summary page ``index.md``: scores, calibration, links to every layer and picture."""
    out: Path = result.out_dir
    rel = lambda p: Path(os.path.relpath(p, out)).as_posix()  # noqa: E731
    lines = [
        f"# Diagnosis: {cfg.architecture}-{cfg.encoder}",
        "",
        f"{len(result.report.per_image)} image(s), {result.report.megapixels:.2f} Mpx, "
        f"{result.seconds:.1f} s.",
        "",
        "## Scores",
        "",
        "```text",
        result.report.table(),
        "```",
        "",
        "![confusion matrix](confusion.png)",
        "",
        "## Calibration",
        "",
        f"Expected calibration error (ECE): **{result.ece:.4f}**.",
    ]
    if result.temperature is not None:
        lines.append(
            f"Fitted temperature **{result.temperature:.3f}** (sample ECE after scaling "
            f"{result.ece_tempered:.4f}); `model-calibrated.safetensors` records it and `geoseg "
            "predict` applies it."
        )
    lines += [
        "",
        "![reliability diagram](reliability.png)",
        "",
        "## Layers (open in QGIS)",
        "",
        "Per-cell metrics: [cells.gpkg](cells.gpkg) (styled by mIoU), [cells.csv](cells.csv).",
        "",
        "| image | mIoU | prediction | errors | entropy | margin |",
        "|---|---|---|---|---|---|",
    ]
    for entry in result.report.per_image:
        stem = entry["outputs"]
        miou = "n/a" if entry["miou"] is None else f"{entry['miou']:.3f}"
        lines.append(
            f"| {entry['image']} | {miou} | [tif]({stem}/prediction.tif) | "
            f"[tif]({stem}/errors.tif) | [tif]({stem}/entropy.tif) | [tif]({stem}/margin.tif) |"
        )
    if result.worst:
        lines += ["", "## Worst cells", ""]
        lines += [f"![{p.stem}]({rel(p)})" for p in result.worst]
    path = out / "index.md"
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
