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

from geoseg.classes import IGNORE_INDEX, MASK_NODATA
from geoseg.errors import DatasetError, OutputExistsError
from geoseg.evaluation.calibration import (
    CalibrationBins,
    PixelSample,
    apply_temperature,
    fit_temperature,
)
from geoseg.evaluation.errormap import error_codes, error_table
from geoseg.evaluation.evaluate import EvalPair, EvalResult, checked_labels, write_report
from geoseg.evaluation.metrics import scores
from geoseg.evaluation.pertile import CellGrid, write_cells
from geoseg.evaluation.uncertainty import entropy, margin
from geoseg.inference.options import PredictOptions
from geoseg.inference.tiles import _argmax0

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
        DatasetError: no pair, labels that do not fit the image or the model.
        OutputExistsError: ``out_dir`` holds an earlier diagnosis and ``overwrite`` is False.
    """
    from geoseg.errors import NoCRSWarning
    from geoseg.inference.engine import iter_probabilities, resolve_model
    from geoseg.io.reader import RasterReader
    from geoseg.io.writer import COGWriter

    start = time.perf_counter()
    if not pairs:
        raise DatasetError("nothing to diagnose: no image/label pair")
    out = Path(out_dir)
    if (out / "index.md").exists() and not overwrite:
        raise OutputExistsError(
            f"{out}: holds an earlier diagnosis (index.md); pass --overwrite to replace it, or "
            "choose another folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    opts = PredictOptions.of(options, **overrides)
    loaded = resolve_model(checkpoint)
    cfg = loaded.config
    names, ids = cfg.classes.names, [c.id for c in cfg.classes]
    n = len(names)
    id_of = np.array(ids, np.uint8)
    codes_table = error_table(cfg.classes)
    total = np.zeros((n, n), np.int64)
    calib = CalibrationBins(bins)
    sample = PixelSample() if temperature else None
    records: list[dict[str, Any]] = []
    transforms: dict[str, Any] = {}
    per_image: list[dict[str, Any]] = []
    images: dict[str, dict[str, Any]] = {}
    megapixels = 0.0
    for k, pair in enumerate(pairs):
        name = pair.name or Path(pair.image).name
        stem = _safe(name)
        folder = out / stem
        folder.mkdir(exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with RasterReader(pair.image) as r:
                geo = r.grid
        labels = checked_labels(pair, (geo["height"], geo["width"]), names)
        grid = CellGrid(geo["height"], geo["width"], cell, n)
        hist = np.zeros(256, np.int64)
        paths = {
            key: folder / f"{key}.tif" for key in ("prediction", "errors", "entropy", "margin")
        }
        with ExitStack() as stack:
            coded: dict[str, Any] = {"dtype": "uint8", "nodata": MASK_NODATA, "resampling": "mode"}
            score: dict[str, Any] = {
                "dtype": "float32",
                "nodata": float("nan"),
                "resampling": "average",
            }
            specs: dict[str, dict[str, Any]] = {
                "prediction": {"classes": cfg.classes, "descriptions": ["class"], **coded},
                "errors": {"classes": codes_table, "descriptions": ["true -> predicted"], **coded},
                "entropy": {"descriptions": ["normalized entropy"], **score},
                "margin": {"descriptions": ["top-1 minus top-2 probability"], **score},
            }
            w_pred, w_err, w_ent, w_mar = (
                stack.enter_context(COGWriter(paths[key], count=1, overwrite=True, **spec, **geo))
                for key, spec in specs.items()
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoCRSWarning)
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                for block in iter_probabilities(pair.image, loaded, opts):
                    w = block.window
                    assert w is not None
                    r0, c0, h, wd = int(w.row_off), int(w.col_off), int(w.height), int(w.width)
                    probs, valid = block.data, block.valid
                    pred = np.empty(probs.shape[1:], np.uint8)
                    _argmax0(probs, pred)  # one contiguous pass per class plane
                    truth = labels[r0 : r0 + h, c0 : c0 + wd]
                    counted = valid & (truth != IGNORE_INDEX) & (truth >= 0) & (truth < n)
                    codes = error_codes(pred, truth, counted, n)
                    hist += np.bincount(codes.ravel(), minlength=256)
                    ent, mar = entropy(probs), margin(probs)
                    ent[~valid], mar[~valid] = np.nan, np.nan
                    mask = np.where(valid, id_of[pred], MASK_NODATA).astype(np.uint8)
                    win = Window(c0, r0, wd, h)
                    w_pred.write(mask[None], win)
                    w_err.write(codes[None], win)
                    w_ent.write(ent[None], win)
                    w_mar.write(mar[None], win)
                    grid.add(r0, c0, truth, pred, counted, np.nan_to_num(ent))
                    conf = probs.max(axis=0)
                    calib.add(conf[counted], (pred == truth)[counted])
                    if sample is not None:
                        sample.add(probs[:, counted], truth[counted])
            w_err.class_counts = hist  # the attribute table gets a count column
        cm_image = grid.total()  # the cells hold every counted pixel once
        total += cm_image
        megapixels += geo["height"] * geo["width"] / 1e6
        recs = grid.records(names, name)
        records.extend(recs)
        transforms[name] = (geo["transform"], geo["crs"])
        s = scores(cm_image)
        per_image.append(
            {
                "image": name,
                "miou": None if not np.isfinite(s.miou) else round(s.miou, 6),
                "pixels": int(cm_image.sum()),
                "outputs": stem,
            }
        )
        images[name] = {"pair": pair, "labels": labels, "folder": folder, "stem": stem}
        if progress is not None:
            progress(k + 1, len(pairs))
        del labels
    report = EvalResult(
        scores(total), names, per_image, None, time.perf_counter() - start, megapixels
    )
    write_report(report, out)
    from geoseg.inference.provenance import run_provenance

    run_provenance(checkpoint, opts, [p.image for p in pairs], config=cfg).write(out)
    if records:
        write_cells(records, transforms, cell, out / "cells.gpkg", out / "cells.csv")
    calib.plot(
        out / "reliability.png",
        title=f"{cfg.architecture}-{cfg.encoder}: ECE = {calib.ece:.3f} ({bins} bins)",
    )
    result = DiagnoseResult(out, report, calib.ece, cells=records)
    calibration: dict[str, Any] = {"ece": calib.ece, "bins": calib.to_dict()}
    if sample is not None:
        logp, lab = sample.arrays()
        t = fit_temperature(logp, lab)
        tempered = CalibrationBins(bins)
        p = apply_temperature(logp, t) if lab.size else logp
        if lab.size:
            tempered.add(p.max(axis=0), p.argmax(axis=0) == lab)
            before = CalibrationBins(bins)
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
    tmp = out / ".calibration.json.partial"
    tmp.write_text(json.dumps(calibration, indent=2), encoding="utf-8")
    os.replace(tmp, out / "calibration.json")
    from geoseg.evaluation.panels import write_index, write_worst_panels

    result.worst = write_worst_panels(
        records, images, cfg, codes_table, out / "worst", count=worst, cell=cell
    )
    result.seconds = time.perf_counter() - start
    result.index = write_index(result, cfg)
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
