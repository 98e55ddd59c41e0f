"""Object-detection metrics: IoU, per-class average precision and mean average precision.

Pure numpy, no DB or HTTP. Two conventions, each from its benchmark:

* **mAP@0.5** follows Pascal VOC (Everingham et al., "The Pascal Visual Object Classes (VOC)
  Challenge", IJCV 88(2), 2010; the all-point interpolation of VOC2010 and later): detections of a
  class are ranked by score, each is matched to the ground-truth box it overlaps most; it is a true
  positive when that IoU is at least 0.5 and that box is not yet taken, else a false positive. AP
  is the area under the precision-recall curve after precision is made monotone (each point takes
  the highest precision at any higher recall).
* **mAP@0.5:0.95** follows COCO (Lin et al., "Microsoft COCO: Common Objects in Context", ECCV
  2014, and its evaluation code): each detection is matched to the best still-unmatched
  ground-truth box with IoU over the threshold, AP is the mean of the monotone precision at 101
  recall points 0, 0.01, ..., 1, and the result is averaged over the IoU thresholds 0.50, 0.55,
  ..., 0.95.

A class with no ground-truth box has no AP (None) and is left out of the mean, as in both
benchmarks; a class with ground truth but no detection scores 0. Boxes are ``(x_min, y_min,
x_max, y_max)`` in pixels; IoU here is continuous (no "+1 pixel" of the old VOC devkit).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Matching = Literal["voc", "coco"]
Interpolation = Literal["all_points", "coco101"]

COCO_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def iou_matrix(a: Any, b: Any) -> np.ndarray:
    """Intersection over union of every box in ``a`` (n, 4) with every box in ``b`` (m, 4)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(
        np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]),
        0.0,
        None,
    )
    iy = np.clip(
        np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]),
        0.0,
        None,
    )
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two boxes ``(x_min, y_min, x_max, y_max)``."""
    return float(iou_matrix([a], [b])[0, 0])


def match_detections(
    ground_truth: Mapping[Hashable, Any],
    detections: Sequence[tuple[Hashable, float, Sequence[float]]],
    *,
    iou_threshold: float,
    matching: Matching = "voc",
) -> tuple[np.ndarray, np.ndarray]:
    """Mark each detection of one class true or false positive.

    ``ground_truth`` maps an image key to its boxes of the class (n, 4); ``detections`` are
    ``(image key, score, box)``. Returns the scores sorted high to low and a boolean array,
    True where that detection is a true positive. Ties in score keep the given order (stable).
    """
    scores = np.asarray([d[1] for d in detections], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    taken = {
        key: np.zeros(len(np.asarray(b).reshape(-1, 4)), bool) for key, b in ground_truth.items()
    }
    gt_arrays = {
        key: np.asarray(b, dtype=np.float64).reshape(-1, 4) for key, b in ground_truth.items()
    }
    tp = np.zeros(len(detections), dtype=bool)
    for rank, index in enumerate(order):
        image, _score, box = detections[index]
        boxes = gt_arrays.get(image)
        if boxes is None or len(boxes) == 0:
            continue
        overlaps = iou_matrix([box], boxes)[0]
        used = taken[image]
        if matching == "voc":
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou_threshold and not used[best]:
                used[best] = True
                tp[rank] = True
        else:
            free = np.where(used, -1.0, overlaps)
            best = int(np.argmax(free))
            if free[best] >= iou_threshold:
                used[best] = True
                tp[rank] = True
    return scores[order], tp


def precision_recall(tp: np.ndarray, n_ground_truth: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each ranked detection."""
    tp_cum = np.cumsum(tp, dtype=np.float64)
    fp_cum = np.cumsum(~tp, dtype=np.float64)
    recall = tp_cum / max(n_ground_truth, 1)
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    return precision, recall


def _monotone(precision: np.ndarray) -> np.ndarray:
    """Each point takes the highest precision at this or any higher recall."""
    return np.maximum.accumulate(precision[::-1])[::-1]


def ap_from_pr(
    precision: np.ndarray, recall: np.ndarray, *, interpolation: Interpolation = "all_points"
) -> float:
    """Average precision from a ranked precision-recall curve (see the module docstring)."""
    if len(precision) == 0:
        return 0.0
    envelope = _monotone(np.asarray(precision, dtype=np.float64))
    recall = np.asarray(recall, dtype=np.float64)
    if interpolation == "all_points":
        previous = np.concatenate([[0.0], recall[:-1]])
        return float(np.sum((recall - previous) * envelope))
    # COCO: the first ranked point reaching each recall threshold; 0 past the largest recall
    positions = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")
    reached = positions < len(recall)
    sampled = np.zeros_like(COCO_RECALL_POINTS)
    sampled[reached] = envelope[positions[reached]]
    return float(sampled.mean())


def average_precision(
    ground_truth: Mapping[Hashable, Any],
    detections: Sequence[tuple[Hashable, float, Sequence[float]]],
    *,
    iou_threshold: float = 0.5,
    matching: Matching = "voc",
    interpolation: Interpolation = "all_points",
) -> float | None:
    """AP of one class; None when the class has no ground-truth box."""
    n_gt = sum(len(np.asarray(b).reshape(-1, 4)) for b in ground_truth.values())
    if n_gt == 0:
        return None
    if not detections:
        return 0.0
    _scores, tp = match_detections(
        ground_truth, detections, iou_threshold=iou_threshold, matching=matching
    )
    precision, recall = precision_recall(tp, n_gt)
    return ap_from_pr(precision, recall, interpolation=interpolation)


@dataclass
class ClassAP:
    ap50: float | None
    ap50_95: float | None
    n_ground_truth: int
    n_detections: int


@dataclass
class DetectionMetrics:
    map50: float | None
    map50_95: float | None
    per_class: dict[Hashable, ClassAP] = field(default_factory=dict)
    n_images: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "map50": self.map50,
            "map50_95": self.map50_95,
            "n_images": self.n_images,
            "per_class": {
                str(k): {
                    "ap50": v.ap50,
                    "ap50_95": v.ap50_95,
                    "n_ground_truth": v.n_ground_truth,
                    "n_detections": v.n_detections,
                }
                for k, v in self.per_class.items()
            },
        }


GroundTruth = Mapping[Hashable, Sequence[tuple[Hashable, float, float, float, float]]]
Detections = Mapping[Hashable, Sequence[tuple[Hashable, float, float, float, float, float]]]


def evaluate_detections(ground_truth: GroundTruth, detections: Detections) -> DetectionMetrics:
    """mAP@0.5 (VOC) and mAP@0.5:0.95 (COCO), overall and per class.

    ``ground_truth`` maps each evaluated image to its boxes ``(class, x_min, y_min, x_max,
    y_max)`` (an empty list: an image with nothing on it, where every detection is a false
    positive); ``detections`` maps images to ``(class, x_min, y_min, x_max, y_max, score)``.
    Detections on images that are not in ``ground_truth`` are ignored (not evaluated).
    """
    classes: set[Hashable] = set()
    gt_by_class: dict[Hashable, dict[Hashable, list[list[float]]]] = {}
    for image, boxes in ground_truth.items():
        for cls, *box in boxes:
            classes.add(cls)
            gt_by_class.setdefault(cls, {}).setdefault(image, []).append([float(v) for v in box])
    det_by_class: dict[Hashable, list[tuple[Hashable, float, list[float]]]] = {}
    for image, found in detections.items():
        if image not in ground_truth:
            continue
        for cls, x0, y0, x1, y1, score in found:
            classes.add(cls)
            det_by_class.setdefault(cls, []).append(
                (image, float(score), [float(x0), float(y0), float(x1), float(y1)])
            )
    per_class: dict[Hashable, ClassAP] = {}
    for cls in sorted(classes, key=str):
        gt = gt_by_class.get(cls, {})
        dets = det_by_class.get(cls, [])
        ap50 = average_precision(gt, dets, iou_threshold=0.5, matching="voc")
        coco = [
            average_precision(gt, dets, iou_threshold=t, matching="coco", interpolation="coco101")
            for t in COCO_IOU_THRESHOLDS
        ]
        ap50_95 = None if coco[0] is None else float(np.mean([c or 0.0 for c in coco]))
        per_class[cls] = ClassAP(
            ap50=ap50,
            ap50_95=ap50_95,
            n_ground_truth=sum(len(v) for v in gt.values()),
            n_detections=len(dets),
        )
    scored50 = [c.ap50 for c in per_class.values() if c.ap50 is not None]
    scored = [c.ap50_95 for c in per_class.values() if c.ap50_95 is not None]
    return DetectionMetrics(
        map50=float(np.mean(scored50)) if scored50 else None,
        map50_95=float(np.mean(scored)) if scored else None,
        per_class=per_class,
        n_images=len(ground_truth),
    )
