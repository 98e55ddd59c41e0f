"""Auto-label ("flush"): label every remaining item the model is sure about.

An item qualifies when the latest model version's prediction for it has a confidence at or above
the threshold and nobody has labeled it: items with a human label or a skip are never touched.
Each qualifying item gets a ``model`` label (the predicted classes, the confidence, the model
version, no annotator) and the status ``auto``; a human label submitted later supersedes it.

Re-running is safe. An item already auto-labeled by the latest model version is left alone, so
applying twice labels nothing the second time. An item auto-labeled by an *older* version is
labeled again when the newest version also clears the threshold: its previous model label is kept
in the history, superseded, so the current label always carries the newest confident prediction.
Auto labels are never withdrawn: an older auto label stays when the newer model is less sure.

The work is done with bulk statements in chunks, each chunk its own transaction (100,000 items take
seconds and annotators are not blocked meanwhile); every chunk re-checks the item statuses under
lock, so a human label that arrives mid-way is never overwritten.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, insert, or_, select, update
from sqlalchemy.orm import Session

from labella.errors import InvalidInput, NotReady
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    Item,
    ItemStatus,
    Label,
    LabelSource,
    LabelValue,
    ModelVersion,
    Prediction,
    Project,
    utcnow,
)

DEFAULT_CHUNK = 5000


@dataclass(frozen=True)
class AutolabelPreview:
    threshold: float
    count: int
    by_class: dict[str, int]  # class name -> items the model would give it
    model_version: int


@dataclass(frozen=True)
class AutolabelResult:
    threshold: float
    labeled: int
    model_version: int


def preview(db: Database, project_id: int, *, threshold: float) -> AutolabelPreview:
    """How many items :func:`apply` would label at this threshold, in total and per class."""
    threshold = _check_threshold(threshold)
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        model = _latest_model(session, project)
        names = {cls.id: cls.name for cls in project.classes}
        by_class: Counter[str] = Counter()
        count = 0
        query = _candidates(project.id, model.id, threshold).with_only_columns(Prediction.predicted)
        for (predicted,) in session.execute(query.execution_options(yield_per=DEFAULT_CHUNK)):
            class_ids = [int(c) for c in predicted or []]
            if not _all_known(class_ids, names):
                continue
            count += 1
            by_class.update(names[c] for c in class_ids)
        ordered = {cls.name: by_class.get(cls.name, 0) for cls in project.classes}
        return AutolabelPreview(
            threshold=threshold, count=count, by_class=ordered, model_version=model.version
        )


def apply(
    db: Database, project_id: int, *, threshold: float, chunk: int = DEFAULT_CHUNK
) -> AutolabelResult:
    """Give every qualifying item a ``model`` label; returns how many were labeled."""
    threshold = _check_threshold(threshold)
    if chunk < 1:
        raise InvalidInput("chunk must be at least 1")
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        model = _latest_model(session, project)
        model_id, version = model.id, model.version
        known = {cls.id: cls.name for cls in project.classes}
    labeled = 0
    after = 0
    while True:
        with db.transaction() as session:
            done, last_seen = _label_chunk(
                session, project_id, model_id, threshold, known, after=after, chunk=chunk
            )
        labeled += done
        if last_seen is None:
            break
        after = last_seen
    return AutolabelResult(threshold=threshold, labeled=labeled, model_version=version)


def _label_chunk(
    session: Session,
    project_id: int,
    model_version_id: int,
    threshold: float,
    known: dict[int, str],
    *,
    after: int,
    chunk: int,
) -> tuple[int, int | None]:
    """Label the next ``chunk`` qualifying items with id > ``after``; (labeled, last id seen or
    None when no candidate was left)."""
    query = (
        _candidates(project_id, model_version_id, threshold)
        .with_only_columns(Prediction.item_id, Prediction.predicted, Prediction.confidence)
        .where(Prediction.item_id > after)
        .order_by(Prediction.item_id)
        .limit(chunk)
        # PostgreSQL: lock the items so a concurrent human label waits for this chunk (and then
        # supersedes it) instead of being superseded by it
        .with_for_update(of=Item)
    )
    rows = session.execute(query).all()
    if not rows:
        return 0, None
    last_seen = int(rows[-1].item_id)
    rows = [row for row in rows if _all_known([int(c) for c in row.predicted or []], known)]
    if not rows:
        return 0, last_seen
    item_ids = [int(row.item_id) for row in rows]
    now = utcnow()
    session.execute(
        update(Label)
        .where(Label.item_id.in_(item_ids), Label.is_current.is_(True))
        .values(is_current=False, superseded_at=now)
        .execution_options(synchronize_session=False)
    )
    new_labels = session.execute(
        insert(Label).returning(Label.id, Label.item_id, sort_by_parameter_order=True),
        [
            {
                "project_id": project_id,
                "item_id": int(row.item_id),
                "source": LabelSource.MODEL.value,
                "skipped": False,
                "annotator": None,
                "model_version_id": model_version_id,
                "confidence": float(row.confidence),
                "is_current": True,
                "created_at": now,
            }
            for row in rows
        ],
    ).all()
    predicted = {int(row.item_id): row.predicted for row in rows}
    values = [
        {"label_id": int(label_id), "class_id": int(class_id)}
        for label_id, item_id in new_labels
        for class_id in dict.fromkeys(predicted[int(item_id)] or [])
    ]
    if values:
        session.execute(insert(LabelValue), values)
    session.execute(
        update(Item)
        .where(Item.id.in_(item_ids))
        .values(status=ItemStatus.AUTO.value, lease_until=None, leased_by=None)
        .execution_options(synchronize_session=False)
    )
    return len(item_ids), last_seen


def _candidates(project_id: int, model_version_id: int, threshold: float) -> Select[Any]:
    """Predictions of this model version that clear the threshold, for items no human has
    labeled or skipped and that this version has not auto-labeled already."""
    labeled_by_this_version = exists().where(
        Label.item_id == Item.id,
        Label.is_current.is_(True),
        Label.model_version_id == model_version_id,
    )
    open_item: ColumnElement[bool] = or_(
        Item.status == ItemStatus.UNLABELED.value,
        and_(Item.status == ItemStatus.AUTO.value, ~labeled_by_this_version),
    )
    return (
        select(Prediction.item_id)
        .join(Item, Item.id == Prediction.item_id)
        .where(
            Prediction.project_id == project_id,
            Prediction.model_version_id == model_version_id,
            Prediction.confidence >= threshold,
            Item.project_id == project_id,
            open_item,
        )
    )


def _all_known(class_ids: list[int], known: dict[int, Any]) -> bool:
    # a prediction naming a class deleted since its training cannot become a label; the next
    # training's predictions will
    return all(c in known for c in class_ids)


def _latest_model(session: Session, project: Project) -> ModelVersion:
    model = repo.latest_model_version(session, project.id)
    if model is None:
        raise NotReady(
            f"project {project.name!r} has no trained model yet; label some items and train "
            "before auto-labeling"
        )
    return model


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InvalidInput(f"threshold must be a number in (0, 1], got {threshold!r}")
    value = float(threshold)
    if math.isnan(value) or not 0.0 < value <= 1.0:
        raise InvalidInput(f"threshold must be in (0, 1] (a probability), got {threshold!r}")
    return value
