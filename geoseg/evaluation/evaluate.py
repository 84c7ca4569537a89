"""``evaluate``: run a checkpoint over held-out images with the prediction engine and score it.

Each image goes through :func:`geoseg.inference.predict_classes` (the same sliding window, blending
and precision as ``geoseg predict``, kept in memory); its class mask is compared with the labels on
the image's grid, nodata and ``ignore_index`` excluded. When the model has a ``building`` class,
predicted buildings are vectorized with :func:`geoseg.vectorize.vectorize_raster` and scored with
the SpaceNet metric against the true footprints.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.errors import NotGeoreferencedWarning

from geoseg.classes import IGNORE_INDEX, MASK_NODATA
from geoseg.datasets.kinds import DataSource, EvalPair, eval_pairs
from geoseg.errors import DatasetError, NoCRSWarning
from geoseg.evaluation.metrics import Scores, confusion_matrix, scores
from geoseg.evaluation.spacenet import PolygonScore, match_polygons
from geoseg.inference.options import PredictOptions
from geoseg.io.atomic import atomic_output, check_paths

__all__ = [
    "EvalPair",
    "EvalResult",
    "evaluate",
    "pairs_from_config",
    "pairs_from_dirs",
    "write_report",
]

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    scores: Scores
    classes: list[str]
    per_image: list[dict[str, Any]] = field(default_factory=list)
    buildings: PolygonScore | None = None
    seconds: float = 0.0
    megapixels: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = self.scores.to_dict(self.classes)
        out["images"] = self.per_image
        if self.buildings is not None:
            out["spacenet"] = self.buildings.to_dict()
        out["seconds"] = round(self.seconds, 3)
        out["megapixels"] = round(self.megapixels, 3)
        return out

    def table(self) -> str:
        """The per-class figures as a fixed-width table."""
        s = self.scores
        width = max(8, *(len(c) for c in self.classes))
        lines = [
            f"{'class':<{width}}  {'IoU':>6}  {'F1':>6}  {'prec':>6}  {'recall':>6}  {'pixels':>11}"
        ]
        fmt = lambda v: "   n/a" if not np.isfinite(v) else f"{v:6.3f}"  # noqa: E731
        for i, name in enumerate(self.classes):
            lines.append(
                f"{name:<{width}}  {fmt(s.iou[i])}  {fmt(s.f1[i])}  {fmt(s.precision[i])}  "
                f"{fmt(s.recall[i])}  {s.support[i]:>11,}"
            )
        lines.append(f"{'mean':<{width}}  {fmt(s.miou)}  {fmt(s.mf1)}")
        lines.append(
            f"pixel accuracy {s.accuracy:.3f} over {int(s.confusion.sum()):,} labelled pixels"
        )
        if self.buildings is not None:
            b = self.buildings
            lines.append(
                f"SpaceNet metric (IoU >= {b.iou_threshold}): F1 x 100 = {100 * b.f1:.1f}  "
                f"precision {b.precision:.3f}  recall {b.recall:.3f}  (TP {b.tp}, FP {b.fp}, FN "
                f"{b.fn})"
            )
        return "\n".join(lines)


def _read_labels(path: str, image: str) -> np.ndarray:
    """A label raster on the image grid (warped with nearest neighbour when grids differ)."""
    from geoseg.io.open import grid_of, open_raster, warped_onto

    with open_raster(image) as img, open_raster(path) as lab:
        same = (lab.crs, lab.transform, lab.shape) == (img.crs, img.transform, img.shape)
        if same or img.crs is None or lab.crs is None:
            if lab.shape != img.shape:
                raise DatasetError(
                    f"{path}: labels are {lab.width}x{lab.height} but {image} is "
                    f"{img.width}x{img.height}"
                )
            data = lab.read(1)
        else:
            with warped_onto(lab, grid_of(img), nodata=IGNORE_INDEX) as vrt:
                data = vrt.read(1)
        out = data.astype(np.int64)
        if lab.nodata is not None:
            out[data == lab.nodata] = IGNORE_INDEX
    return out


def checked_labels(pair: EvalPair, shape: tuple[int, int], names: Sequence[str]) -> np.ndarray:
    """The pair's labels as class indexes on the image grid, checked against the image's
    ``(rows, cols)`` and the model's class ``names``.

    Raises:
        DatasetError: labels of another size, or holding a class the model does not know.
    """
    labels = (
        pair.labels
        if isinstance(pair.labels, np.ndarray)
        else _read_labels(pair.labels, pair.image)
    )
    name = pair.name or Path(pair.image).name
    if labels.shape != shape:
        raise DatasetError(
            f"{name}: labels are {labels.shape[1]}x{labels.shape[0]} but the image is "
            f"{shape[1]}x{shape[0]}"
        )
    top = int(labels[labels != IGNORE_INDEX].max(initial=-1))
    if top >= len(names):
        raise DatasetError(
            f"{name}: labels hold class {top} but the model knows {len(names)} classes "
            f"({', '.join(names)}); is this the right checkpoint for these labels?"
        )
    return labels


def pairs_from_dirs(
    images: str | os.PathLike[str], labels: str | os.PathLike[str]
) -> list[EvalPair]:
    """Images and label rasters matched by file stem (``a.tif`` with ``a.tif`` or
    ``a_label.tif``...)."""
    idir, ldir = Path(images), Path(labels)
    for d, what in ((idir, "images"), (ldir, "labels")):
        if not d.is_dir():
            raise DatasetError(f"--{what} {d}: not a folder; expected a folder of rasters")
    exts = {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".vrt"}
    label_files = {p.stem: p for p in ldir.iterdir() if p.suffix.lower() in exts}
    out = []
    for img in sorted(p for p in idir.iterdir() if p.suffix.lower() in exts):
        match = label_files.get(img.stem) or next(
            (v for k, v in label_files.items() if k.startswith(img.stem)), None
        )
        if match is not None:
            out.append(EvalPair(str(img), str(match), img.name))
    if not out:
        raise DatasetError(f"no image in {idir} has a label raster of the same name in {ldir}")
    return out


def pairs_from_config(cfg: Any, split: str = "test") -> list[EvalPair]:
    """The held-out images a training config names, through its dataset kind.

    ``test`` tiles for ``dubai``; the validation part for ``spacenet6``; every image with its
    label raster for ``geotiff``; the kind's ``split`` part for a registered kind.

    Args:
        cfg: a :class:`~geoseg.training.TrainConfig` (its ``data`` and ``seed``), or a
            :class:`~geoseg.datasets.DataSource`.
        split: ``test`` or ``val``.
    """
    source: DataSource = cfg if isinstance(cfg, DataSource) else cfg.data
    return eval_pairs(source, split, seed=int(getattr(cfg, "seed", 0)))


def _polygons_of(mask: np.ndarray, value: int) -> list[Any]:
    """Polygons (pixel coordinates) of one class of a mask, by the vectorizer's polygonizer, in
    memory."""
    from geoseg.vectorize.polygonize import polygonize_block

    pieces, _ = polygonize_block(
        (mask == value).astype(np.uint8), row_off=0, col_off=0, exclude=frozenset({0})
    )
    return list(pieces.geoms)


def evaluate(
    checkpoint: Any,
    pairs: Sequence[EvalPair],
    options: PredictOptions | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    building_class: str | None = "auto",
    quicklooks: bool = True,
    progress: Callable[[int, int], None] | None = None,
    **overrides: Any,
) -> EvalResult:
    """Predict every pair's image with ``checkpoint`` and score the class masks.

    Args:
        checkpoint: a checkpoint path or a loaded model.
        pairs: images with their labels.
        out_dir: also write ``metrics.json`` and ``confusion.png`` here, and with ``quicklooks``,
            ``quicklooks/<image>.png``: each image with its ground truth beside the prediction.
        building_class: class scored with the SpaceNet metric; ``"auto"``: ``building`` when the
            model is a building model (background and building, optionally edge and contact);
            None: never.
        options: how to predict (:class:`~geoseg.inference.PredictOptions`), the same value
            ``predict_raster`` takes; keyword ``overrides`` change fields of it.
    """
    from geoseg.inference.engine import predict_classes, resolve_model

    opts = PredictOptions.of(options, **overrides)
    if not pairs:
        raise DatasetError("nothing to evaluate: no image/label pair")
    if out_dir is not None:  # before any work: the report never replaces an input
        inputs: dict[str, Any] = {
            "CKPT": checkpoint if isinstance(checkpoint, (str, os.PathLike)) else None
        }
        for k, pair in enumerate(pairs):
            inputs[f"image {k + 1}"] = pair.image
            inputs[f"labels {k + 1}"] = (
                pair.labels if isinstance(pair.labels, (str, os.PathLike)) else None
            )
        out = Path(out_dir)
        outputs = {"metrics.json": out / "metrics.json", "confusion.png": out / "confusion.png"}
        if quicklooks:
            outputs.update(
                {f"quicklook {k + 1}": _quicklook_path(out, pair) for k, pair in enumerate(pairs)}
            )
        check_paths(inputs, outputs)
    loaded = resolve_model(checkpoint)
    names = loaded.config.classes.names
    ids = [c.id for c in loaded.config.classes]
    n = len(names)
    total = np.zeros((n, n), np.int64)
    per_image: list[dict[str, Any]] = []
    poly_scores: list[PolygonScore] = []
    if building_class == "auto":
        building_class = (
            "building"
            if "building" in names and set(names) <= {"background", "building", "edge", "contact"}
            else None
        )
    bidx = names.index(building_class) if building_class in names else None
    seconds = megapixels = 0.0
    for k, pair in enumerate(pairs):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoCRSWarning)
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            pred_ids = predict_classes(pair.image, loaded, opts).data[0]
        seconds += time.perf_counter() - start
        megapixels += pred_ids.size / 1e6
        pred = np.full(pred_ids.shape, -1, np.int64)
        for i, cid in enumerate(ids):
            pred[pred_ids == cid] = i
        labels = checked_labels(pair, pred.shape, names)
        valid = pred_ids != MASK_NODATA
        cm = confusion_matrix(pred, labels, n, valid=valid)
        total += cm
        entry: dict[str, Any] = {
            "image": pair.name,
            "miou": _clean(scores(cm).miou),
            "pixels": int(cm.sum()),
        }
        if bidx is not None:
            truth = pair.footprints if pair.footprints is not None else _polygons_of(labels, bidx)
            ps = match_polygons(_polygons_of(pred, bidx), truth)
            poly_scores.append(ps)
            entry["spacenet_f1"] = round(100 * ps.f1, 3)
        per_image.append(entry)
        if out_dir is not None and quicklooks:
            from geoseg.io.quicklook import write_comparison

            _quicklook_path(Path(out_dir), pair).parent.mkdir(parents=True, exist_ok=True)
            score = entry["miou"]
            caption = (
                f"{pair.name}: mIoU {score:.3f} over {entry['pixels']:,} labelled pixels"
                if score is not None
                else pair.name
            )
            write_comparison(
                pair.image,
                pred_ids,
                labels,
                loaded.config.classes,
                _quicklook_path(Path(out_dir), pair),
                caption=caption,
            )
        if progress is not None:
            progress(k + 1, len(pairs))
    report = EvalResult(
        scores(total),
        names,
        per_image,
        PolygonScore.total(poly_scores) if poly_scores else None,
        seconds,
        megapixels,
    )
    if out_dir is not None:
        from geoseg.inference.provenance import run_provenance

        write_report(report, out_dir)
        run_provenance(checkpoint, opts, [p.image for p in pairs], config=loaded.config).write(
            out_dir
        )
    return report


def _quicklook_path(out: Path, pair: EvalPair) -> Path:
    name = (
        Path(pair.name or Path(pair.image).name)
        .with_suffix("")
        .as_posix()
        .replace("/", "_")
        .replace(" ", "")
    )
    return out / "quicklooks" / f"{name}.png"


def _clean(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 6)


def write_report(result: EvalResult, out_dir: str | os.PathLike[str]) -> Path:
    """``metrics.json`` and ``confusion.png`` (row-normalised) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    from matplotlib.figure import (
        Figure,  # no pyplot: a library must not switch the caller's backend
    )

    cm = result.scores.confusion.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(cm / cm.sum(1, keepdims=True))
    n = len(result.classes)
    fig = Figure(figsize=(1.1 * n + 2.5, 1.0 * n + 2))
    ax = fig.subplots()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), result.classes, rotation=45, ha="right")
    ax.set_yticks(range(n), result.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_title(f"mIoU {result.scores.miou:.3f}, pixel accuracy {result.scores.accuracy:.3f}")
    fig.tight_layout()
    with atomic_output(out / "confusion.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return out / "metrics.json"
