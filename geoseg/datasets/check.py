"""The report of ``geoseg dataset check`` (:class:`CheckReport`) and the check every dataset kind
gets unless it has its own (:func:`check_scenes`, built on the kind's ``find`` and ``scene``).
The built-in kinds keep their own checks with them; :func:`~geoseg.datasets.kinds.check_dataset`
looks the kind up. Importing this module needs no torch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.classes import IGNORE_INDEX
from geoseg.datasets.source import DataSource, OnError, Progress
from geoseg.errors import DatasetError, GeosegError

__all__ = ["CheckReport", "check_scenes"]


@dataclass
class CheckReport:
    kind: str
    root: str
    files: int = 0
    images: int = 0
    labels: int = 0
    crs: dict[str, int] = field(default_factory=dict)
    resolutions: dict[str, int] = field(default_factory=dict)
    nodata_fraction: float = 0.0
    class_pixels: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    groups: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return dict(self.__dict__)

    def add_grid(self, crs: str, resolution: str) -> None:
        """Count one file's CRS and resolution."""
        self.crs[crs] = self.crs.get(crs, 0) + 1
        self.resolutions[resolution] = self.resolutions.get(resolution, 0) + 1

    def lines(self) -> list[str]:
        out = [
            f"{self.root} ({self.kind})",
            f"  files        {self.files} ({self.images} image(s), {self.labels} label file(s))",
        ]
        if self.groups:
            out.append(
                "  groups       " + ", ".join(f"{k}: {v}" for k, v in sorted(self.groups.items()))
            )
        if self.crs:
            out.append(
                "  crs          " + ", ".join(f"{_short(k)} ({v})" for k, v in self.crs.items())
            )
        if self.resolutions:
            out.append(
                "  resolution   " + ", ".join(f"{k} ({v})" for k, v in self.resolutions.items())
            )
        out.append(f"  nodata       {100 * self.nodata_fraction:.2f} % of image pixels")
        total = sum(self.class_pixels.values())
        if total:
            out.append(
                "  classes      "
                + ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in self.class_pixels.items())
            )
        for p in self.unreadable:
            out.append(f"  unreadable   {p}")
        for p in self.problems:
            out.append(f"  problem      {p}")
        out.append(
            "  status       "
            + ("OK" if not self.problems and not self.unreadable else "problems found")
        )
        return out


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _handle(report: CheckReport, path: str, exc: Exception, on_error: OnError) -> None:
    if on_error == "stop":
        raise DatasetError(
            f"{path}: cannot read ({exc}); fix or remove the file, or pass --on-error skip to "
            "carry on"
        ) from None
    report.unreadable.append(f"{path}: {exc}")


def _start(source: DataSource) -> tuple[Path, CheckReport, Counter[int]]:
    """The folder, an empty report and class counts for one check."""
    base = Path(source.root)
    return base, CheckReport(source.kind, str(base)), Counter()


def check_scenes(
    source: DataSource,
    on_error: OnError = "stop",
    progress: Progress | None = None,
    *,
    kind: Any,
) -> CheckReport:
    """The check of any kind: build each item's scene once, count classes, nodata, CRS and
    resolution (``kind``: the :class:`~geoseg.datasets.kind.DatasetKind`)."""
    items = list(kind.find(source))
    if not items:
        raise DatasetError(f"{source.root}: no {source.kind} item found")
    names = {c.id: c.name for c in kind.classes(source)}
    report = CheckReport(source.kind, source.root, files=len(items), images=len(items))
    counts: Counter[int] = Counter()
    groups: Counter[str] = Counter()
    nodata = total = 0
    for k, item in enumerate(items):
        try:
            scene = kind.scene(item, source)
            _, mask, valid = scene.arrays()
        except (GeosegError, OSError) as exc:
            _handle(report, str(item), exc, on_error)
            continue
        report.labels += mask is not None
        if scene.group:
            groups[scene.group] += 1
        crs = scene.crs or "none"
        res = f"{abs(scene.transform.a):.6g}"
        report.add_grid(crs, res)
        rows, cols = scene.shape
        if valid is not None:
            nodata += int((~valid).sum())
        total += rows * cols
        if mask is not None:
            counts.update(
                dict(
                    zip(
                        *np.unique(mask[valid] if valid is not None else mask, return_counts=True),
                        strict=True,
                    )
                )
            )
        if progress:
            progress(k + 1, len(items))
    report.groups = dict(groups)
    report.nodata_fraction = nodata / max(total, 1)
    report.class_pixels = {
        names.get(int(c), f"class {int(c)}"): int(v)
        for c, v in sorted(counts.items())
        if c != IGNORE_INDEX
    }
    if counts.get(IGNORE_INDEX):
        report.class_pixels["unlabeled (ignored)"] = int(counts[IGNORE_INDEX])
    return report
