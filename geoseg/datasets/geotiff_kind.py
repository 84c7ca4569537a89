"""The ``geotiff`` dataset kind: GeoTIFF images with label GeoTIFFs or polygons, found by globs
and split by location. No torch here: the TorchGeo datasets that read the files load when a
scene is first built (:mod:`geoseg.datasets.geotiff`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from geoseg.classes import ClassTable
from geoseg.datasets.check import CheckReport, _handle, _start
from geoseg.datasets.kind import DatasetKind, split_scenes
from geoseg.datasets.scene import Scene
from geoseg.datasets.source import DataSource, EvalPair, OnError, Progress, SceneSet
from geoseg.datasets.stats import StatsResult, stream_stats, to_db
from geoseg.errors import ConfigError, DatasetError, GeosegError
from geoseg.io.open import open_raster
from geoseg.io.reader import coarse_validity

__all__ = ["GeoTiffKind"]


def _images(source: DataSource) -> list[str]:
    from geoseg.datasets.geotiff import expand_paths

    return expand_paths(source.images, source.root)


def _labels(source: DataSource) -> list[str]:
    from geoseg.datasets.geotiff import expand_paths

    return expand_paths(source.labels, source.root)


def _val_fraction(source: DataSource) -> float:
    return float((source.split or {}).get("val", 0.2) or 0.0)


class GeoTiffKind(DatasetKind):
    """The ``geotiff`` kind (see the module)."""

    name = "geotiff"
    description = "GeoTIFF images with label GeoTIFFs or polygons (data.images, data.labels globs)"

    def find(self, source: DataSource) -> list[str]:
        """The image files ``source.images`` matches under ``source.root``."""
        images = _images(source)
        if not images:
            raise ConfigError(
                f"data.images: no file matches {source.images!r} under {source.root or '.'}"
            )
        return images

    def split(
        self, items: Sequence[str], source: DataSource, seed: int = 0
    ) -> dict[str, list[str]]:
        """Split images by location (their footprints): overlapping images stay on one side."""
        from geoseg.datasets.geotiff import file_info
        from geoseg.datasets.splits import split_by_location

        idx = split_by_location(
            [file_info(p).bounds for p in items], _val_fraction(source), seed=seed
        )
        return {**{k: [items[i] for i in v] for k, v in idx.items()}, "test": []}

    def scene(self, item: str, source: DataSource) -> Scene:
        """One image with its labels aligned to its grid."""
        from geoseg.datasets.geotiff import geotiff_scenes

        return geotiff_scenes(
            [item],
            _labels(source),
            label_attribute=source.label_attribute or None,
            classes=source.classes,
        )[0][0]

    def classes(self, source: DataSource) -> ClassTable:
        """Names from ``data.classes``, else the label rasters' class table, else ``class_0..``."""
        if source.classes:
            return ClassTable.from_names(source.classes)
        from geoseg.datasets.geotiff import geotiff_scenes

        return geotiff_scenes(
            self.find(source), _labels(source), label_attribute=source.label_attribute or None
        )[1]

    def scenes(self, source: DataSource, seed: int = 0) -> SceneSet:
        """Every image read with its labels, split by location."""
        from geoseg.datasets.geotiff import file_info, geotiff_scenes

        scenes, classes, nodata = geotiff_scenes(
            self.find(source),
            _labels(source),
            label_attribute=source.label_attribute or None,
            classes=source.classes,
        )
        parts = split_scenes(scenes, _val_fraction(source), seed=seed)
        dtypes = {file_info(s.name).dtype for s in parts["train"]}
        return SceneSet(
            parts["train"],
            parts["val"],
            classes,
            nodata=nodata,
            # scenes hold float32; predict compares input with the files' own dtype
            band_dtype=dtypes.pop() if len(dtypes) == 1 else None,
            description={
                "dataset": "GeoTIFF images with labels",
                "images": source.images,
                "labels": source.labels,
                "split": {"by": "location", "val_fraction": _val_fraction(source)},
            },
        )

    def pairs(self, source: DataSource, split: str = "test", seed: int = 0) -> list[EvalPair]:
        """Every image with its label raster (matched in sorted order; one label raster per
        image)."""
        images, labels = _images(source), _labels(source)
        if images and len(labels) == len(images):
            return [EvalPair(i, lab, Path(i).name) for i, lab in zip(images, labels, strict=True)]
        raise DatasetError(
            "evaluate needs one label raster per image; pass --images DIR --labels DIR"
        )

    def check(
        self, source: DataSource, on_error: OnError = "stop", progress: Progress | None = None
    ) -> CheckReport:
        """Every image and label file opened once: grids, CRS, nodata, classes."""
        from geoseg.datasets.geotiff import expand_paths

        base, report, counts = _start(source)
        nodata = total = 0.0
        image_paths, label_paths = (
            expand_paths(source.images, base),
            expand_paths(source.labels, base),
        )
        if not image_paths:
            raise DatasetError(
                f"{base}: no image matches {source.images!r}; expected GeoTIFFs (pass --images "
                "GLOB)"
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
                        counts.update(
                            dict(zip(*np.unique(data[ok], return_counts=True), strict=True))
                        )
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

    def stats(self, source: DataSource, sar_db: bool | None = None) -> StatsResult:
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
