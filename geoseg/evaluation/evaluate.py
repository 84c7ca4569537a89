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

from geoseg.classes import MASK_NODATA
from geoseg.datasets.kinds import DataSource, EvalPair, eval_pairs
from geoseg.errors import DatasetError, NoCRSWarning, NoValidDataWarning
from geoseg.evaluation.blocks import pair_name
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


def checked_labels(pair: EvalPair, shape: tuple[int, int], names: Sequence[str]) -> np.ndarray:
    """The pair's labels, whole, as class indexes on the image grid, checked against the image's
    ``(rows, cols)`` and the model's class ``names``. (Scoring reads them window by window
    instead: :func:`~geoseg.evaluation.blocks.scored_blocks`.)

    Raises:
        DatasetError: labels of another size, or holding a class the model does not know.
    """
    from rasterio.windows import Window

    from geoseg.evaluation.blocks import check_label_classes, pair_name
    from geoseg.io.labels import LabelReader

    name = pair_name(pair)
    with LabelReader(pair.labels, pair.image, name=name) as reader:
        if (reader.height, reader.width) != shape:
            raise DatasetError(
                f"{name}: labels are {reader.width}x{reader.height} but the image is "
                f"{shape[1]}x{shape[0]}"
            )
        labels = reader.read(Window(0, 0, reader.width, reader.height))
    check_label_classes(labels, names, name)
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
    from geoseg.inference.engine import resolve_model

    opts = PredictOptions.of(options, **overrides)
    if not pairs:
        raise DatasetError("nothing to evaluate: no image/label pair")
    if out_dir is not None:  # before any work: the report never replaces an input
        _check_outputs(checkpoint, pairs, Path(out_dir), quicklooks)
    loaded = resolve_model(checkpoint)
    names = loaded.config.classes.names
    if building_class == "auto":
        building_class = (
            "building"
            if "building" in names and set(names) <= {"background", "building", "edge", "contact"}
            else None
        )
    bidx = names.index(building_class) if building_class in names else None
    total = np.zeros((len(names), len(names)), np.int64)
    per_image: list[dict[str, Any]] = []
    poly_scores: list[PolygonScore] = []
    seconds = megapixels = 0.0
    written: list[Path] = []
    try:
        for k, pair in enumerate(pairs):
            start = time.perf_counter()
            image = _score_image(
                pair,
                loaded,
                opts,
                bidx,
                Path(out_dir) if out_dir is not None and quicklooks else None,
            )
            seconds += time.perf_counter() - start
            megapixels += image.megapixels
            total += image.confusion
            per_image.append(image.entry)
            written += image.written
            if image.buildings is not None:
                poly_scores.append(image.buildings)
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
        refuse_unscored(report)
        if out_dir is not None:
            from geoseg.inference.provenance import run_provenance

            write_report(report, out_dir)
            run_provenance(checkpoint, opts, [p.image for p in pairs], config=loaded.config).write(
                out_dir
            )
    except BaseException:
        for path in written:  # a failed run leaves none of its pictures
            path.unlink(missing_ok=True)
        raise
    return report


def _check_outputs(checkpoint: Any, pairs: Sequence[EvalPair], out: Path, quicklooks: bool) -> None:
    """Refuse a report that would replace one of the run's inputs."""
    inputs: dict[str, Any] = {
        "CKPT": checkpoint if isinstance(checkpoint, (str, os.PathLike)) else None
    }
    for k, pair in enumerate(pairs):
        inputs[f"image {k + 1}"] = pair.image
        inputs[f"labels {k + 1}"] = (
            pair.labels if isinstance(pair.labels, (str, os.PathLike)) else None
        )
    outputs = {"metrics.json": out / "metrics.json", "confusion.png": out / "confusion.png"}
    if quicklooks:
        outputs.update(
            {f"quicklook {k + 1}": _quicklook_path(out, pair) for k, pair in enumerate(pairs)}
        )
    check_paths(inputs, outputs)


@dataclass
class _ImageScore:
    confusion: np.ndarray
    entry: dict[str, Any]
    megapixels: float
    buildings: PolygonScore | None
    written: list[Path]


def _score_image(
    pair: EvalPair,
    loaded: Any,
    opts: PredictOptions,
    bidx: int | None,
    quicklooks: Path | None,
) -> _ImageScore:
    """Stream one image through the engine and its labels: confusion counts, building footprints
    as bits, and the quicklook's thumbnails; never a full-size array."""
    from geoseg.evaluation.blocks import scored_blocks
    from geoseg.evaluation.footprints import PackedMask
    from geoseg.io.quicklook import NearestSample

    cfg = loaded.config
    names, n = cfg.classes.names, cfg.num_classes
    id_of = np.array([c.id for c in cfg.classes], np.uint8)
    cm = np.zeros((n, n), np.int64)
    shape = _image_shape(pair.image)
    thumbs = (NearestSample(shape), NearestSample(shape)) if quicklooks is not None else None
    # building footprints as bits: predicted, and true unless the pair brings its own polygons
    predicted = PackedMask(*shape) if bidx is not None else None
    true = PackedMask(*shape) if bidx is not None and pair.footprints is None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoCRSWarning)
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for block in scored_blocks(pair, loaded, opts, names):
            cm += confusion_matrix(block.pred, block.truth, n, valid=block.valid)
            r0, c0 = block.offsets
            if thumbs is not None:
                thumbs[0].add(r0, c0, np.where(block.valid, id_of[block.pred], MASK_NODATA))
                thumbs[1].add(r0, c0, block.truth)
            if predicted is not None:
                predicted.add(r0, c0, block.valid & (block.pred == bidx))
            if true is not None:
                true.add(r0, c0, block.truth == bidx)
    name = pair_name(pair)
    s = scores(cm)
    entry: dict[str, Any] = {"image": name, "miou": _clean(s.miou), "pixels": int(cm.sum())}
    buildings = None
    if predicted is not None:
        truth = true.polygons() if true is not None else (pair.footprints or [])
        buildings = match_polygons(predicted.polygons(), truth)
        entry["spacenet_f1"] = round(100 * buildings.f1, 3)
    written = []
    if thumbs is not None and quicklooks is not None:
        from geoseg.io.quicklook import write_comparison

        dst = _quicklook_path(quicklooks, pair)
        dst.parent.mkdir(parents=True, exist_ok=True)
        caption = (
            f"{pair.name}: mIoU {entry['miou']:.3f} over {entry['pixels']:,} labelled pixels"
            if entry["miou"] is not None
            else pair.name
        )
        written.append(
            write_comparison(
                pair.image, thumbs[0].data, thumbs[1].data, cfg.classes, dst, caption=caption
            )
        )
    return _ImageScore(cm, entry, shape[0] * shape[1] / 1e6, buildings, written)


def _image_shape(image: str) -> tuple[int, int]:
    from geoseg.io.open import open_raster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with open_raster(image) as ds:
            return int(ds.height), int(ds.width)


def refuse_unscored(report: EvalResult) -> None:
    """Refuse a run in which no pixel was scored (its figures would all be NaN); warn about the
    images that scored none.

    Raises:
        DatasetError: no image scored a pixel; naming the likely causes and the fix.
    """
    empty = [str(e["image"]) for e in report.per_image if not e["pixels"]]
    if report.scores.confusion.sum() == 0:
        raise DatasetError(
            f"no pixel scored in {len(report.per_image)} image(s): expected image pixels with "
            "data where the labels hold a class, got none (the images are all nodata or NaN, or "
            "the labels all ignored). Check the images and labels (geoseg info IMAGE)"
        )
    if empty:
        warnings.warn(
            f"no pixel scored in {len(empty)} image(s) ({', '.join(empty[:5])}"
            f"{', ...' if len(empty) > 5 else ''}): all nodata or NaN where labelled, or "
            "unlabelled; they count for nothing",
            NoValidDataWarning,
            stacklevel=3,
        )


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
