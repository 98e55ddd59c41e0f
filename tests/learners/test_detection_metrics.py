"""Known-answer tests of the detection metrics (hand-computed cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labella.learners.detection_metrics import (
    ap_from_pr,
    average_precision,
    evaluate_detections,
    iou,
    iou_matrix,
    match_detections,
)

GT = [(0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10)]


def test_iou_by_hand() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    # overlap 5x10 = 50, union 100 + 100 - 50 = 150
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    # touching edges share no area
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    # a degenerate box (zero area) overlaps nothing
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    m = iou_matrix(GT, [(0, 0, 10, 10), (45, 0, 55, 10)])
    assert m.shape == (3, 2)
    assert m[0, 0] == 1.0 and m[2, 1] == pytest.approx(50 / 150)


def _three_gt_four_dets() -> tuple[dict, list]:
    # scores .9 TP, .8 FP (no overlap), .7 TP, .6 FP (duplicate of the first box); GT 3 missed
    gt = {"a": GT}
    dets = [
        ("a", 0.9, (0, 0, 10, 10)),
        ("a", 0.8, (100, 100, 110, 110)),
        ("a", 0.7, (20, 0, 30, 10)),
        ("a", 0.6, (0, 0, 10, 10)),
    ]
    return gt, dets


def test_matching_order_and_duplicates() -> None:
    gt, dets = _three_gt_four_dets()
    scores, tp = match_detections(gt, list(reversed(dets)), iou_threshold=0.5)
    assert scores.tolist() == [0.9, 0.8, 0.7, 0.6]
    assert tp.tolist() == [True, False, True, False]


def test_ap_voc_all_points_by_hand() -> None:
    gt, dets = _three_gt_four_dets()
    # precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3; envelope 1 up to 1/3, 2/3 up to 2/3
    expected = 1 / 3 * 1 + 1 / 3 * 2 / 3
    assert average_precision(gt, dets) == pytest.approx(expected)


def test_ap_coco_101_points_by_hand() -> None:
    gt, dets = _three_gt_four_dets()
    # recall points 0.00..0.33 (34 of them) get precision 1, 0.34..0.66 (33) get 2/3, the rest 0
    expected = (34 * 1 + 33 * 2 / 3) / 101
    got = average_precision(gt, dets, matching="coco", interpolation="coco101")
    assert got == pytest.approx(expected)


def test_perfect_detections_score_one_and_none_score_zero() -> None:
    gt = {"a": GT, "b": [(5, 5, 20, 20)]}
    perfect = {
        "a": [("car", *box, 0.9) for box in GT],
        "b": [("car", 5, 5, 20, 20, 0.5)],
    }
    truth = {image: [("car", *box) for box in boxes] for image, boxes in gt.items()}
    result = evaluate_detections(truth, perfect)
    assert result.map50 == pytest.approx(1.0)
    assert result.map50_95 == pytest.approx(1.0)
    assert result.per_class["car"].n_ground_truth == 4
    empty = evaluate_detections(truth, {})
    assert empty.map50 == 0.0 and empty.map50_95 == 0.0


def test_per_class_and_classes_without_ground_truth() -> None:
    truth = {"a": [("cat", 0, 0, 10, 10)], "b": [("dog", 0, 0, 10, 10)], "c": []}
    dets = {
        "a": [("cat", 0, 0, 10, 10, 0.9)],
        "b": [("dog", 50, 50, 60, 60, 0.9)],  # a miss
        "c": [("bird", 0, 0, 5, 5, 0.3)],  # a class with no ground truth: no AP, not averaged
        "z": [("cat", 0, 0, 10, 10, 0.99)],  # an image outside the evaluation: ignored
    }
    result = evaluate_detections(truth, dets)
    assert result.per_class["cat"].ap50 == 1.0
    assert result.per_class["cat"].n_detections == 1
    assert result.per_class["dog"].ap50 == 0.0
    assert result.per_class["bird"].ap50 is None
    assert result.map50 == pytest.approx(0.5)
    assert result.to_dict()["per_class"]["dog"]["n_ground_truth"] == 1


def test_map50_95_averages_iou_thresholds() -> None:
    # one detection with IoU 0.775 with its only GT box: a TP at 0.50, 0.55, ..., 0.75 (6 of 10
    # thresholds), a miss at 0.80..0.95, so AP@[.5:.95] = 6/10
    truth = {"a": [("x", 0, 0, 10, 10)]}
    shift = 10 * (1 - 0.775) / 1.775  # IoU of an x-shifted square: (10 - s) / (10 + s)
    dets = {"a": [("x", shift, 0, 10 + shift, 10, 0.9)]}
    assert iou((0, 0, 10, 10), (shift, 0, 10 + shift, 10)) == pytest.approx(0.775)
    result = evaluate_detections(truth, dets)
    assert result.map50 == 1.0
    assert result.map50_95 == pytest.approx(0.6)


def test_ap_from_empty_curve_is_zero() -> None:
    assert ap_from_pr(np.array([]), np.array([])) == 0.0
    assert average_precision({}, [("a", 1.0, (0, 0, 1, 1))]) is None
    assert math.isclose(average_precision({"a": [(0, 0, 1, 1)]}, []) or 0.0, 0.0)
