"""Evaluation: score a checkpoint on held-out images (IoU, F1, the SpaceNet polygon metric).

``from geoseg.evaluation import evaluate, pairs_from_config`` needs no torch; the model loads
when :func:`evaluate` runs.

Example::

    from geoseg.evaluation import evaluate, pairs_from_dirs
    report = evaluate("model.safetensors", pairs_from_dirs("images/", "labels/"))
    print(report.table())
"""

from __future__ import annotations

# ``evaluate`` is also the name of a submodule: binding the function here, after that submodule
# is imported, keeps ``geoseg.evaluation.evaluate`` the function.
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
    "EvalPair",
    "EvalResult",
    "PolygonScore",
    "Scores",
    "confusion_matrix",
    "evaluate",
    "match_polygons",
    "pairs_from_config",
    "pairs_from_dirs",
    "scores",
    "write_report",
]
