"""What a person would see wrong in a figure, checked on every figure a notebook draws.

:func:`install` runs in the notebook's kernel (a first cell that the test runner adds): it hooks
matplotlib's ``print_figure``, through which every figure passes on its way to a cell's output or
a file, and records the problems of each panel (:func:`figure_problems`) as JSON lines, with a PNG
of the figure beside them. A panel fails when

- it draws nothing, or more than 95 % of the pixels it draws are one shade (a blank, flat or
  white panel: RGB floats outside 0..1 end here too, as matplotlib clips them when drawn);
- an array drawn in it holds no finite value (all NaN or masked);
- its colour limits (``vmin``/``vmax``) clip more than 95 % of the values it draws.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

__all__ = ["figure_problems", "install", "panel_problems"]

# more than this share of a panel's drawn pixels is one shade (luminance within SHADE of the
# median, on a 0-1 scale: 2.5 grey levels of 255): it looks blank or flat
FLAT_SHARE = 0.95
SHADE = 0.01
CLIPPED_LIMIT = 0.95  # more than this share of the drawn values lies outside vmin..vmax
MAX_PIXELS = 1_000_000  # larger images are checked on a regular subsample


def _subsample(array: np.ndarray) -> np.ndarray:
    rows, cols = array.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(rows * cols / MAX_PIXELS))))
    return array[::step, ::step]


def _one_shade_share(rgba: np.ndarray) -> float:
    """The share of RGBA pixels (0-1, composited over white) of the median's luminance."""
    alpha = rgba[..., 3:4]
    rgb = rgba[..., :3] * alpha + (1.0 - alpha)
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    return float(np.mean(np.abs(lum - np.median(lum)) <= SHADE))


def _image_problems(image: AxesImage) -> list[str]:
    array = _subsample(np.ma.asarray(image.get_array()))
    values = np.ma.masked_invalid(array.astype(np.float64))
    if values.count() == 0:
        return [f"draws an array of {array.shape} without one finite value (all NaN or masked)"]
    finite = values.compressed()
    if array.ndim == 2:
        vmin, vmax = image.norm.vmin, image.norm.vmax
        if vmin is not None and vmax is not None:
            clipped = float(np.mean((finite < vmin) | (finite > vmax)))
            if clipped > CLIPPED_LIMIT:
                return [
                    f"vmin={vmin:g}, vmax={vmax:g} clip {clipped:.0%} of the values drawn "
                    f"({finite.min():g}..{finite.max():g})"
                ]
        rgba = image.to_rgba(array, bytes=False)
    else:  # RGB(A): floats are drawn in 0..1, integers in 0..255
        if np.issubdtype(array.dtype, np.floating):  # matplotlib has clipped them to 0..1
            rgba = np.clip(np.ma.filled(values, np.nan), 0, 1)
        else:
            rgba = np.ma.filled(values, 0) / 255.0
        if rgba.shape[-1] == 3:
            rgba = np.concatenate([rgba, np.ones((*rgba.shape[:2], 1))], axis=-1)
        rgba = np.where(np.isnan(rgba).any(-1, keepdims=True), 0.0, rgba)  # NaN: not drawn
    share = _one_shade_share(np.asarray(rgba, dtype=np.float64))
    if share > FLAT_SHARE:
        return [f"near-uniform: {share:.0%} of the image drawn is one shade"]
    return []


def _draws_something(ax: Axes) -> bool:
    for line in ax.lines:
        x, y = (np.asarray(v, dtype=np.float64) for v in line.get_data())
        if line.get_visible() and np.isfinite(x).any() and np.isfinite(y).any():
            return True
    for patch in ax.patches:
        if not patch.get_visible():
            continue
        if isinstance(patch, Rectangle) and (patch.get_width() == 0 or patch.get_height() == 0):
            continue  # an empty histogram bin
        return True
    return any(c.get_visible() for c in ax.collections) or any(t.get_text() for t in ax.texts)


def panel_problems(ax: Axes, *, shown: bool = True) -> list[str]:
    """What is wrong with one panel (an ``Axes``), in words; empty when it looks right.

    Args:
        ax: the panel.
        shown: the figure is shown in the notebook (blank and flat panels count).
    """
    images = [im for im in ax.get_images() if im.get_visible()]
    problems = [p for im in images for p in _image_problems(im)]
    if not images and not _draws_something(ax):
        problems.append("draws nothing")
    if not shown:
        problems = [p for p in problems if not p.startswith(("near-uniform", "draws nothing"))]
    return problems


def figure_problems(fig: Figure, *, shown: bool = True) -> list[dict[str, Any]]:
    """The problems of every panel of a figure (colour bars and legends are not panels)."""
    found = []
    for index, ax in enumerate(fig.axes):
        if getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>":
            continue
        for problem in panel_problems(ax, shown=shown):
            found.append({"panel": index, "title": ax.get_title(), "problem": problem})
    return found


def install(folder: str | Path) -> None:
    """Check every figure printed from now on; write ``figures.jsonl`` and ``figure-N.png``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    original = FigureCanvasBase.print_figure
    state = {"busy": False, "count": 0}

    def print_figure(self: FigureCanvasBase, *args: Any, **kwargs: Any) -> Any:
        if state["busy"]:
            return original(self, *args, **kwargs)
        state["busy"] = True
        try:
            state["count"] += 1
            number = state["count"]
            target = args[0] if args else kwargs.get("filename")
            shown = not isinstance(target, str | os.PathLike)  # a cell's output, not a file
            record = {
                "figure": number,
                "cell": _execution_count(),
                "shown": shown,
                "suptitle": self.figure._suptitle.get_text() if self.figure._suptitle else "",
                "titles": [ax.get_title() for ax in self.figure.axes],
                "problems": figure_problems(self.figure, shown=shown),
            }
            self.figure.savefig(out / f"figure-{number:02d}.png", dpi=60)
            with open(out / "figures.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        finally:
            state["busy"] = False
        return original(self, *args, **kwargs)

    FigureCanvasBase.print_figure = print_figure  # type: ignore[method-assign]


def _execution_count() -> int | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else int(shell.execution_count)


def read_records(folder: str | Path) -> list[dict[str, Any]]:
    """The records :func:`install` wrote into ``folder`` (none when nothing was drawn)."""
    path = Path(folder) / "figures.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
