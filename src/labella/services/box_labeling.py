"""Bounding boxes as an image's label: an annotator submits every box of an object-detection
image at once (the box editor's Enter), and reads back the current boxes, the earlier ones and
the detector's prelabels.

A submit is a label like any other (services.labeling): it becomes the item's current label, the
previous one is kept superseded (so the history keeps the previous boxes), the annotator's lease
ends, a repeated ``request_id`` returns the label that request already made, and the training the
project's policy asks for is scheduled in the same transaction. The label's ``label_value`` rows
hold the distinct classes of its boxes; zero boxes is a real answer ("nothing to box here").

Coordinates are original-image pixels, ``x_min < x_max`` and ``y_min < y_max`` (the convention of
``label_box`` and of the VOC/COCO/YOLO import). An editor working on a scaled canvas may land a
hair outside the picture; an overshoot under one pixel is clipped, anything more is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labella.errors import Conflict, InvalidInput
from labella.services import labeling
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    Item,
    ItemStatus,
    Label,
    LabelBox,
    LabelClass,
    LabelKind,
    LabelSource,
    LabelValue,
    ModelVersion,
    Prediction,
    Project,
    ProjectKind,
)

MAX_BOXES = 1000
# an editor on a scaled canvas rounds to a fraction of a pixel; more than this is a real mistake
CLIP_TOLERANCE_PX = 1.0
# prelabels below this score are noise to an annotator (the detector keeps them for ranking)
PRELABEL_MIN_SCORE = 0.3


# -- input and views -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoxInput:
    """One box as a client sends it: the class by id (int) or name (str), pixel corners."""

    cls: int | str
    x_min: float
    y_min: float
    x_max: float
    y_max: float


@dataclass(frozen=True)
class BoxView:
    class_id: int
    name: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    score: float | None = None


@dataclass(frozen=True)
class LabelBoxes:
    """A label of the item with its boxes."""

    label: labeling.LabelView
    boxes: list[BoxView]


@dataclass(frozen=True)
class Prelabel:
    """The detector's boxes for the item (newest model version), at or above ``min_score``."""

    model_version: int
    model_version_id: int
    min_score: float
    boxes: list[BoxView]


@dataclass(frozen=True)
class ItemBoxes:
    item_id: int
    width: int
    height: int
    status: str
    current: LabelBoxes | None
    previous: list[LabelBoxes]  # superseded labels, newest first
    prelabel: Prelabel | None


@dataclass(frozen=True)
class BoxLabelResult:
    label: labeling.LabelView
    boxes: list[BoxView]
    item_status: str
    training_job_id: int | None


# -- submit ----------------------------------------------------------------------------------------
def submit_boxes(
    db: Database,
    project_id: int,
    item_id: int,
    *,
    boxes: Sequence[BoxInput],
    annotator: str = labeling.DEFAULT_ANNOTATOR,
    request_id: str | None = None,
) -> BoxLabelResult:
    """Record ``boxes`` as the image's current label (replacing the previous one, which stays in
    the history). Every problem is refused before anything is written, naming the box."""
    from labella.services import assignment
    from labella.services.review import maybe_sample_work
    from labella.services.training import maybe_schedule_training

    annotator = labeling.clean_annotator(annotator)
    if len(boxes) > MAX_BOXES:
        raise InvalidInput(f"at most {MAX_BOXES} boxes per image, got {len(boxes)}")
    with db.transaction() as session:
        project = repo.get_project(session, project_id)
        require_detection(project)
        item = labeling.lock_item(session, project_id, item_id)
        replayed = labeling.replayed_result(session, project, item, request_id)
        if replayed is not None:
            return BoxLabelResult(
                label=replayed.label,
                boxes=_label_boxes(session, project, replayed.label.id),
                item_status=replayed.item_status,
                training_job_id=None,
            )
        if assignment.takes_answer(session, project, item, annotator):
            # the answers of an overlapped item are decided by comparing class sets; boxes would
            # need matching by overlap first, which is not built: refuse rather than lose them
            raise Conflict(
                f"item {item_id} is overlapped (answered by {project.overlap} annotators), and "
                "overlap is not supported for bounding boxes yet: set the project's overlap to 1"
            )
        width, height = image_size(item)
        checked = check_boxes(project, boxes, width=width, height=height)
        label = labeling.replace_current_label(
            session,
            item,
            Label(
                project_id=project_id,
                item_id=item.id,
                source=LabelSource.HUMAN,
                skipped=False,
                annotator=annotator,
                request_id=request_id,
                values=[LabelValue(class_id=c) for c in _distinct(b.class_id for b in checked)],
                boxes=checked,
            ),
            status=ItemStatus.LABELED,
        )
        job = maybe_schedule_training(session, project)
        maybe_sample_work(session, project, label)
        classes = labeling.ProjectClasses.of(project)
        return BoxLabelResult(
            label=labeling.label_view(label, classes, None),
            boxes=[_box_view(box, classes) for box in label.boxes],
            item_status=item.status,
            training_job_id=job.id if job is not None else None,
        )


def require_detection(project: Project) -> None:
    if project.kind != ProjectKind.OBJECT_DETECTION:
        raise InvalidInput(
            f"project {project.name!r} is a {project.kind.replace('_', ' ')} project; bounding "
            "boxes can only be labeled in an object-detection project"
        )


def image_size(item: Item) -> tuple[int, int]:
    """The item's image size in pixels, as the image import recorded it."""
    meta = item.meta or {}
    width, height = meta.get("width"), meta.get("height")
    if not isinstance(width, int | float) or not isinstance(height, int | float):
        raise Conflict(
            f"item {item.id} has no recorded image size (it was not imported as an image), so "
            "its boxes cannot be checked"
        )
    return int(width), int(height)


def check_boxes(
    project: Project, boxes: Sequence[BoxInput], *, width: int, height: int
) -> list[LabelBox]:
    """The boxes as ``label_box`` rows, or InvalidInput naming the first bad box: an unknown
    class, a coordinate that is not a finite number, corners in the wrong order or a box of no
    size, or one outside the ``width`` x ``height`` image by a pixel or more."""
    by_id = {c.id: c for c in project.classes}
    by_name = {c.name: c for c in project.classes}
    folded: dict[str, list[LabelClass]] = {}
    for c in project.classes:
        folded.setdefault(c.name.lower(), []).append(c)
    rows = []
    for n, box in enumerate(boxes, start=1):
        cls = _find_class(box.cls, by_id, by_name, folded)
        where = f"box {n} ({cls.name if cls else repr(box.cls)})"
        if cls is None:
            choices = ", ".join(f"{c.name} (id {c.id})" for c in project.classes)
            raise InvalidInput(
                f"{where}: unknown class {box.cls!r} for project {project.name!r}; its classes "
                f"are: {choices}",
                details={
                    "box": n,
                    "classes": [{"id": c.id, "name": c.name} for c in by_id.values()],
                },
            )
        corners = [box.x_min, box.y_min, box.x_max, box.y_max]
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in corners):
            raise InvalidInput(f"{where} has a coordinate that is not a finite number")
        x0, y0, x1, y1 = (float(v) for v in corners)
        shown = f"({x0:g},{y0:g})-({x1:g},{y1:g})"
        if x1 <= x0 or y1 <= y0:
            raise InvalidInput(
                f"{where} {shown} has no size: x_max must be greater than x_min and y_max "
                "greater than y_min",
                details={"box": n},
            )
        if (
            x0 <= -CLIP_TOLERANCE_PX
            or y0 <= -CLIP_TOLERANCE_PX
            or x1 >= width + CLIP_TOLERANCE_PX
            or y1 >= height + CLIP_TOLERANCE_PX
        ):
            raise InvalidInput(
                f"{where} {shown} lies outside the {width}x{height} image", details={"box": n}
            )
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        x1, y1 = min(x1, float(width)), min(y1, float(height))
        if x1 <= x0 or y1 <= y0:  # a sliver hanging over the edge that clipping left empty
            raise InvalidInput(
                f"{where} {shown} lies outside the {width}x{height} image", details={"box": n}
            )
        rows.append(LabelBox(class_id=cls.id, x_min=x0, y_min=y0, x_max=x1, y_max=y1))
    return rows


def _find_class(
    value: int | str,
    by_id: dict[int, LabelClass],
    by_name: dict[str, LabelClass],
    folded: dict[str, list[LabelClass]],
) -> LabelClass | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return by_id.get(value)
    if isinstance(value, str):
        name = value.strip()
        exact = by_name.get(name)
        if exact is not None:
            return exact
        # as the VOC/COCO/YOLO import: a name differing only in case is that class, unless two
        # classes differ only in case
        candidates = folded.get(name.lower(), [])
        return candidates[0] if len(candidates) == 1 else None
    return None


def _distinct(class_ids: Any) -> list[int]:
    return list(dict.fromkeys(class_ids))


# -- read ------------------------------------------------------------------------------------------
def item_boxes(
    db: Database, project_id: int, item_id: int, *, min_score: float = PRELABEL_MIN_SCORE
) -> ItemBoxes:
    """The image's size, its current boxes (a human's or the model's auto-label), the boxes of
    its earlier labels and the detector's prelabel boxes scoring at least ``min_score``."""
    if not 0.0 <= min_score <= 1.0:
        raise InvalidInput(f"min_score must be between 0 and 1, got {min_score}")
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        require_detection(project)
        item = repo.get_item(session, project_id, item_id)
        width, height = image_size(item)
        classes = labeling.ProjectClasses.of(project)
        rows = session.execute(
            select(Label, ModelVersion.version)
            .outerjoin(ModelVersion, ModelVersion.id == Label.model_version_id)
            .where(Label.item_id == item.id, Label.kind == LabelKind.LABEL)
            .order_by(Label.id.desc())
        ).all()
        labels = [
            LabelBoxes(
                label=labeling.label_view(label, classes, version),
                boxes=[_box_view(box, classes) for box in label.boxes],
            )
            for label, version in rows
        ]
        return ItemBoxes(
            item_id=item.id,
            width=width,
            height=height,
            status=item.status,
            current=next((entry for entry in labels if entry.label.is_current), None),
            previous=[entry for entry in labels if not entry.label.is_current],
            prelabel=_prelabel(session, classes, item.id, min_score),
        )


def _prelabel(
    session: Session, classes: labeling.ProjectClasses, item_id: int, min_score: float
) -> Prelabel | None:
    row = session.execute(
        select(Prediction.boxes, Prediction.model_version_id, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(Prediction.item_id == item_id)
    ).first()
    if row is None or row.boxes is None:  # no detector yet (or a classifier's prediction)
        return None
    return Prelabel(
        model_version=int(row.version),
        model_version_id=int(row.model_version_id),
        min_score=min_score,
        boxes=predicted_boxes(classes, row.boxes, min_score=min_score),
    )


def predicted_boxes(
    classes: labeling.ProjectClasses, raw: Any, *, min_score: float = PRELABEL_MIN_SCORE
) -> list[BoxView]:
    """A prediction's stored boxes (``prediction.boxes``) scoring at least ``min_score``, best
    first; boxes of a class deleted since the prediction are left out."""
    out = []
    for box in raw or []:
        try:
            class_id = int(box["class_id"])
            score = float(box.get("score", 1.0))
            x0, y0, x1, y1 = (float(box[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
        except (KeyError, TypeError, ValueError):
            continue  # a malformed stored box is skipped, not shown as a 500
        if class_id not in classes.names or score < min_score:
            continue
        out.append(BoxView(class_id, classes.names[class_id], x0, y0, x1, y1, score=score))
    out.sort(key=lambda b: -(b.score or 0.0))
    return out


def _label_boxes(session: Session, project: Project, label_id: int) -> list[BoxView]:
    classes = labeling.ProjectClasses.of(project)
    rows = session.scalars(
        select(LabelBox).where(LabelBox.label_id == label_id).order_by(LabelBox.id)
    )
    return [_box_view(box, classes) for box in rows]


def _box_view(box: LabelBox, classes: labeling.ProjectClasses) -> BoxView:
    return BoxView(
        class_id=box.class_id,
        name=classes.ref(box.class_id).name,
        x_min=box.x_min,
        y_min=box.y_min,
        x_max=box.x_max,
        y_max=box.y_max,
        score=box.score,
    )
