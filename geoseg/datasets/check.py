"""``check_dataset`` and ``dataset_stats``: what a dataset folder holds, before training on it.

Both look the kind up in :mod:`geoseg.datasets.kinds`; the built-in kinds have their own checks
here (``check_dubai``...), any other kind gets :func:`check_scenes`, built on its ``find`` and
``scene``. Importing this module needs no torch.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.classes import IGNORE_INDEX
from geoseg.datasets.kinds import DataSource, OnError, Progress, dataset_kind
from geoseg.datasets.stats import StatsResult, stream_stats, to_db
from geoseg.errors import DatasetError, GeosegError
from geoseg.io.open import open_raster
from geoseg.io.reader import coarse_validity

__all__ = ["CheckReport", "check_dataset", "check_scenes", "dataset_stats"]


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


def check_dataset(
    root: str | os.PathLike[str],
    kind: str,
    *,
    images: str = "images/*.tif",
    labels: str = "labels/*.tif",
    product: str = "SAR-Intensity",
    on_error: OnError = "stop",
    progress: Progress | None = None,
    source: DataSource | None = None,
) -> CheckReport:
    """Read every file of a dataset once and report what a training run would meet.

    Args:
        root: the dataset folder.
        kind: a registered dataset kind (``dubai``, ``geotiff``, ``spacenet6`` or one of yours).
        images, labels: globs under ``root`` (``geotiff``).
        product: SpaceNet 6 product(s).
        on_error: ``"stop"`` at the first unreadable file, or ``"skip"`` it and list it.
        progress: called with ``(files done, files in all)``.
        source: the whole data description instead (``root`` and ``kind`` still win).

    Raises:
        ConfigError: an unknown kind.
        DatasetError: the folder is missing or empty, the layout is not the ``kind`` asked for, or
            (with ``on_error="stop"``) a file cannot be read.
    """
    entry = dataset_kind(kind)
    base = Path(root)
    if not base.exists():
        raise DatasetError(f"{base}: no such folder")
    if base.is_dir() and not any(base.iterdir()):
        raise DatasetError(f"{base}: the folder is empty; expected a {kind} dataset")
    src = _source(root, kind, source, images=images, labels=labels, product=product)
    check = entry.check or check_scenes
    return check(src, on_error, progress)


def _source(
    root: str | os.PathLike[str], kind: str, source: DataSource | None, **fields: Any
) -> DataSource:
    if source is None:
        return DataSource(kind=kind, root=str(root), **fields)
    return dataclasses.replace(source, kind=kind, root=str(root))


def _start(source: DataSource) -> tuple[Path, CheckReport, Counter[int]]:
    """The folder, an empty report and class counts for one check."""
    base = Path(source.root)
    return base, CheckReport(source.kind, str(base)), Counter()


def check_scenes(
    source: DataSource, on_error: OnError = "stop", progress: Progress | None = None
) -> CheckReport:
    """The check of any kind: build each item's scene once, count classes, nodata, CRS and
    resolution."""
    kind = dataset_kind(source.kind)
    items = list(kind.find(source))
    if not items:
        raise DatasetError(f"{source.root}: no {source.kind} item found")
    names = {c.id: c.name for c in kind.class_table(source)}
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


def check_dubai(
    source: DataSource, on_error: OnError = "stop", progress: Progress | None = None
) -> CheckReport:
    """The ``dubai`` check: every mask decoded, its size compared with its image's."""
    from PIL import Image

    from geoseg.datasets.dubai import DUBAI_COLOURS, find_dubai, read_mask

    base, report, counts = _start(source)
    total = 0
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
            report.problems.append(
                f"{it.mask}: mask {m.shape[1]}x{m.shape[0]} differs from its image "
                f"{size[0]}x{size[1]}"
            )
        counts.update(dict(zip(*np.unique(m, return_counts=True), strict=True)))
        unknown += int((m == IGNORE_INDEX).sum())
        total += m.size
        if progress:
            progress(k + 1, len(items))
    names = {i: n for i, n in DUBAI_COLOURS.values()}
    report.class_pixels = {
        names[int(c)]: int(v) for c, v in sorted(counts.items()) if c != IGNORE_INDEX
    }
    report.class_pixels["unannotated (ignored)"] = unknown
    report.crs = {"none (not georeferenced)": len(items)}
    return report


def check_spacenet6(
    source: DataSource, on_error: OnError = "stop", progress: Progress | None = None
) -> CheckReport:
    """The ``spacenet6`` check: every tile read and its buildings burnt, as training would."""
    from geoseg.datasets.spacenet6 import find_spacenet6, load_tile, parse_products

    base, report, counts = _start(source)
    nodata = total = 0
    products = parse_products(source.product)
    tiles = find_spacenet6(base, products)
    report.images = len(tiles)
    report.labels = sum(t.buildings is not None for t in tiles)
    report.files = report.images * len(products) + report.labels
    report.groups = dict(Counter(f"orientation {t.orientation}" for t in tiles))
    missing = [t.tile for t in tiles if t.buildings is None]
    if missing:
        report.problems.append(
            f"{len(missing)} tile(s) have no buildings GeoJSON (first: tile {missing[0]})"
        )
    for k, t in enumerate(tiles):
        try:
            _, lab, valid, info = load_tile(t, products, flip_orientation=False)
        except (GeosegError, OSError) as exc:
            _handle(report, str(t.files[products[0]]), exc, on_error)
            continue
        geo: dict[str, Any] = dict(info)
        crs = geo["crs"].to_string() if geo["crs"] else "none"
        res = f"{abs(geo['transform'].a):.3g} m"
        report.add_grid(crs, res)
        nodata += int((~valid).sum())
        total += valid.size
        counts.update(dict(zip(*np.unique(lab[valid], return_counts=True), strict=True)))
        if progress:
            progress(k + 1, len(tiles))
    report.nodata_fraction = nodata / max(total, 1)
    report.class_pixels = {"background": int(counts.get(0, 0)), "building": int(counts.get(1, 0))}
    return report


def check_geotiff(
    source: DataSource, on_error: OnError = "stop", progress: Progress | None = None
) -> CheckReport:
    """The ``geotiff`` check: CRS, resolution, nodata and label values of every file, from
    overviews."""
    from geoseg.datasets.geotiff import expand_paths

    base, report, counts = _start(source)
    nodata = total = 0.0
    image_paths, label_paths = expand_paths(source.images, base), expand_paths(source.labels, base)
    if not image_paths:
        raise DatasetError(
            f"{base}: no image matches {source.images!r}; expected GeoTIFFs (pass --images GLOB)"
        )
    report.images, report.labels = len(image_paths), len(label_paths)
    report.files = report.images + report.labels
    for k, p in enumerate([*image_paths, *label_paths]):
        try:
            with open_raster(p) as src:
                crs = src.crs.to_string() if src.crs else "none"
                res = f"{abs(src.transform.a):.6g}"
                report.add_grid(crs, res)
                cell = max(1, max(src.width, src.height) // 2048)
                if k >= len(image_paths):  # a label raster
                    shape = (max(1, src.height // cell), max(1, src.width // cell))
                    data = src.read(1, out_shape=shape)
                    ok = data != src.nodata if src.nodata is not None else np.ones(shape, bool)
                    counts.update(dict(zip(*np.unique(data[ok], return_counts=True), strict=True)))
                else:
                    fractions, _ = coarse_validity(src, cell)
                    nodata += float((1.0 - fractions).sum())
                    total += fractions.size
        except (GeosegError, OSError) as exc:
            _handle(report, p, exc, on_error)
        if progress:
            progress(k + 1, report.files)
    if len({k for k in report.crs if k != "none"}) > 1:
        report.problems.append(
            "files are in several CRS: labels will be reprojected to the image CRS (nearest "
            "neighbour)"
        )
    if len(report.resolutions) > 1:
        report.problems.append(
            "files have several resolutions: labels will be resampled to the image grid"
        )
    if "none" in report.crs:
        report.problems.append(
            f"{report.crs['none']} file(s) have no CRS; georeferenced training needs one"
        )
    report.nodata_fraction = nodata / max(total, 1)
    report.class_pixels = {f"class {int(c)}": int(v) for c, v in sorted(counts.items())}
    return report


def dataset_stats(
    root: str | os.PathLike[str],
    kind: str,
    *,
    images: str = "images/*.tif",
    product: str = "SAR-Intensity",
    tiles: Sequence[int] | None = None,
    sar_db: bool | None = None,
    source: DataSource | None = None,
) -> StatsResult:
    """Per-band mean, std and 2/98 percentiles over every valid image pixel (SAR in dB by default).

    ``tiles`` keeps only those Dubai tiles. Kinds without their own statistics stream their scenes.
    """
    entry = dataset_kind(kind)
    src = _source(root, kind, source, images=images, product=product)
    if tiles is not None and kind == "dubai":
        return stats_dubai(src, sar_db, tiles=tiles)
    if entry.stats is not None:
        return entry.stats(src, sar_db)
    scenes = (entry.scene(item, src) for item in entry.find(src))
    return stream_stats(
        ((image, valid) for image, _, valid in (s.arrays() for s in scenes)),
        db_bands=4 if sar_db else 0,
    )


def stats_dubai(
    source: DataSource, sar_db: bool | None = None, *, tiles: Sequence[int] | None = None
) -> StatsResult:
    """Statistics of the Dubai images (of ``tiles`` only, when given)."""
    from geoseg.datasets.dubai import find_dubai, read_item

    items = [it for it in find_dubai(source.root) if tiles is None or it.tile in tiles]
    if not items:
        raise DatasetError(f"{source.root}: no image in tile(s) {list(tiles or [])}")
    return stream_stats((read_item(it).arrays()[0], None) for it in items)


def stats_spacenet6(source: DataSource, sar_db: bool | None = None) -> StatsResult:
    """Statistics of the SpaceNet 6 tiles (SAR in dB unless ``sar_db`` is False)."""
    from geoseg.datasets.spacenet6 import find_spacenet6, load_tile, parse_products

    products = parse_products(source.product)
    db = (products[0] == "SAR-Intensity") if sar_db is None else sar_db
    chips = (
        load_tile(t, products, flip_orientation=False)
        for t in find_spacenet6(source.root, products)
    )
    return stream_stats(((image, valid) for image, _, valid, _ in chips), db_bands=4 if db else 0)


def stats_geotiff(source: DataSource, sar_db: bool | None = None) -> StatsResult:
    """Statistics of the image files, block by block."""
    from geoseg.datasets.geotiff import expand_paths

    paths = expand_paths(source.images, source.root)
    if not paths:
        raise DatasetError(f"{source.root}: no image matches {source.images!r}")

    def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for p in paths:
            with open_raster(p) as src:
                for _, window in src.block_windows(1):
                    data = src.read(window=window)
                    yield (to_db(data) if sar_db else data), src.dataset_mask(window=window) > 0

    return stream_stats(blocks())
