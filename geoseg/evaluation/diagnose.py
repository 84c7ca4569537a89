"""``diagnose``: where and how a model fails, as GIS layers and a summary page.

For every image with labels, in one streamed pass over the blended probabilities (the same tile
engine as ``predict`` and ``evaluate``):

* ``<image>/prediction.tif``: the class mask;
* ``<image>/errors.tif``: correct pixels and each wrong pixel coded by its (true -> predicted)
  pair, with a colour table, class names, a ``.qml`` legend and a raster attribute table;
  nodata/ignored pixels transparent;
* ``<image>/entropy.tif`` and ``<image>/margin.tif``: uncertainty (float32, NaN where no data);

and over all images: ``cells.gpkg``/``cells.csv`` (per-cell metrics), ``reliability.png`` and
``calibration.json`` (ECE, optional fitted temperature), ``worst/`` (panels of the worst cells),
``metrics.json``/``confusion.png`` (as ``evaluate``) and ``index.md`` linking everything.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from geoseg.classes import MASK_NODATA
from geoseg.errors import DatasetError, NoCRSWarning, OutputExistsError
from geoseg.evaluation.blocks import pair_name, scored_blocks
from geoseg.evaluation.calibration import (
    CalibrationBins,
    PixelSample,
    apply_temperature,
    fit_temperature,
)
from geoseg.evaluation.errormap import error_codes, error_table
from geoseg.evaluation.evaluate import EvalPair, EvalResult, refuse_unscored, write_report
from geoseg.evaluation.metrics import scores
from geoseg.evaluation.panels import write_index
from geoseg.evaluation.pertile import CellGrid, write_cells
from geoseg.evaluation.uncertainty import entropy, margin
from geoseg.inference.options import PredictOptions
from geoseg.io.atomic import atomic_output, claim_folder

__all__ = ["DiagnoseResult", "diagnose"]

log = logging.getLogger(__name__)


@dataclass
class DiagnoseResult:
    """What ``diagnose`` wrote and found.

    Attributes:
        out_dir: the folder holding everything.
        report: the evaluation figures (as :func:`~geoseg.evaluation.evaluate.evaluate` gives).
        ece: expected calibration error of the blended probabilities.
        temperature: the fitted temperature (None unless asked for), and ``ece_tempered``.
        cells: per-cell records.
        worst: the worst cells' panel PNGs.
        index: the summary page.
    """

    out_dir: Path
    report: EvalResult
    ece: float
    temperature: float | None = None
    ece_tempered: float | None = None
    cells: list[dict[str, Any]] = field(default_factory=list)
    worst: list[Path] = field(default_factory=list)
    index: Path | None = None
    seconds: float = 0.0


def _safe(name: str) -> str:
    return (
        re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).with_suffix("").as_posix()).strip("_")
        or "image"
    )


def diagnose(
    checkpoint: Any,
    pairs: Sequence[EvalPair],
    out_dir: str | os.PathLike[str],
    options: PredictOptions | None = None,
    *,
    cell: int = 256,
    worst: int = 8,
    bins: int = 15,
    temperature: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **overrides: Any,
) -> DiagnoseResult:
    """Diagnose a model on images with labels; write every output into ``out_dir``.

    Each image is streamed in bands of rows (probabilities, labels and outputs alike), so memory
    holds counts, not images. A run that fails removes the folders it created.

    Args:
        checkpoint: checkpoint path or :class:`~geoseg.models.checkpoint.LoadedModel`.
        pairs: images with labels (:func:`~geoseg.evaluation.evaluate.pairs_from_config` or
            :func:`~geoseg.evaluation.evaluate.pairs_from_dirs`).
        out_dir: output folder (created; refused if it holds an ``index.md`` unless ``overwrite``).
        options: how to predict (:class:`PredictOptions`); keyword ``overrides`` change fields.
        cell: per-tile metric cell edge in pixels.
        worst: panels for this many worst cells (lowest pixel accuracy).
        bins: confidence bins of the reliability diagram and ECE.
        temperature: fit a temperature on a sample of pixels and write
            ``model-calibrated.safetensors`` (the checkpoint with the temperature recorded;
            ``predict`` applies it).
        overwrite: replace earlier outputs.

    Raises:
        DatasetError: no pair, labels that do not fit the image or the model, or no pixel
            scored in any image (all nodata or NaN).
        OutputExistsError: ``out_dir`` holds an earlier diagnosis and ``overwrite`` is False.
    """
    from geoseg.inference.engine import resolve_model

    start = time.perf_counter()
    if not pairs:
        raise DatasetError("nothing to diagnose: no image/label pair")
    out = Path(out_dir)
    _refuse_earlier(out, overwrite)
    opts = PredictOptions.of(options, **overrides)
    loaded = resolve_model(checkpoint)
    created = [p for p in (out, *out.parents) if not p.exists()][::-1]  # removed if the run fails
    # held against a second run into the same folder, and checked again now that none can write
    with claim_folder(out, "diagnose"):
        _refuse_earlier(out, overwrite)
        try:
            result = _diagnose(
                loaded,
                checkpoint,
                pairs,
                opts,
                out,
                created,
                start=start,
                cell=cell,
                worst=worst,
                bins=bins,
                temperature=temperature,
                progress=progress,
            )
            result.seconds = time.perf_counter() - start
            result.index = write_index(result, loaded.config)
        except BaseException:
            for folder in reversed(created):
                shutil.rmtree(folder, ignore_errors=True)
            raise
    return result


def _refuse_earlier(out: Path, overwrite: bool) -> None:
    """Refuse a folder that holds an earlier diagnosis unless ``overwrite``."""
    if (out / "index.md").exists() and not overwrite:
        raise OutputExistsError(
            f"{out}: holds an earlier diagnosis (index.md); pass --overwrite to replace it, or "
            "choose another folder"
        )


def _diagnose(
    loaded: Any,
    checkpoint: Any,
    pairs: Sequence[EvalPair],
    opts: PredictOptions,
    out: Path,
    created: list[Path],
    *,
    start: float,
    cell: int,
    worst: int,
    bins: int,
    temperature: bool,
    progress: Callable[[int, int], None] | None,
) -> DiagnoseResult:
    """The run itself, in its claimed folder: every image, then the summaries and provenance
    (the arguments are :func:`diagnose`'s)."""
    run = _Totals(loaded.config.num_classes, bins, temperature)
    for k, pair in enumerate(pairs):
        folder = out / _safe(pair_name(pair))
        _make_folder(folder, created)
        run.add(_diagnose_image(pair, loaded, opts, folder, cell, run))
        if progress is not None:
            progress(k + 1, len(pairs))
    report = EvalResult(
        scores(run.confusion),
        loaded.config.classes.names,
        run.per_image,
        None,
        time.perf_counter() - start,
        run.megapixels,
    )
    refuse_unscored(report)
    result = _write_summaries(run, report, loaded, out, cell=cell, worst=worst, bins=bins)
    from geoseg.inference.provenance import run_provenance

    run_provenance(checkpoint, opts, [p.image for p in pairs], config=loaded.config).write(out)
    return result


def _make_folder(folder: Path, created: list[Path]) -> None:
    """Create ``folder`` if it is missing, noting it in ``created``."""
    if folder.is_dir():
        return
    folder.mkdir(exist_ok=True)
    created.append(folder)


@dataclass
class _ImageDiagnosis:
    """What one image adds to the run."""

    name: str
    confusion: np.ndarray
    records: list[dict[str, Any]]
    grid: dict[str, Any]
    folder: Path
    pair: EvalPair


@dataclass
class _Totals:
    """The run's running totals: counts, calibration bins, a pixel sample, cell records."""

    num_classes: int
    bins: int
    temperature: bool
    confusion: np.ndarray = field(init=False)
    calib: CalibrationBins = field(init=False)
    sample: PixelSample | None = field(init=False)
    records: list[dict[str, Any]] = field(default_factory=list)
    transforms: dict[str, Any] = field(default_factory=dict)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    megapixels: float = 0.0

    def __post_init__(self) -> None:
        n = self.num_classes
        self.confusion = np.zeros((n, n), np.int64)
        self.calib = CalibrationBins(self.bins)
        self.sample = PixelSample() if self.temperature else None

    def add(self, image: _ImageDiagnosis) -> None:
        self.confusion += image.confusion
        self.megapixels += image.grid["height"] * image.grid["width"] / 1e6
        self.records.extend(image.records)
        self.transforms[image.name] = (image.grid["transform"], image.grid["crs"])
        s = scores(image.confusion)
        self.per_image.append(
            {
                "image": image.name,
                "miou": None if not np.isfinite(s.miou) else round(s.miou, 6),
                "pixels": int(image.confusion.sum()),
                "outputs": image.folder.name,
            }
        )
        # what the worst-cell panels re-read: the image, its labels and this image's outputs
        self.images[image.name] = {
            "pair": image.pair,
            "folder": image.folder,
            "stem": image.folder.name,
        }


def _image_writers(
    stack: ExitStack, folder: Path, grid: dict[str, Any], loaded: Any
) -> dict[str, Any]:
    """The four COGs of one image, opened on its grid: prediction, errors, entropy, margin."""
    from geoseg.io.writer import COGWriter

    cfg = loaded.config
    coded: dict[str, Any] = {"dtype": "uint8", "nodata": MASK_NODATA, "resampling": "mode"}
    score: dict[str, Any] = {"dtype": "float32", "nodata": float("nan"), "resampling": "average"}
    specs: dict[str, dict[str, Any]] = {
        "prediction": {"classes": cfg.classes, "descriptions": ["class"], **coded},
        "errors": {
            "classes": error_table(cfg.classes),
            "descriptions": ["true -> predicted"],
            **coded,
        },
        "entropy": {"descriptions": ["normalized entropy"], **score},
        "margin": {"descriptions": ["top-1 minus top-2 probability"], **score},
    }
    return {
        key: stack.enter_context(
            COGWriter(folder / f"{key}.tif", count=1, overwrite=True, **spec, **grid)
        )
        for key, spec in specs.items()
    }


def _diagnose_image(
    pair: EvalPair,
    loaded: Any,
    opts: PredictOptions,
    folder: Path,
    cell: int,
    run: _Totals,
) -> _ImageDiagnosis:
    """Stream one image: its four COGs, its cells, and its pixels into the run's calibration."""
    from geoseg.io.reader import RasterReader

    cfg = loaded.config
    names, n = cfg.classes.names, cfg.num_classes
    id_of = np.array([c.id for c in cfg.classes], np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with RasterReader(pair.image) as r:
            grid = r.grid
    cells = CellGrid(grid["height"], grid["width"], cell, n)
    hist = np.zeros(256, np.int64)
    with ExitStack() as stack:
        writers = _image_writers(stack, folder, grid, loaded)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoCRSWarning)
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            for block in scored_blocks(pair, loaded, opts, names):
                r0, c0 = block.offsets
                probs, valid, pred, truth = block.probs, block.valid, block.pred, block.truth
                counted = block.counted
                codes = error_codes(pred, truth, counted, n)
                hist += np.bincount(codes.ravel(), minlength=256)
                ent, mar = entropy(probs), margin(probs)
                ent[~valid], mar[~valid] = np.nan, np.nan
                layers = {
                    "prediction": np.where(valid, id_of[pred], MASK_NODATA).astype(np.uint8),
                    "errors": codes,
                    "entropy": ent,
                    "margin": mar,
                }
                window = Window(c0, r0, pred.shape[1], pred.shape[0])
                for key, data in layers.items():
                    writers[key].write(data[None], window)
                cells.add(r0, c0, truth, pred, counted, np.nan_to_num(ent))
                run.calib.add(probs.max(axis=0)[counted], (pred == truth)[counted])
                if run.sample is not None:
                    run.sample.add(probs[:, counted], truth[counted])
        writers["errors"].class_counts = hist  # the attribute table gets a count column
    name = pair_name(pair)
    # the cells hold every counted pixel once
    return _ImageDiagnosis(name, cells.total(), cells.records(names, name), grid, folder, pair)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _calibration(run: _Totals, loaded: Any, out: Path, result: DiagnoseResult) -> dict[str, Any]:
    """The ECE figures, and with a pixel sample the fitted temperature (its checkpoint written)."""
    calib, sample = run.calib, run.sample
    calibration: dict[str, Any] = {"ece": calib.ece, "bins": calib.to_dict()}
    if sample is None:
        return calibration
    logp, lab = sample.arrays()
    t = fit_temperature(logp, lab)
    tempered = CalibrationBins(run.bins)
    if lab.size:
        p = apply_temperature(logp, t)
        tempered.add(p.max(axis=0), p.argmax(axis=0) == lab)
        before = CalibrationBins(run.bins)
        q = np.exp(logp)
        before.add(q.max(axis=0), q.argmax(axis=0) == lab)
        calibration.update(
            temperature=t,
            sample_pixels=int(lab.size),
            ece_sample_before=before.ece,
            ece_sample_after=tempered.ece,
        )
    result.temperature, result.ece_tempered = t, tempered.ece
    _save_tempered(loaded, t, tempered.ece, out / "model-calibrated.safetensors")
    return calibration


def _write_summaries(
    run: _Totals,
    report: EvalResult,
    loaded: Any,
    out: Path,
    *,
    cell: int,
    worst: int,
    bins: int,
) -> DiagnoseResult:
    """Everything over all images: metrics, cells, reliability, calibration, worst panels."""
    from geoseg.evaluation.panels import write_worst_panels

    cfg = loaded.config
    write_report(report, out)
    if run.records:
        write_cells(run.records, run.transforms, cell, out / "cells.gpkg", out / "cells.csv")
    run.calib.plot(
        out / "reliability.png",
        title=f"{cfg.architecture}-{cfg.encoder}: ECE = {run.calib.ece:.3f} ({bins} bins)",
    )
    result = DiagnoseResult(out, report, run.calib.ece, cells=run.records)
    calibration = _calibration(run, loaded, out, result)
    with atomic_output(out / "calibration.json") as tmp:
        tmp.write_text(json.dumps(_finite(calibration), indent=2, allow_nan=False), "utf-8")
    result.worst = write_worst_panels(
        run.records,
        run.images,
        cfg,
        error_table(cfg.classes),
        out / "worst",
        count=worst,
        cell=cell,
    )
    return result


def _save_tempered(loaded: Any, temperature: float, ece: float, path: Path) -> None:
    """The checkpoint with its calibration temperature recorded (``predict`` divides logits by
    it)."""
    from geoseg.models.checkpoint import save_checkpoint

    metrics = dict(loaded.config.metrics)
    metrics["calibration"] = {
        "temperature": round(float(temperature), 6),
        "ece_after": round(float(ece), 6),
    }
    save_checkpoint(loaded.model, loaded.config.replace(metrics=metrics), path)
