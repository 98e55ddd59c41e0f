"""Auto-label ("flush") for object detection: label the images whose every box is confident.

With the detector's boxes of an image, a box is *background* below the display ``floor`` (it is
dropped), *confident* at or above the threshold ``t``, and *uncertain* in between. An image
qualifies when it has no uncertain box; its label is then its boxes at or above the floor (all of
them at least ``t``), or "nothing here" when it has none (``include_empty``).

``t`` is chosen from a target *box precision*, measured on the random evaluation sample (items with
``eval_sample`` set and a human label; the detector never trained on them). On each of those
images the predicted boxes above the floor are matched to the human boxes of the same class at IoU
0.5, best score first, each human box taken at most once (``learners.detection_metrics``). For a
candidate ``t`` the evaluation images that would qualify are the evidence: the share of their
predicted boxes that match is the estimated precision of the auto-labeled boxes, and the share of
their human boxes that are found is the estimated recall (the objects an auto-label would miss),
both with Wilson 95% intervals. The threshold is the smallest ``t`` (among the evaluation images'
own cut points, so the evidence at ``t`` is exactly what was measured) whose precision reaches the
target: the lowest ``t`` qualifies the most images, and with them the most evidence.

Only unlabeled images (or images auto-labeled by an older model version) are touched, never an
image of the evaluation sample (auto-labeling it would take it away from the humans whose labels
measure the model). Each label is a ``model`` label of the newest version with its boxes in
``label_box`` carrying their scores, its classes in ``label_value``, and the item's status becomes
``auto``; a later human label supersedes it. Preview first, then apply: :func:`apply` labels
exactly what :func:`preview` shows for the same model version, and refuses (409) when a new version
arrived in between.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labella.errors import Conflict, InvalidInput, NotReady
from labella.services import labeling
from labella.services.autolabel import _candidates, _check_target, _latest_model, _record_run
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    Item,
    ItemStatus,
    Label,
    LabelBox,
    LabelSource,
    ModelVersion,
    Prediction,
    Project,
    ProjectKind,
)

DEFAULT_FLOOR = 0.3
"""The detector's display floor (``learners.detector.DISPLAY_FLOOR``): lower boxes are
background."""
IOU_MATCH = 0.5
DEFAULT_CHUNK = 500
_COORDS = ("x_min", "y_min", "x_max", "y_max")


@dataclass(frozen=True)
class DetectionAutolabelPreview:
    """What :func:`apply` would label for a target box precision, and the evidence for it."""

    target_precision: float
    floor: float
    include_empty: bool
    threshold: float | None
    """Every box of a labeled image scores at least this (None: no threshold reaches the target)."""
    images: int
    """Unlabeled images that would be auto-labeled."""
    boxes: int
    """Boxes those labels would carry."""
    empty_images: int
    """Of the images, those labeled "nothing here" (no box above the floor)."""
    precision: float | None
    precision_low: float
    precision_high: float
    eval_boxes: int
    """Predicted boxes of the qualifying evaluation images (the precision's evidence)."""
    recall: float | None
    recall_low: float
    recall_high: float
    eval_objects: int
    """Human boxes of the qualifying evaluation images (the recall's evidence)."""
    eval_images: int
    """Evaluation images that qualify at the threshold."""
    eval_images_total: int
    """Evaluation images with a human label and a prediction of this model version."""
    model_version: int
    note: str = ""
    item_ids: list[int] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class DetectionAutolabelResult:
    target_precision: float
    threshold: float | None
    labeled: int
    boxes: int
    model_version: int


@dataclass
class _EvalImages:
    """Per evaluation image: the lowest kept box score (inf with none), predicted boxes kept,
    matched boxes, human boxes."""

    lowest: np.ndarray
    n_predicted: np.ndarray
    n_matched: np.ndarray
    n_human: np.ndarray


def preview(
    db: Database,
    project_id: int,
    *,
    target_precision: float,
    floor: float = DEFAULT_FLOOR,
    include_empty: bool = True,
) -> DetectionAutolabelPreview:
    """The threshold for ``target_precision``, the images it would label and the measured box
    precision and recall there (see the module docstring)."""
    from labella.services.evaluation import wilson_interval

    target = _check_target(target_precision)
    floor = _check_floor(floor)
    with db.reader() as session:
        project = _detection_project(session, project_id)
        model = _latest_model(session, project)
        known = {c.id for c in project.classes}
        evaluation = _evaluation_images(session, project, model, floor)
        pool = session.execute(
            _candidates(project.id, model.id, 0.0)
            .with_only_columns(Prediction.item_id, Prediction.boxes)
            .where(Item.eval_sample.is_(False))
            .order_by(Prediction.item_id)
        ).all()
    threshold = _choose_threshold(evaluation, target)
    note = ""
    if threshold is None:
        note = (
            f"no threshold reaches a box precision of {target:.2f} on the evaluation sample; "
            "train on more labels or lower the target"
        )
        chosen: list[tuple[int, list[dict[str, Any]]]] = []
        precision = recall = None
        p_low, p_high, r_low, r_high = 0.0, 1.0, 0.0, 1.0
        n_pred = n_matched = n_human = n_eval_images = 0
    else:
        covered = evaluation.lowest >= threshold
        if not include_empty:  # images with no box are not labeled, so not evidence either
            covered &= evaluation.n_predicted > 0
        n_pred = int(evaluation.n_predicted[covered].sum())
        n_matched = int(evaluation.n_matched[covered].sum())
        n_human = int(evaluation.n_human[covered].sum())
        n_eval_images = int(covered.sum())
        precision = n_matched / n_pred if n_pred else None
        recall = n_matched / n_human if n_human else None
        p_low, p_high = wilson_interval(n_matched, n_pred)
        r_low, r_high = wilson_interval(n_matched, n_human)
        chosen = _qualifying(pool, threshold, floor, known, include_empty=include_empty)
    return DetectionAutolabelPreview(
        target_precision=target,
        floor=floor,
        include_empty=include_empty,
        threshold=threshold,
        images=len(chosen),
        boxes=sum(len(boxes) for _, boxes in chosen),
        empty_images=sum(1 for _, boxes in chosen if not boxes),
        precision=precision,
        precision_low=p_low,
        precision_high=p_high,
        eval_boxes=n_pred,
        recall=recall,
        recall_low=r_low,
        recall_high=r_high,
        eval_objects=n_human,
        eval_images=n_eval_images,
        eval_images_total=int(evaluation.lowest.size),
        model_version=model.version,
        note=note,
        item_ids=[item_id for item_id, _ in chosen],
    )


def apply(
    db: Database,
    project_id: int,
    *,
    target_precision: float,
    floor: float = DEFAULT_FLOOR,
    include_empty: bool = True,
    model_version: int | None = None,
    chunk: int = DEFAULT_CHUNK,
    actor: str = "system",
) -> DetectionAutolabelResult:
    """Auto-label exactly the images :func:`preview` selects. ``model_version`` (the version the
    preview showed) makes a newer version in between a 409 instead of a different labeling."""
    if model_version is not None:
        with db.reader() as session:
            latest = _latest_model(session, _detection_project(session, project_id))
            if latest.version != model_version:
                raise Conflict(
                    f"the preview was for model v{model_version} but the latest is "
                    f"v{latest.version}; preview again"
                )
    plan = preview(
        db,
        project_id,
        target_precision=target_precision,
        floor=floor,
        include_empty=include_empty,
    )
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InvalidInput("chunk must be a whole number of at least 1")
    with db.reader() as session:
        project = _detection_project(session, project_id)
        model = _latest_model(session, project)
        if model.version != plan.model_version:
            raise Conflict("a new model version arrived while planning; preview again")
        model_id = model.id
        known = {c.id for c in project.classes}
    labeled = boxes = 0
    assert plan.threshold is not None or not plan.item_ids
    for start in range(0, len(plan.item_ids), chunk):
        batch = plan.item_ids[start : start + chunk]
        with db.transaction() as session:
            done, n_boxes = _label_chunk(
                session,
                project_id,
                model_id,
                batch,
                threshold=float(plan.threshold or 0.0),
                floor=plan.floor,
                known=known,
                include_empty=include_empty,
            )
        labeled += done
        boxes += n_boxes
    _record_run(
        db,
        project_id,
        actor,
        {
            "kind": ProjectKind.OBJECT_DETECTION.value,
            "target_precision": plan.target_precision,
            "threshold": plan.threshold,
            "floor": plan.floor,
            "include_empty": plan.include_empty,
            "labeled": labeled,
            "boxes": boxes,
            "model_version": plan.model_version,
        },
    )
    return DetectionAutolabelResult(
        target_precision=plan.target_precision,
        threshold=plan.threshold,
        labeled=labeled,
        boxes=boxes,
        model_version=plan.model_version,
    )


# -- the evaluation sample ------------------------------------------------------------------------


def _evaluation_images(
    session: Session, project: Project, model: ModelVersion, floor: float
) -> _EvalImages:
    """Match the model's boxes with the human boxes on every labeled evaluation image."""
    human_labels = dict(
        session.execute(
            select(Label.item_id, Label.id)
            .join(Item, Item.id == Label.item_id)
            .where(
                Item.project_id == project.id,
                Item.eval_sample.is_(True),
                Label.is_current.is_(True),
                Label.source == LabelSource.HUMAN.value,
                Label.skipped.is_(False),
            )
        ).all()
    )
    if not human_labels:
        raise NotReady(
            f"project {project.name!r} has no labeled evaluation sample: draw one (POST "
            "/evaluation-sample) and label its images, which are served as 'evaluation sample "
            "(random)', so the auto-labels' precision can be measured"
        )
    predictions: dict[int, Any] = dict(
        session.execute(
            select(Prediction.item_id, Prediction.boxes).where(
                Prediction.item_id.in_(list(human_labels)),
                Prediction.model_version_id == model.id,
            )
        ).all()
    )
    if not predictions:
        raise NotReady(
            f"model v{model.version} has no predictions for the {len(human_labels)} labeled "
            "evaluation images; train the detector again so it predicts them"
        )
    if all(boxes is None for boxes in predictions.values()):
        raise NotReady(
            f"model v{model.version} predicts no boxes (it is not a detector); train the "
            "detector before auto-labeling boxes"
        )
    human: dict[int, list[tuple[int, list[float]]]] = {item_id: [] for item_id in predictions}
    label_item = {label_id: item_id for item_id, label_id in human_labels.items()}
    for box in session.scalars(
        select(LabelBox).where(
            LabelBox.label_id.in_([human_labels[i] for i in predictions]),
        )
    ):
        human[label_item[box.label_id]].append(
            (box.class_id, [box.x_min, box.y_min, box.x_max, box.y_max])
        )
    items = sorted(predictions)
    lowest = np.full(len(items), np.inf)
    n_predicted = np.zeros(len(items), dtype=np.int64)
    n_matched = np.zeros(len(items), dtype=np.int64)
    n_human = np.zeros(len(items), dtype=np.int64)
    for row, item_id in enumerate(items):
        kept = _kept_boxes(predictions[item_id], floor)
        if kept:
            lowest[row] = min(float(b["score"]) for b in kept)
        n_predicted[row] = len(kept)
        n_human[row] = len(human[item_id])
        n_matched[row] = _count_matches(kept, human[item_id])
    if n_predicted.sum() == 0:
        raise NotReady(
            f"model v{model.version} finds no box scoring {floor:.2f} or more on the "
            f"{len(items)} labeled evaluation images, so the precision of its boxes cannot be "
            "measured; train on more labels (or lower the floor)"
        )
    return _EvalImages(lowest=lowest, n_predicted=n_predicted, n_matched=n_matched, n_human=n_human)


def _count_matches(predicted: list[dict[str, Any]], human: list[tuple[int, list[float]]]) -> int:
    """Predicted boxes that match a human box of their class at IoU >= 0.5, best score first,
    each human box matched at most once (the COCO rule: the best still-free box)."""
    from labella.learners.detection_metrics import match_detections

    matched = 0
    for class_id in {int(b["class_id"]) for b in predicted}:
        truth = [box for cls, box in human if cls == class_id]
        if not truth:
            continue
        detections = [
            (0, float(b["score"]), [float(b[k]) for k in _COORDS])
            for b in predicted
            if int(b["class_id"]) == class_id
        ]
        _, tp = match_detections({0: truth}, detections, iou_threshold=IOU_MATCH, matching="coco")
        matched += int(tp.sum())
    return matched


def _choose_threshold(evaluation: _EvalImages, target: float) -> float | None:
    """The smallest cut point of the evaluation images whose covered boxes reach ``target``."""
    finite = evaluation.lowest[np.isfinite(evaluation.lowest)]
    for t in np.unique(finite):  # ascending
        covered = evaluation.lowest >= t
        n_pred = int(evaluation.n_predicted[covered].sum())
        if n_pred and evaluation.n_matched[covered].sum() / n_pred >= target:
            return float(t)
    return None


# -- the pool -------------------------------------------------------------------------------------


def _kept_boxes(boxes: Any, floor: float) -> list[dict[str, Any]]:
    """The well-formed boxes of a prediction scoring at least ``floor``."""
    if not isinstance(boxes, list):
        return []
    return [
        box
        for box in boxes
        if isinstance(box, dict) and _well_formed(box) and float(box["score"]) >= floor
    ]


def _well_formed(box: dict[str, Any]) -> bool:
    class_id = box.get("class_id")
    if isinstance(class_id, bool) or not isinstance(class_id, int):
        return False
    for key in ("score", *_COORDS):
        value = box.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value):
            return False
    return True


def _qualifying(
    rows: Any, threshold: float, floor: float, known: set[int], *, include_empty: bool
) -> list[tuple[int, list[dict[str, Any]]]]:
    """(item id, its boxes to label) of every image with no box in [floor, threshold)."""
    chosen = []
    for item_id, boxes in rows:
        if not isinstance(boxes, list):  # not a detector's prediction
            continue
        if not all(isinstance(b, dict) and _well_formed(b) for b in boxes):
            # a box that cannot be read must not turn into "nothing here"
            continue
        kept = _kept_boxes(boxes, floor)
        if any(float(b["score"]) < threshold for b in kept):
            continue
        if not kept and not include_empty:
            continue
        # a box of a class deleted since the training cannot become a label
        if any(int(b["class_id"]) not in known for b in kept):
            continue
        chosen.append((int(item_id), kept))
    return chosen


def _label_chunk(
    session: Session,
    project_id: int,
    model_version_id: int,
    item_ids: list[int],
    *,
    threshold: float,
    floor: float,
    known: set[int],
    include_empty: bool,
) -> tuple[int, int]:
    """Label the still-open images of ``item_ids`` from their current prediction; (images,
    boxes). The items are locked (PostgreSQL) and re-checked, so a human label that arrived
    since the preview is never superseded."""
    rows = session.execute(
        _candidates(project_id, model_version_id, 0.0)
        .with_only_columns(Prediction.item_id, Prediction.boxes)
        .where(Item.eval_sample.is_(False), Prediction.item_id.in_(item_ids))
        .order_by(Prediction.item_id)
        .with_for_update(of=Item)
    ).all()
    chosen = _qualifying(rows, threshold, floor, known, include_empty=include_empty)
    labeling.write_model_labels(
        session,
        project_id,
        model_version_id,
        [
            labeling.ModelLabel(
                item_id=item_id,
                # how sure the detector is of its least sure box; nothing found: the image itself
                confidence=min((float(b["score"]) for b in boxes), default=1.0),
                class_ids=sorted({int(b["class_id"]) for b in boxes}),
                boxes=boxes,
            )
            for item_id, boxes in chosen
        ],
    )
    return len(chosen), sum(len(boxes) for _, boxes in chosen)


# -- checks ---------------------------------------------------------------------------------------


def _detection_project(session: Session, project_id: int) -> Project:
    project = repo.get_project(session, project_id)
    if project.kind != ProjectKind.OBJECT_DETECTION:
        raise InvalidInput(
            f"project {project.name!r} is a {project.kind.replace('_', ' ')} project; box "
            "auto-labeling is for object-detection projects (use /autolabel for classification)"
        )
    return project


def _check_floor(floor: float) -> float:
    if isinstance(floor, bool) or not isinstance(floor, int | float):
        raise InvalidInput(f"floor must be a number in [0, 1), got {floor!r}")
    value = float(floor)
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise InvalidInput(
            f"floor must be in [0, 1) (box scores below it are background), got {floor!r}"
        )
    return value


# -- the audit of the auto-labels (services.autolabel_audit) --------------------------------------


def compare_audited_boxes(session: Session, project_id: int) -> tuple[int, int]:
    """(audited images a human labeled, of which the human's boxes agree with the auto-label's).

    For a detection project an auto-label is right when its boxes and the human's pair up one to
    one, same class and IoU >= 0.5 (an empty label is right when the human drew nothing too);
    ``services.autolabel_audit`` measures the auto-labels' precision as that share.
    """
    audited = select(Item.id).where(
        Item.project_id == project_id,
        Item.audit_sample.is_(True),
        Item.status == ItemStatus.LABELED.value,
    )
    human = dict(
        session.execute(
            select(Label.item_id, Label.id).where(
                Label.item_id.in_(audited), Label.is_current.is_(True)
            )
        ).all()
    )
    # the newest model label of each audited image: the auto-label the human checked
    model = dict(
        session.execute(
            select(Label.item_id, func.max(Label.id))
            .where(Label.item_id.in_(audited), Label.source == LabelSource.MODEL.value)
            .group_by(Label.item_id)
        ).all()
    )
    checked = [item_id for item_id in human if item_id in model]
    boxes: dict[int, list[tuple[int, list[float]]]] = {}
    wanted = [human[i] for i in checked] + [model[i] for i in checked]
    for box in session.scalars(select(LabelBox).where(LabelBox.label_id.in_(wanted))):
        boxes.setdefault(box.label_id, []).append(
            (box.class_id, [box.x_min, box.y_min, box.x_max, box.y_max])
        )
    agreed = sum(
        1
        for item_id in checked
        if _same_boxes(boxes.get(model[item_id], []), boxes.get(human[item_id], []))
    )
    return len(checked), agreed


def _same_boxes(model: list[tuple[int, list[float]]], human: list[tuple[int, list[float]]]) -> bool:
    if len(model) != len(human):
        return False
    predicted = [
        {"class_id": cls, "score": 1.0, **dict(zip(_COORDS, box, strict=True))}
        for cls, box in model
    ]
    return _count_matches(predicted, human) == len(human)
