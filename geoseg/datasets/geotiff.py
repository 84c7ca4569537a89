"""Georeferenced image/label datasets on TorchGeo: image GeoTIFFs with label GeoTIFFs or vectors.

``geotiff_dataset(images, labels)`` gives a TorchGeo ``IntersectionDataset`` of an image
``RasterDataset`` and a label ``RasterDataset`` (or a ``VectorDataset`` of polygons whose
attribute holds the class, rasterized on the fly). TorchGeo aligns both to the image CRS and
resolution; geoseg warns when that means reprojecting. Samples go through
:func:`to_training_sample`, which turns nodata (the raster's nodata value, NaN, or its internal
mask) into a validity mask and the label ``ignore_index``.

Reading is TorchGeo's, with one shortcut: when a query falls in a single file that needs no
warping, the window is read directly from the cached file handle instead of going through
``rasterio.merge`` (same pixels, a fraction of the overhead).
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import DatasetReader
from torchgeo.datasets import IntersectionDataset, RasterDataset, VectorDataset

from geoseg.classes import IGNORE_INDEX, ClassTable, classes_of
from geoseg.datasets._torchgeo import sample_image, sample_mask
from geoseg.datasets.scene import Scene
from geoseg.errors import AlignmentWarning, DatasetError, RasterOpenError
from geoseg.io.open import open_raster
from geoseg.io.reader import valid_mask
from geoseg.normalize import Normalization

__all__ = [
    "GeoTiffImages",
    "GeoTiffLabels",
    "VectorLabels",
    "expand_paths",
    "geotiff_dataset",
    "to_training_sample",
]


def expand_paths(
    pattern: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    root: str | os.PathLike[str] = "",
) -> list[str]:
    """Files matching a glob, a folder (its ``*.tif``/``*.tiff``), a file, or a list of those."""
    items = [pattern] if isinstance(pattern, str | os.PathLike) else list(pattern)
    out: list[str] = []
    for item in items:
        p = Path(root, item) if root and not Path(item).is_absolute() else Path(item)
        if p.is_dir():
            out += sorted(str(q) for q in p.iterdir() if q.suffix.lower() in (".tif", ".tiff"))
        elif p.is_file():
            out.append(str(p))
        else:
            out += sorted(glob.glob(str(p), recursive=True))
    return out


class _FastRaster(RasterDataset):
    """RasterDataset with a cheaper lookup for the common case (TorchGeo 0.8 sample layout).

    TorchGeo answers each query with a GeoDataFrame interval and spatial query and recomputes the
    dataset bounds twice; with files that carry no dates, the same answer comes from comparing the
    query with every file's bounds in numpy. Other cases use TorchGeo's own path.
    """

    filename_glob = "*"
    _boxes: np.ndarray | None = None

    def _file_boxes(self) -> np.ndarray | None:
        if self._boxes is None:
            idx = self.index
            undated = bool(
                (idx.index.left == idx.index.left.min()).all()
                and (idx.index.right == idx.index.right.max()).all()
            )
            b = (
                idx.geometry.bounds.to_numpy(np.float64)
                if undated and not self.separate_files
                else np.empty((0, 4))
            )
            self._boxes = b
            self._paths = list(idx.filepath)
            self._bounds = self.bounds
            self._crs = self.crs
        return self._boxes if len(self._boxes) else None

    def __getitem__(self, query: Any) -> dict[str, Any]:
        from geoseg.datasets._torchgeo import TORCHGEO_VERSION

        boxes = (
            self._file_boxes() if TORCHGEO_VERSION < (0, 9) and isinstance(query, tuple) else None
        )
        if boxes is None or len(query) < 2 or not all(isinstance(q, slice) for q in query):
            return super().__getitem__(query)
        full = list(self._bounds)
        for i, q in enumerate(query[:3]):
            full[i] = slice(
                full[i].start if q.start is None else q.start,
                full[i].stop if q.stop is None else q.stop,
                full[i].step if q.step is None else q.step,
            )
        x, y = full[0], full[1]
        hit = (
            (boxes[:, 0] <= x.stop)
            & (boxes[:, 2] >= x.start)
            & (boxes[:, 1] <= y.stop)
            & (boxes[:, 3] >= y.start)
        )
        if not hit.any():
            raise IndexError(f"query: {query} not found in index with bounds: {self._bounds}")
        data = self._merge_files(
            [self._paths[i] for i in np.flatnonzero(hit)], tuple(full), self.band_indexes
        )
        sample: dict[str, Any] = {"crs": self._crs, "bounds": tuple(full)}
        if self.is_image:
            sample["image"] = data.to(self.dtype) if data.dtype != self.dtype else data
        else:
            sample["mask"] = (data.to(self.dtype) if data.dtype != self.dtype else data).squeeze(0)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def _merge_files(
        self, filepaths: Sequence[str], query: Any, band_indexes: Sequence[int] | None = None
    ) -> torch.Tensor:
        paths = list(filepaths)  # a pandas Series in TorchGeo 0.8
        if len(paths) == 1 and self.cache:
            src = self._cached_load_warp_file(paths[0])
            if isinstance(src, DatasetReader):
                full = len(query) == 3 and all(
                    q.start is not None and q.stop is not None and q.step for q in query
                )
                x, y, _ = query if full else self._disambiguate_slice(query)
                rx, ry = x.step, y.step
                t = src.transform
                if (
                    t.b == 0 == t.d
                    and t.e < 0
                    and abs(t.a - rx) <= 1e-9 * rx
                    and abs(-t.e - ry) <= 1e-9 * ry
                ):
                    rows, cols = round((y.stop - y.start) / ry), round((x.stop - x.start) / rx)
                    col0, row0 = round((x.start - t.c) / t.a), round((t.f - y.stop) / -t.e)
                    if (
                        col0 >= 0
                        and row0 >= 0
                        and col0 + cols <= src.width
                        and row0 + rows <= src.height
                    ):
                        window = ((row0, row0 + rows), (col0, col0 + cols))
                        data = src.read(band_indexes, window=window)
                        want = (
                            np.float32 if self.is_image else np.int64
                        )  # convert in numpy: no torch thread pool
                        return torch.from_numpy(data.astype(want, copy=False))
        return super()._merge_files(filepaths, query, band_indexes)


class GeoTiffImages(_FastRaster):
    """Image GeoTIFFs (any band count); float32 samples."""

    is_image = True


class GeoTiffLabels(_FastRaster):
    """Label GeoTIFFs of class ids; int64 samples."""

    is_image = False
    dtype = torch.long


class VectorLabels(VectorDataset):
    """Polygons rasterized on the fly; ``attribute`` holds a class id or a class name.

    With names, ``classes`` lists them in id order (the first is the background, burnt as 0 where
    no polygon lies).
    """

    filename_glob = "*"

    def __init__(
        self,
        paths: Sequence[str],
        *,
        attribute: str | None = None,
        classes: Sequence[str] = (),
        crs: Any = None,
        res: Any = None,
    ) -> None:
        self._names = {n: i for i, n in enumerate(classes)}
        super().__init__(paths=paths, crs=crs, res=res, label_name=attribute)

    def get_label(self, feature: Any) -> int:  # 0.8 passes a pandas Series, earlier releases a dict
        if not self.label_name:
            return 1
        props = feature.get("properties", feature) if isinstance(feature, dict) else feature
        value = props.get(self.label_name)
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            if value not in self._names:
                raise DatasetError(
                    f"label attribute {self.label_name!r} has class {value!r}, which is not in the "
                    f"class list {list(self._names)}; add it to data.classes"
                )
            return self._names[value]
        if value is None:
            raise DatasetError(
                f"a polygon has no {self.label_name!r} value; give every polygon a class"
            )
        return int(value)


@dataclass(frozen=True)
class _FileInfo:
    """What dataset building needs to know of one raster, read in one open."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int
    nodata: float | None
    dtype: str

    @property
    def res(self) -> tuple[float, float]:
        return round(abs(self.transform.a), 9), round(abs(self.transform.e), 9)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return Scene(None, size=(self.height, self.width), transform=self.transform).bounds


@lru_cache(maxsize=4096)
def _info(path: str, mtime: float) -> _FileInfo:
    try:
        with open_raster(path) as src:
            return _FileInfo(
                src.crs, src.transform, src.width, src.height, src.nodata, src.dtypes[0]
            )
    except RasterOpenError as exc:
        raise DatasetError(
            f"{path}: cannot open as a raster ({exc}); remove it or fix the glob"
        ) from None


def file_info(path: str) -> _FileInfo:
    """CRS, grid and nodata of a raster (opened once per path and modification time)."""
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = 0.0  # a URL: opened once per process
    return _info(path, mtime)


def _describe(paths: Sequence[str]) -> tuple[set[str], set[tuple[float, float]]]:
    infos = [file_info(p) for p in paths]
    return {i.crs.to_string() if i.crs else "none" for i in infos}, {i.res for i in infos}


def geotiff_dataset(
    images: str | Sequence[str],
    labels: str | Sequence[str] | None = None,
    *,
    root: str = "",
    label_attribute: str | None = None,
    classes: Sequence[str] = (),
    bands: Sequence[int] | None = None,
) -> Any:
    """A TorchGeo dataset of images, intersected with their labels when given.

    Raises:
        DatasetError: no image (or no label) file matched, or a file that cannot be opened.
    """
    image_paths = expand_paths(images, root)
    if not image_paths:
        raise DatasetError(
            f"no image file matches {images!r}{f' under {root}' if root else ''}; expected "
            "GeoTIFFs, e.g. images/*.tif"
        )
    image_ds, grid = _image_dataset(image_paths, bands)
    if labels is None:
        return image_ds
    label_paths = expand_paths(labels, root)
    if not label_paths:
        raise DatasetError(
            f"no label file matches {labels!r}{f' under {root}' if root else ''}; expected label "
            "GeoTIFFs or GeoJSON/GPKG"
        )
    label_grid = None if _is_vector(label_paths) else _describe(label_paths)
    label_ds = _label_dataset(
        label_paths, image_ds, grid, label_grid, label_attribute=label_attribute, classes=classes
    )
    return _intersect(image_ds, label_ds)


Grid = tuple[set[str], set[tuple[float, float]]]  # the CRSs and resolutions of a set of files


def _is_vector(paths: Sequence[str]) -> bool:
    return all(
        Path(p).suffix.lower() in (".geojson", ".json", ".gpkg", ".shp", ".fgb") for p in paths
    )


def _image_dataset(
    paths: list[str], bands: Sequence[int] | None = None
) -> tuple[GeoTiffImages, Grid]:
    grid = _describe(paths)
    if "none" in grid[0]:
        raise DatasetError(
            "an image has no CRS; georeferenced datasets need one (use the dubai kind for plain "
            "images)"
        )
    image_ds = GeoTiffImages(paths=paths)
    if bands is not None:
        image_ds.band_indexes = list(bands)
    return image_ds, grid


def _label_dataset(
    label_paths: list[str],
    image_ds: GeoTiffImages,
    grid: Grid,
    label_grid: Grid | None,
    *,
    label_attribute: str | None,
    classes: Sequence[str],
) -> Any:
    """Labels on the image dataset's CRS and resolution (``label_grid`` None: vector labels)."""
    if label_grid is None:
        return VectorLabels(
            label_paths,
            attribute=label_attribute,
            classes=classes,
            crs=image_ds.crs,
            res=image_ds.res,
        )
    if label_grid != grid:
        (lcrs, lres), (icrs, ires) = label_grid, grid
        warnings.warn(
            AlignmentWarning(
                f"labels are in {sorted(lcrs)} at {sorted(lres)} but images are in {sorted(icrs)} "
                f"at {sorted(ires)}; labels are reprojected to the image grid (nearest neighbour)"
            ),
            stacklevel=3,
        )
    return GeoTiffLabels(paths=label_paths, crs=image_ds.crs, res=image_ds.res)


def _intersect(image_ds: GeoTiffImages, label_ds: Any) -> Any:
    try:
        return IntersectionDataset(image_ds, label_ds)
    except RuntimeError as exc:
        if "intersection" not in str(exc):
            raise
        raise DatasetError(
            f"images and labels do not overlap: images cover {_box(image_ds)} and labels "
            f"{_box(label_ds)} (in {image_ds.crs.to_string()}); pair each image with labels of the "
            "same area"
        ) from None


def _box(ds: Any) -> str:
    x, y = ds.bounds[0], ds.bounds[1]
    if isinstance(x, slice):
        return f"x {x.start:.1f}..{x.stop:.1f}, y {y.start:.1f}..{y.stop:.1f}"
    return str(tuple(ds.bounds)[:4])


def image_nodata(paths: Sequence[str]) -> float | None:
    """The nodata value the image files declare (the first one set), or None."""
    return next((float(i.nodata) for i in map(file_info, paths) if i.nodata is not None), None)


def to_training_sample(
    sample: dict[str, Any],
    *,
    normalization: Normalization,
    num_classes: int,
    nodata: float | None = None,
) -> dict[str, torch.Tensor]:
    """A TorchGeo sample to ``{"image", "mask", "valid"}``: invalid pixels zeroed and ignored.

    Invalid pixels: NaN in any band, or ``nodata`` in every band.
    """
    image = sample_image(sample).numpy().astype(np.float32, copy=False)
    valid = valid_mask(image, nodata)
    x = normalization.apply(np.nan_to_num(image))
    x[:, ~valid] = 0.0
    if "mask" in sample:
        mask = sample_mask(sample).numpy().astype(np.int64)
        mask[(mask < 0) | (mask >= num_classes) | ~valid] = IGNORE_INDEX
    else:
        mask = np.full(valid.shape, IGNORE_INDEX, np.int64)
    return {
        "image": torch.from_numpy(x),
        "mask": torch.from_numpy(mask),
        "valid": torch.from_numpy(valid),
    }


def split_scenes_by_location(
    scenes: Sequence[Scene], val_fraction: float, *, seed: int = 0
) -> dict[str, list[Scene]]:
    """Split scenes so overlapping ones stay on one side (see
    :func:`geoseg.datasets.kinds.split_scenes`)."""
    from geoseg.datasets.kind import split_scenes

    return split_scenes(scenes, val_fraction, seed=seed)


def geotiff_scenes(
    images: Sequence[str],
    labels: Sequence[str],
    *,
    label_attribute: str | None = None,
    classes: Sequence[str] = (),
) -> tuple[list[Scene], ClassTable, float | None]:
    """Read each image with its labels through TorchGeo (labels aligned to the image grid).

    Returns the scenes, the class table (names from ``classes``, the label raster's category
    names, or ``class0..``), and the images' nodata value.
    """
    from geoseg.datasets._torchgeo import make_query

    if not labels:
        raise DatasetError(
            "no label file given or matched; training needs label GeoTIFFs or polygons"
        )
    nodata = image_nodata(images)
    scenes = []
    top = 0
    label_nodata = _label_nodata(labels)
    label_grid = None if _is_vector(labels) else _describe(labels)
    label_sets: dict[
        tuple[str, Any], Any
    ] = {}  # one label dataset per image CRS and resolution, not per image
    for path in images:
        image_ds, grid = _image_dataset([path])
        key = (image_ds.crs.to_wkt(), image_ds.res)
        if key not in label_sets:
            label_sets[key] = _label_dataset(
                list(labels),
                image_ds,
                grid,
                label_grid,
                label_attribute=label_attribute,
                classes=classes,
            )
        ds = _intersect(image_ds, label_sets[key])
        info = file_info(path)
        transform, crs = info.transform, info.crs
        left, bottom, right, top_y = info.bounds
        try:
            sample = ds[
                make_query(left, bottom, right, top_y, (abs(transform.a), abs(transform.e)))
            ]
        except IndexError:
            continue  # this image has no labels over it
        image = sample_image(sample).numpy()
        mask = sample_mask(sample).numpy().astype(np.int64)
        valid = valid_mask(image, nodata)
        bad = ~valid | (mask < 0) | (mask >= IGNORE_INDEX)
        if label_nodata is not None:
            bad |= mask == label_nodata
        m = np.where(bad, IGNORE_INDEX, mask).astype(np.uint8)
        top = max(top, int(m[m != IGNORE_INDEX].max(initial=0)))
        scenes.append(
            Scene(
                image=np.nan_to_num(image).astype(np.float32),
                mask=m,
                valid=valid,
                name=path,
                group=path,
                transform=transform,
                crs=crs.to_string() if crs else None,
            )
        )
    if not scenes:
        raise DatasetError(
            "no image overlaps any label file; pair each image with labels of the same area"
        )
    if classes:
        if top >= len(classes):
            raise DatasetError(
                f"labels hold class id {top} but data.classes names only {len(classes)} classes "
                f"({', '.join(classes)}); name every class from 0 to {top}"
            )
        table = ClassTable.from_names(classes)
    else:
        table = _label_classes(labels, top + 1)
    return scenes, table, nodata


def _label_nodata(labels: Sequence[str]) -> float | None:
    return None if _is_vector(labels) else image_nodata(labels)


def _label_classes(labels: Sequence[str], count: int) -> ClassTable:
    if Path(labels[0]).suffix.lower() in (".tif", ".tiff"):
        with open_raster(labels[0]) as src:
            table = classes_of(src)
        if table is not None and len(table) >= count:
            return table
    return ClassTable.default(count)
