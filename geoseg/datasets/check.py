"""``check_dataset`` and ``dataset_stats``: what a dataset folder holds, before training on it."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio

from geoseg.datasets.patches import IGNORE_INDEX
from geoseg.datasets.stats import StatsResult, stream_stats, to_db
from geoseg.errors import DatasetError

__all__ = ["CheckReport", "check_dataset", "dataset_stats"]

Kind = Literal["geotiff", "spacenet6", "dubai"]
OnError = Literal["stop", "skip"]


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
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        out = [f"{self.root} ({self.kind})",
               f"  files        {self.files} ({self.images} image(s), {self.labels} label file(s))"]
        if self.groups:
            out.append("  groups       " + ", ".join(f"{k}: {v}" for k, v in sorted(self.groups.items())))
        if self.crs:
            out.append("  crs          " + ", ".join(f"{_short(k)} ({v})" for k, v in self.crs.items()))
        if self.resolutions:
            out.append("  resolution   " + ", ".join(f"{k} ({v})" for k, v in self.resolutions.items()))
        out.append(f"  nodata       {100 * self.nodata_fraction:.2f} % of image pixels")
        total = sum(self.class_pixels.values())
        if total:
            out.append("  classes      " + ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in self.class_pixels.items()))
        for p in self.unreadable:
            out.append(f"  unreadable   {p}")
        for p in self.problems:
            out.append(f"  problem      {p}")
        out.append("  status       " + ("OK" if not self.problems and not self.unreadable else "problems found"))
        return out


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _handle(report: CheckReport, path: str, exc: Exception, on_error: OnError) -> None:
    if on_error == "stop":
        raise DatasetError(f"{path}: cannot read ({exc}); fix or remove the file, or pass --on-error skip to carry on") from None
    report.unreadable.append(f"{path}: {exc}")


def check_dataset(root: str | os.PathLike[str], kind: Kind, *, images: str = "images/*.tif", labels: str = "labels/*.tif",
                  product: str = "SAR-Intensity", on_error: OnError = "stop",
                  progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Read every file of a dataset once and report what a training run would meet.

    Raises:
        DatasetError: the folder is missing or empty, the layout is not the ``kind`` asked for, or
            (with ``on_error="stop"``) a file cannot be read.
    """
    base = Path(root)
    if not base.exists():
        raise DatasetError(f"{base}: no such folder")
    if base.is_dir() and not any(base.iterdir()):
        raise DatasetError(f"{base}: the folder is empty; expected a {kind} dataset")
    report = CheckReport(kind, str(base))
    counts: Counter[int] = Counter()
    nodata = total = 0
    if kind == "dubai":
        from PIL import Image

        from geoseg.datasets.dubai import DUBAI_COLOURS, find_dubai, read_mask

        items = find_dubai(base)
        report.files, report.images, report.labels = 2 * len(items), len(items), len(items)
        report.groups = dict(Counter(f"Tile {it.tile}" for it in items))
        unknown = 0
        for k, it in enumerate(items):
            try:
                m = read_mask(it, keep_unlabeled=True)
                with Image.open(it.image) as im:
                    size = im.size
            except (OSError, DatasetError) as exc:
                _handle(report, str(it.mask), exc, on_error)
                continue
            if (m.shape[1], m.shape[0]) != size:
                report.problems.append(f"{it.mask}: mask {m.shape[1]}x{m.shape[0]} differs from its image {size[0]}x{size[1]}")
            counts.update(dict(zip(*np.unique(m, return_counts=True), strict=True)))
            unknown += int((m == IGNORE_INDEX).sum())
            total += m.size
            if progress:
                progress(k + 1, len(items))
        names = {i: n for i, n in DUBAI_COLOURS.values()}
        report.class_pixels = {names[int(c)]: int(v) for c, v in sorted(counts.items()) if c != IGNORE_INDEX}
        report.class_pixels["unannotated (ignored)"] = unknown
        report.crs = {"none (not georeferenced)": len(items)}
        return report
    if kind == "spacenet6":
        from geoseg.datasets.spacenet6 import find_spacenet6, load_tile, parse_products

        products = parse_products(product)
        tiles = find_spacenet6(base, products)
        report.images = len(tiles)
        report.labels = sum(t.buildings is not None for t in tiles)
        report.files = report.images * len(products) + report.labels
        report.groups = dict(Counter(f"orientation {t.orientation}" for t in tiles))
        missing = [t.tile for t in tiles if t.buildings is None]
        if missing:
            report.problems.append(f"{len(missing)} tile(s) have no buildings GeoJSON (first: tile {missing[0]})")
        for k, t in enumerate(tiles):
            try:
                _, lab, valid, info = load_tile(t, products, flip_orientation=False)
            except (DatasetError, rasterio.errors.RasterioIOError) as exc:
                _handle(report, str(t.files[products[0]]), exc, on_error)
                continue
            geo: dict[str, Any] = dict(info)
            crs = geo["crs"].to_string() if geo["crs"] else "none"
            report.crs[crs] = report.crs.get(crs, 0) + 1
            res = f"{abs(geo['transform'].a):.3g} m"
            report.resolutions[res] = report.resolutions.get(res, 0) + 1
            nodata += int((~valid).sum())
            total += valid.size
            counts.update(dict(zip(*np.unique(lab[valid], return_counts=True), strict=True)))
            if progress:
                progress(k + 1, len(tiles))
        report.nodata_fraction = nodata / max(total, 1)
        report.class_pixels = {"background": int(counts.get(0, 0)), "building": int(counts.get(1, 0))}
        return report
    from geoseg.datasets.geotiff import expand_paths

    image_paths, label_paths = expand_paths(images, base), expand_paths(labels, base)
    if not image_paths:
        raise DatasetError(f"{base}: no image matches {images!r}; expected GeoTIFFs (pass --images GLOB)")
    report.images, report.labels = len(image_paths), len(label_paths)
    report.files = report.images + report.labels
    for k, p in enumerate([*image_paths, *label_paths]):
        try:
            with rasterio.open(p) as src:
                crs = src.crs.to_string() if src.crs else "none"
                report.crs[crs] = report.crs.get(crs, 0) + 1
                res = f"{abs(src.transform.a):.6g}"
                report.resolutions[res] = report.resolutions.get(res, 0) + 1
                is_label = k >= len(image_paths)
                ovr = max(1, max(src.width, src.height) // 2048)
                shape = (max(1, src.height // ovr), max(1, src.width // ovr))
                if is_label:
                    data = src.read(1, out_shape=shape)
                    ok = data != src.nodata if src.nodata is not None else np.ones(shape, bool)
                    counts.update(dict(zip(*np.unique(data[ok], return_counts=True), strict=True)))
                else:
                    m = src.dataset_mask(out_shape=shape)
                    nodata += int((m == 0).sum())
                    total += m.size
        except rasterio.errors.RasterioIOError as exc:
            _handle(report, p, exc, on_error)
        if progress:
            progress(k + 1, report.files)
    if len({k for k in report.crs if k != "none"}) > 1:
        report.problems.append("files are in several CRS: labels will be reprojected to the image CRS (nearest neighbour)")
    if len(report.resolutions) > 1:
        report.problems.append("files have several resolutions: labels will be resampled to the image grid")
    if "none" in report.crs:
        report.problems.append(f"{report.crs['none']} file(s) have no CRS; georeferenced training needs one")
    report.nodata_fraction = nodata / max(total, 1)
    report.class_pixels = {f"class {int(c)}": int(v) for c, v in sorted(counts.items())}
    return report


def dataset_stats(root: str | os.PathLike[str], kind: Kind, *, images: str = "images/*.tif", product: str = "SAR-Intensity",
                  tiles: Sequence[int] | None = None, sar_db: bool | None = None) -> StatsResult:
    """Per-band mean, std and 2/98 percentiles over every valid image pixel (SAR in dB by default)."""
    if kind == "dubai":
        from geoseg.datasets.dubai import find_dubai, read_item

        items = [it for it in find_dubai(root) if tiles is None or it.tile in tiles]
        if not items:
            raise DatasetError(f"{root}: no image in tile(s) {list(tiles or [])}")
        return stream_stats((read_item(it).arrays()[0], None) for it in items)
    if kind == "spacenet6":
        from geoseg.datasets.spacenet6 import find_spacenet6, load_tile, parse_products

        products = parse_products(product)
        db = (products[0] == "SAR-Intensity") if sar_db is None else sar_db
        chips = (load_tile(t, products, flip_orientation=False) for t in find_spacenet6(root, products))
        return stream_stats(((image, valid) for image, _, valid, _ in chips), db_bands=4 if db else 0)
    from geoseg.datasets.geotiff import expand_paths

    paths = expand_paths(images, root)
    if not paths:
        raise DatasetError(f"{root}: no image matches {images!r}")

    def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for p in paths:
            with rasterio.open(p) as src:
                for _, window in src.block_windows(1):
                    data = src.read(window=window)
                    yield (to_db(data) if sar_db else data), src.dataset_mask(window=window) > 0

    return stream_stats(blocks())
