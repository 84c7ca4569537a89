"""Evaluation: score a checkpoint on held-out images (IoU, F1, the SpaceNet polygon metric), and
:func:`diagnose` where it fails (error maps, uncertainty, per-cell metrics, calibration).

``from geoseg.evaluation import evaluate, pairs_from_config`` needs no torch; the model loads
when :func:`evaluate` runs.

Example::

    from geoseg.evaluation import evaluate, pairs_from_dirs
    report = evaluate("model.safetensors", pairs_from_dirs("images/", "labels/"))
    print(report.table())
"""

from __future__ import annotations

# ``evaluate`` and ``diagnose`` are also the names of submodules: binding the functions here,
# after those submodules are imported, keeps ``geoseg.evaluation.evaluate`` and ``.diagnose``
# the functions.
from geoseg.evaluation.diagnose import DiagnoseResult, diagnose
from geoseg.evaluation.evaluate import (
    EvalPair,
    EvalResult,
    evaluate,
    pairs_from_config,
    pairs_from_dirs,
    write_report,
)
from geoseg.evaluation.metrics import Scores, confusion_matrix, scores
from geoseg.evaluation.spacenet import PolygonScore, match_polygons

__all__ = [
    "DiagnoseResult",
    "EvalPair",
    "EvalResult",
    "PolygonScore",
    "Scores",
    "confusion_matrix",
    "diagnose",
    "evaluate",
    "match_polygons",
    "pairs_from_config",
    "pairs_from_dirs",
    "scores",
    "write_report",
]
