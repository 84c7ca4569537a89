"""Pixel metrics against hand-computed confusion matrices; the SpaceNet polygon metric."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import box

from geoseg.evaluation.metrics import confusion_matrix, scores
from geoseg.evaluation.spacenet import match_polygons


def test_confusion_matrix_by_hand() -> None:
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 2]])
    cm = confusion_matrix(pred, target, 3)
    # rows = truth, columns = prediction; the 255 pixel is ignored
    assert cm.tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 1]]
    s = scores(cm)
    # class 0: tp 1, fp 1, fn 1 -> IoU 1/3; class 1: tp 2, fp 1, fn 1 -> 1/2; class 2: tp 1, fp 1,
    # fn 1 -> 1/3
    assert s.iou.tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 3])
    assert s.f1.tolist() == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert s.precision.tolist() == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert s.recall.tolist() == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert s.miou == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert s.accuracy == pytest.approx(4 / 7)


def test_absent_class_is_left_out_of_the_mean() -> None:
    cm = confusion_matrix(np.array([0, 0, 1]), np.array([0, 0, 1]), 3)
    s = scores(cm)
    assert np.isnan(s.iou[2]) and s.miou == 1.0
    assert s.to_dict(["a", "b", "c"])["per_class"]["c"]["iou"] is None


def test_valid_mask_excludes_pixels() -> None:
    cm = confusion_matrix(np.array([0, 1]), np.array([1, 1]), 2, valid=np.array([False, True]))
    assert cm.tolist() == [[0, 0], [0, 1]]


def shifted(dx: float):
    return box(dx, 0, dx + 10, 10)


def test_spacenet_perfect_match() -> None:
    truth = [box(0, 0, 10, 10), box(20, 0, 30, 10)]
    s = match_polygons(list(truth), truth)
    assert (s.tp, s.fp, s.fn, s.f1) == (2, 0, 0, 1.0)


@pytest.mark.parametrize(("dx", "tp"), [(3.3, 1), (3.4, 0)])
def test_spacenet_threshold_at_half(dx: float, tp: int) -> None:
    # IoU of two 10x10 squares shifted by dx: (10 - dx) / (10 + dx); 0.5 at dx = 10/3
    s = match_polygons([shifted(dx)], [shifted(0)])
    assert s.tp == tp and s.fp == 1 - tp and s.fn == 1 - tp


def test_spacenet_one_to_one() -> None:
    # one big prediction over two buildings matches at most one of them
    truth = [box(0, 0, 10, 10), box(10, 0, 12, 10)]
    s = match_polygons([box(0, 0, 12, 10)], truth)
    assert (s.tp, s.fp, s.fn) == (1, 0, 1)
    # two predictions over one building: one true positive, one false positive
    s = match_polygons([box(0, 0, 10, 10), box(0, 0, 9, 10)], [box(0, 0, 10, 10)])
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    assert s.to_dict()["spacenet_score"] == pytest.approx(100 * 2 * 0.5 * 1 / 1.5, abs=1e-3)


def test_spacenet_empty_sets() -> None:
    assert match_polygons([], []).f1 == 1.0
    assert match_polygons([box(0, 0, 1, 1)], []).f1 == 0.0
