"""Per-tile metrics: a grid of cells over an image, each with its own confusion matrix.

:class:`CellGrid` accumulates, for every ``cell x cell`` pixel square, the confusion counts and
the summed entropy of the pixels streamed into it; :func:`write_cells` writes the grid as a
GeoPackage polygon layer (styled in QGIS by mIoU) and as CSV. Summing any count column over the
cells gives the image's global count.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from geoseg.evaluation.metrics import scores
from geoseg.io.atomic import atomic_output

__all__ = ["CellGrid", "write_cells"]


@dataclass
class CellGrid:
    """Confusion counts per cell of a ``height x width`` image.

    Attributes:
        height: image rows.
        width: image columns.
        cell: cell edge in pixels.
        num_classes: classes.
    """

    height: int
    width: int
    cell: int
    num_classes: int
    confusion: np.ndarray = field(init=False)
    entropy: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.rows = -(-self.height // self.cell)
        self.cols = -(-self.width // self.cell)
        n = self.num_classes
        self.confusion = np.zeros((self.rows * self.cols, n, n), np.int64)
        self.entropy = np.zeros(self.rows * self.cols, np.float64)

    def add(
        self,
        row_off: int,
        col_off: int,
        truth: np.ndarray,
        pred: np.ndarray,
        valid: np.ndarray,
        entropy: np.ndarray,
    ) -> None:
        """Add a block of pixels at ``(row_off, col_off)``: class indexes ``truth`` and ``pred``,
        ``valid`` pixels that count, and their entropy."""
        n = self.num_classes
        rows = (np.arange(row_off, row_off + truth.shape[0]) // self.cell) * self.cols
        cols = np.arange(col_off, col_off + truth.shape[1]) // self.cell
        ok = valid & (truth >= 0) & (truth < n) & (pred >= 0) & (pred < n)
        cell = np.add.outer(rows, cols)[ok]
        code = (cell * n + truth[ok]) * n + pred[ok]
        self.confusion += np.bincount(code, minlength=self.confusion.size).reshape(
            self.confusion.shape
        )
        self.entropy += np.bincount(cell, weights=entropy[ok], minlength=self.entropy.size)

    def total(self) -> np.ndarray:
        """The ``(n, n)`` confusion matrix of every pixel added (true rows, predicted columns)."""
        return self.confusion.sum(axis=0)

    def records(self, names: list[str], image: str = "") -> list[dict[str, Any]]:
        """One dict per cell that holds labelled pixels: position, counts and scores."""
        out = []
        for i in range(self.rows * self.cols):
            cm = self.confusion[i]
            pixels = int(cm.sum())
            if pixels == 0:
                continue
            s = scores(cm)
            row_off, col_off = (i // self.cols) * self.cell, (i % self.cols) * self.cell
            rec: dict[str, Any] = {
                "image": image,
                "cell_row": i // self.cols,
                "cell_col": i % self.cols,
                "row_off": row_off,
                "col_off": col_off,
                # edge cells end at the image's edge
                "height": min(self.cell, self.height - row_off),
                "width": min(self.cell, self.width - col_off),
                "pixels": pixels,
                "correct": int(np.trace(cm)),
                "accuracy": float(s.accuracy),
                "miou": _num(s.miou),
                "mean_entropy": float(self.entropy[i] / pixels),
            }
            for k, name in enumerate(names):
                rec[f"iou_{name}"] = _num(s.iou[k])
                rec[f"f1_{name}"] = _num(s.f1[k])
                rec[f"true_{name}"] = int(cm[k].sum())
                rec[f"pred_{name}"] = int(cm[:, k].sum())
            out.append(rec)
        return out


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def _graduated_qml(field_name: str) -> str:
    """A QGIS style: cells coloured red (low) to green (high) by ``field_name`` in five classes."""
    colors = ["215,25,28", "253,174,97", "255,255,191", "166,217,106", "26,150,65"]
    ranges, symbols = [], []
    for k, col in enumerate(colors):
        lo, hi = k / 5, (k + 1) / 5
        ranges.append(
            f'<range lower="{lo:.2f}" upper="{hi:.2f}" label="{lo:.1f} - {hi:.1f}" symbol="{k}" '
            'render="true"/>'
        )
        symbols.append(
            f'<symbol type="fill" name="{k}" alpha="0.55"><layer class="SimpleFill" enabled="1">'
            f'<Option type="Map"><Option name="color" value="{col},255" type="QString"/><Option '
            'name="outline_color" value="60,60,60,255" type="QString"/><Option '
            'name="outline_width" value="0.2" type="QString"/><Option name="style" value="solid" '
            f'type="QString"/></Option><prop k="color" v="{col},255"/></layer></symbol>'
        )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n<qgis version=\"3.28\" "
        'styleCategories="Symbology">\n'
        f'<renderer-v2 type="graduatedSymbol" attr="{field_name}" '
        'graduatedMethod="GraduatedColor" symbollevels="0">'
        f"<ranges>{''.join(ranges)}</ranges><symbols>{''.join(symbols)}</symbols></renderer-v2>\n"
        "<layerGeometryType>2</layerGeometryType>\n</qgis>\n"
    )


def write_cells(
    records: list[dict[str, Any]],
    transforms: dict[str, tuple[Affine, CRS | None]],
    cell: int,
    gpkg: str | os.PathLike[str],
    csv_path: str | os.PathLike[str],
    *,
    style_by: str = "miou",
) -> tuple[Path, Path]:
    """Write the cells as a GeoPackage layer ``cells`` (polygons on each image's grid, clipped to
    the image, styled by ``style_by``) and as CSV. ``transforms`` maps an image name to its
    transform and CRS.

    The GeoPackage is version 1.2 with its spatial index, as ``geoseg vectorize`` writes it (what
    GDAL 3.6 and QGIS 3.22 read without warnings). Images in different CRSs share the layer only
    when their CRSs agree; the layer takes the first image's CRS.
    """
    import geopandas as gpd
    import pyogrio
    from shapely.geometry import Polygon

    from geoseg.vectorize.sinks import GPKG_OPTIONS, store_gpkg_style

    geoms = []
    for rec in records:
        t, _ = transforms[rec["image"]]
        r0, c0 = rec["row_off"], rec["col_off"]
        r1, c1 = r0 + rec.get("height", cell), c0 + rec.get("width", cell)
        geoms.append(Polygon([t * (c0, r0), t * (c1, r0), t * (c1, r1), t * (c0, r1)]))
    crs = next((c for _, c in transforms.values() if c is not None), None)
    frame = gpd.GeoDataFrame(records, geometry=geoms, crs=crs)
    out = Path(gpkg)
    with atomic_output(out) as tmp:  # a unique temporary name: two runs never share one
        pyogrio.write_dataframe(
            frame,
            tmp,
            layer="cells",
            driver="GPKG",
            geometry_type="Polygon",
            dataset_options=GPKG_OPTIONS,
            layer_options={"SPATIAL_INDEX": "YES"},
        )
        store_gpkg_style(tmp, "cells", _graduated_qml(style_by))
    cpath = Path(csv_path)
    with atomic_output(cpath) as ctmp, ctmp.open("w", newline="", encoding="utf-8") as f:
        fields = list(records[0]) if records else ["image"]
        writer = csv.DictWriter(f, fieldnames=[*fields, "wkt"])
        writer.writeheader()
        for rec, g in zip(records, geoms, strict=True):
            writer.writerow({**rec, "wkt": g.wkt})
    return out, cpath
