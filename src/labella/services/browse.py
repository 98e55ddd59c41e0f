"""Browsing a project's items: the paged, filtered items table of the data browser and a read-only
preview of the labeling queue.

Paging is by key (``after_id``), never by offset: a page costs the same at item 90,000 as at item
1, because the walk starts at the given id and stops after ``limit`` matches. The total that comes
with a page is exact when an index answers it (no filter, or one filter: each has an index that
counts it); with several filters it is counted up to :data:`COUNT_CAP` matches and reported as "at
least" beyond that, so a page never waits for a walk over every item of a large project.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from labella.errors import InvalidInput
from labella.services.labeling import ClassRef, as_utc
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

DEFAULT_PAGE = 50
MAX_PAGE = 500
COUNT_CAP = 10_000
"""Beyond this many matches a filtered total is reported as a lower bound."""
TEXT_PREVIEW_CHARS = 300
"""Texts are cut to this length in the table; the item's own page has the whole text."""
MAX_QUEUE_PREVIEW = 100

# The status an item has exactly when its current label comes from this source (see ItemStatus).
_STATUS_OF_SOURCE = {
    LabelSource.HUMAN.value: ItemStatus.LABELED.value,
    LabelSource.MODEL.value: ItemStatus.AUTO.value,
}


# -- views -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemFilter:
    """Validated filters of the items table; ``None`` means "any"."""

    status: str | None = None
    label: int | None = None  # a class id: the item's current label includes it
    source: str | None = None  # "human" or "model": who gave the current label
    min_confidence: float | None = None  # of the newest prediction
    max_confidence: float | None = None


@dataclass(frozen=True)
class ItemRow:
    id: int
    external_id: str | None
    text: str | None
    text_truncated: bool
    status: str
    classes: list[ClassRef]  # of the current label (empty for unlabeled and skipped items)
    source: str | None  # of the current label
    annotator: str | None
    labeled_at: datetime | None
    label_confidence: float | None  # an auto label's confidence (None for human labels)
    label_model_version: int | None  # the model version of an auto label
    confidence: float | None
    """The newest prediction's confidence: what the confidence filter tests."""
    predicted: list[ClassRef]  # classes of the newest prediction
    model_version: int | None  # of the newest prediction


@dataclass(frozen=True)
class ItemPage:
    items: list[ItemRow]
    next_after_id: int | None  # pass as after_id for the next page; None on the last page
    total: int
    total_exact: bool  # False: at least ``total`` items match (counting stopped at the cap)
    limit: int


@dataclass(frozen=True)
class QueuePreviewRow:
    item_id: int
    text: str | None
    text_truncated: bool
    priority: float | None
    reason: str
    predicted: list[ClassRef]
    confidence: float | None
    model_version: int | None
    leased_by: str | None  # an unexpired lease: the item is on someone's screen
    lease_until: datetime | None


# -- filters ---------------------------------------------------------------------------------------
def parse_filter(
    project: Project,
    *,
    status: str | None = None,
    label: str | None = None,
    source: str | None = None,
    min_confidence: float | None = None,
    max_confidence: float | None = None,
) -> ItemFilter:
    """Check the query parameters against the project; each bad one is named in the error."""
    status = _blank_to_none(status)
    if status is not None and status not in {s.value for s in ItemStatus}:
        choices = ", ".join(s.value for s in ItemStatus)
        raise InvalidInput(f"unknown status {status!r}; choose one of: {choices}")
    source = _blank_to_none(source)
    if source is not None and source not in _STATUS_OF_SOURCE:
        raise InvalidInput(f"unknown label source {source!r}; choose one of: human, model")
    for name, value in (("min_confidence", min_confidence), ("max_confidence", max_confidence)):
        if value is not None and (math.isnan(value) or not 0.0 <= value <= 1.0):
            raise InvalidInput(f"{name} must be between 0 and 1, got {value}")
    if (
        min_confidence is not None
        and max_confidence is not None
        and min_confidence > max_confidence
    ):
        raise InvalidInput(
            f"min_confidence ({min_confidence}) must not be above max_confidence ({max_confidence})"
        )
    return ItemFilter(
        status=status,
        label=_resolve_class(project, _blank_to_none(label)),
        source=source,
        min_confidence=min_confidence,
        max_confidence=max_confidence,
    )


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _resolve_class(project: Project, label: str | None) -> int | None:
    """A class by name, or by id when no class has that name."""
    if label is None:
        return None
    for cls in project.classes:
        if cls.name == label:
            return cls.id
    if label.isdigit():
        for cls in project.classes:
            if cls.id == int(label):
                return cls.id
    choices = ", ".join(f"{cls.name} (id {cls.id})" for cls in project.classes)
    raise InvalidInput(
        f"unknown class {label!r} for project {project.name!r}; its classes are: {choices}"
    )


# -- the items table -------------------------------------------------------------------------------
#
# A page is the first ``limit`` matching items with id > after_id, in id order. Each filter is a
# set of item ids with a cheap exact size (status: the item index; label: the project's current
# labels; confidence: the prediction index). A small set drives the walk: ``item.id IN (subquery)``
# reads it off its index in id order, so a rare filter costs the size of its set. A large set is
# checked row by row while the walk follows the primary key, which finds a page of dense matches
# after a few hundred rows. (A single ORDER BY over the joined rows would let SQLite pick the
# status index and sort every match: 0.4 s a page at 100,000 items.)

DRIVING_SET = 20_000
"""A filter whose set is at most this large can drive the walk; a larger one is checked per row."""
SMALL_SET = 5_000
"""When combining filters, one this small drives the walk without sizing the others."""


@dataclass(frozen=True)
class _Condition:
    ids: Select[Any]  # the item ids that pass this filter
    per_row: ColumnElement[bool]  # the same test, for the item at hand
    size: int = 0  # exact, or capped at DRIVING_SET + 1 when several filters are combined


def _status_condition(project_id: int, statuses: list[str]) -> _Condition:
    ids = select(Item.id).where(Item.project_id == project_id, Item.status.in_(statuses))
    return _Condition(ids, Item.status.in_(statuses))


def _label_condition(project_id: int, class_id: int) -> _Condition:
    # walk the class's label values, then the labels ("+ 0": not the project's label index,
    # which would visit every current label of the project)
    ids = (
        select(Label.item_id)
        .select_from(LabelValue)
        .join(Label, Label.id == LabelValue.label_id)
        .where(
            LabelValue.class_id == class_id,
            (Label.project_id + 0) == project_id,
            Label.is_current.is_(True),
        )
    )
    per_row = exists().where(
        Label.item_id == Item.id,
        Label.is_current.is_(True),
        LabelValue.label_id == Label.id,
        LabelValue.class_id == class_id,
    )
    return _Condition(ids, per_row)


def _confidence_condition(project_id: int, low: float | None, high: float | None) -> _Condition:
    tests: list[ColumnElement[bool]] = []
    if low is not None:
        tests.append(Prediction.confidence >= low)
    if high is not None:
        tests.append(Prediction.confidence <= high)
    ids = select(Prediction.item_id).where(Prediction.project_id == project_id, *tests)
    return _Condition(ids, exists().where(Prediction.item_id == Item.id, *tests))


def _conditions(session: Session, project_id: int, flt: ItemFilter) -> list[_Condition]:
    """The filters' conditions with their sizes: exact for a single filter (it is the total),
    capped when several are combined (only which one is smallest matters then). Sized in order
    of cost: the status index first, then the prediction index, then the labels."""
    conditions = []
    statuses = _statuses(flt)
    if statuses is not None:
        conditions.append(_status_condition(project_id, statuses))
    if flt.min_confidence is not None or flt.max_confidence is not None:
        conditions.append(_confidence_condition(project_id, flt.min_confidence, flt.max_confidence))
    if flt.label is not None:
        conditions.append(_label_condition(project_id, flt.label))
    if len(conditions) == 1:
        return [replace(conditions[0], size=_count(session, conditions[0].ids, None))]
    sized: list[_Condition] = []
    for condition in conditions:
        if sized and min(c.size for c in sized) <= SMALL_SET:
            # a small driver is found: the rest are tested per row, no need to size them
            sized.append(replace(condition, size=DRIVING_SET + 1))
        else:
            sized.append(replace(condition, size=_count(session, condition.ids, DRIVING_SET + 1)))
    return sized


def _count(session: Session, query: Select[Any], cap: int | None) -> int:
    if cap is not None:
        query = query.limit(cap)
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def _walk(project_id: int, conditions: list[_Condition]) -> Select[Any]:
    """Item ids passing every condition. The smallest set, when small, drives (``id IN``, read
    in id order off its index); the others are tested on the rows it yields. With no small set
    the walk follows the primary key and tests each row, which finds dense matches quickly."""
    tests: list[ColumnElement[bool]] = [c.per_row for c in conditions]
    if conditions:
        k = min(range(len(conditions)), key=lambda i: conditions[i].size)
        if conditions[k].size <= DRIVING_SET:
            tests[k] = Item.id.in_(conditions[k].ids)
    # "project_id + 0": the same test, but one no index answers, so that SQLite walks the primary
    # key in id order (with the project's index it would collect every match and sort them)
    return select(Item.id).where((Item.project_id + 0) == project_id, *tests)


def _statuses(flt: ItemFilter) -> list[str] | None:
    """The statuses the status and source filters allow together (None: any)."""
    allowed: set[str] | None = None
    if flt.status is not None:
        allowed = {flt.status}
    if flt.source is not None:
        by_source = {_STATUS_OF_SOURCE[flt.source]}
        allowed = by_source if allowed is None else allowed & by_source
    return None if allowed is None else sorted(allowed)


def list_items(
    db: Database,
    project_id: int,
    *,
    flt: ItemFilter | None = None,
    after_id: int | None = None,
    limit: int = DEFAULT_PAGE,
) -> ItemPage:
    """One page of the project's items in id order (import order), starting after ``after_id``."""
    flt = flt or ItemFilter()
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    if after_id is not None and after_id < 0:
        raise InvalidInput(f"after_id must not be negative, got {after_id}")
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        names = {cls.id: cls.name for cls in project.classes}
        conditions = [] if _statuses(flt) == [] else _conditions(session, project_id, flt)
        if _statuses(flt) == [] or any(c.size == 0 for c in conditions):
            ids: list[int] = []  # e.g. source=model with status=labeled: nothing can match
            total, exact = 0, True
        else:
            walk = _walk(project_id, conditions)
            if after_id is not None:
                walk = walk.where(Item.id > after_id)
            # one row more than asked tells whether there is a next page, without counting
            ids = list(session.scalars(walk.order_by(Item.id).limit(limit + 1)))
            total, exact = _total(session, project_id, conditions)
        has_more = len(ids) > limit
        ids = ids[:limit]
        rows = _page_rows(session, ids)
        classes_of = _label_classes(session, [r.label_id for r in rows if r.label_id is not None])
        versions = _versions(
            session,
            {r.label_model_version_id for r in rows}
            | {r.prediction_model_version_id for r in rows},
        )
    items = [_item_row(row, names, classes_of, versions) for row in rows]
    return ItemPage(
        items=items,
        next_after_id=items[-1].id if has_more and items else None,
        total=total,
        total_exact=exact,
        limit=limit,
    )


def _total(session: Session, project_id: int, conditions: list[_Condition]) -> tuple[int, bool]:
    """(total, exact): a filter's own set size when there is one filter, else a capped count."""
    if not conditions:
        count = session.scalar(select(func.count()).where(Item.project_id == project_id))
        return int(count or 0), True
    if len(conditions) == 1:
        return conditions[0].size, True
    found = _count(session, _walk(project_id, conditions), COUNT_CAP + 1)
    return (COUNT_CAP, False) if found > COUNT_CAP else (found, True)


_current = aliased(Label, name="current_label")


def _page_rows(session: Session, ids: list[int]) -> list[Any]:
    """The table's columns for the page's items, in id order."""
    if not ids:
        return []
    query = (
        select(
            Item.id,
            Item.external_id,
            func.substr(Item.text, 1, TEXT_PREVIEW_CHARS + 1).label("text"),
            Item.status,
            _current.id.label("label_id"),
            _current.source,
            _current.annotator,
            _current.created_at.label("labeled_at"),
            _current.confidence.label("label_confidence"),
            _current.model_version_id.label("label_model_version_id"),
            Prediction.predicted,
            Prediction.confidence.label("prediction_confidence"),
            Prediction.model_version_id.label("prediction_model_version_id"),
        )
        .outerjoin(_current, and_(_current.item_id == Item.id, _current.is_current.is_(True)))
        .outerjoin(Prediction, Prediction.item_id == Item.id)
        .where(Item.id.in_(ids))
        .order_by(Item.id)
    )
    return list(session.execute(query))


def _item_row(
    row: Any, names: dict[int, str], classes_of: dict[int, list[int]], versions: dict[int, int]
) -> ItemRow:
    def ref(class_id: int) -> ClassRef:
        return ClassRef(id=class_id, name=names.get(class_id, f"#{class_id}"))

    text = row.text
    truncated = text is not None and len(text) > TEXT_PREVIEW_CHARS
    has_label = row.label_id is not None
    prediction_version = row.prediction_model_version_id
    return ItemRow(
        id=row.id,
        external_id=row.external_id,
        text=text[:TEXT_PREVIEW_CHARS] if truncated else text,
        text_truncated=truncated,
        status=row.status,
        classes=[ref(c) for c in classes_of.get(row.label_id, [])] if has_label else [],
        source=row.source if has_label else None,
        annotator=row.annotator if has_label else None,
        labeled_at=as_utc(row.labeled_at) if has_label and row.labeled_at else None,
        label_confidence=float(row.label_confidence)
        if has_label and row.label_confidence is not None
        else None,
        label_model_version=versions.get(row.label_model_version_id)
        if has_label and row.label_model_version_id is not None
        else None,
        confidence=float(row.prediction_confidence)
        if row.prediction_confidence is not None
        else None,
        predicted=[ref(int(c)) for c in row.predicted or []],
        model_version=versions.get(prediction_version) if prediction_version is not None else None,
    )


def _label_classes(session: Session, label_ids: list[int]) -> dict[int, list[int]]:
    if not label_ids:
        return {}
    found: dict[int, list[int]] = defaultdict(list)
    rows = session.execute(
        select(LabelValue.label_id, LabelValue.class_id)
        .where(LabelValue.label_id.in_(label_ids))
        .order_by(LabelValue.label_id, LabelValue.class_id)
    )
    for label_id, class_id in rows:
        found[int(label_id)].append(int(class_id))
    return found


def _versions(session: Session, model_version_ids: set[int | None]) -> dict[int, int]:
    ids = {i for i in model_version_ids if i is not None}
    if not ids:
        return {}
    rows = session.execute(
        select(ModelVersion.id, ModelVersion.version).where(ModelVersion.id.in_(ids))
    )
    return {int(i): int(v) for i, v in rows}


# -- queue preview ---------------------------------------------------------------------------------
def preview_queue(db: Database, project_id: int, *, n: int = 10) -> list[QueuePreviewRow]:
    """The next ``n`` items of the labeling queue in serving order, without leasing anything:
    ranked items by priority, then unranked ones in their stable random order (as served by
    :func:`labella.services.labeling.next_batch`). Items on someone's screen are included and
    say so; the queue serves them to nobody else until their lease ends."""
    if not 1 <= n <= MAX_QUEUE_PREVIEW:
        raise InvalidInput(f"n must be between 1 and {MAX_QUEUE_PREVIEW}, got {n}")
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        names = {cls.id: cls.name for cls in project.classes}
        unlabeled = and_(Item.project_id == project_id, Item.status == ItemStatus.UNLABELED.value)
        ranked = list(
            session.scalars(
                select(Item.id)
                .where(unlabeled, Item.priority.is_not(None))
                .order_by(Item.priority.desc(), Item.id.desc())
                .limit(n)
            )
        )
        unranked: list[int] = []
        if len(ranked) < n:
            # "priority + 0" keeps the planner on the random-order index (see labeling)
            unranked = list(
                session.scalars(
                    select(Item.id)
                    .where(unlabeled, (Item.priority + 0).is_(None))
                    .order_by(Item.random_key, Item.id)
                    .limit(n - len(ranked))
                )
            )
        ids = ranked + unranked
        if not ids:
            return []
        rows = {
            row.id: row
            for row in session.execute(
                select(
                    Item.id,
                    func.substr(Item.text, 1, TEXT_PREVIEW_CHARS + 1).label("text"),
                    Item.priority,
                    Item.priority_reason,
                    Item.embedded,
                    Item.leased_by,
                    Item.lease_until,
                    Prediction.predicted,
                    Prediction.confidence,
                    Prediction.model_version_id,
                )
                .outerjoin(Prediction, Prediction.item_id == Item.id)
                .where(Item.id.in_(ids))
            )
        }
        versions = _versions(session, {row.model_version_id for row in rows.values()})
    now = utcnow()
    preview = []
    for item_id in ids:
        row = rows[item_id]
        text = row.text
        truncated = text is not None and len(text) > TEXT_PREVIEW_CHARS
        lease_until = as_utc(row.lease_until) if row.lease_until else None
        leased = lease_until is not None and lease_until > now
        predicted = [ClassRef(int(c), names.get(int(c), f"#{c}")) for c in row.predicted or []]
        has_prediction = row.model_version_id is not None
        preview.append(
            QueuePreviewRow(
                item_id=item_id,
                text=text[:TEXT_PREVIEW_CHARS] if truncated else text,
                text_truncated=truncated,
                priority=row.priority,
                reason=_queue_reason(
                    project.strategy,
                    row.priority,
                    row.priority_reason,
                    row.embedded,
                    has_prediction,
                ),
                predicted=predicted,
                confidence=float(row.confidence) if row.confidence is not None else None,
                model_version=versions.get(row.model_version_id) if has_prediction else None,
                leased_by=row.leased_by if leased else None,
                lease_until=lease_until if leased else None,
            )
        )
    return preview


def _queue_reason(
    strategy: str,
    priority: float | None,
    priority_reason: str | None,
    embedded: bool,
    has_prediction: bool,
) -> str:
    """Why the item is where it is in the queue, in the words the labeling screen uses."""
    if priority is not None:
        return priority_reason or f"{strategy} {priority:.3g}"
    if not embedded:
        return "random (not yet encoded)"
    if strategy == "random":
        return "random"
    if not has_prediction:
        return "random (not yet ranked)"
    return "random (outside the ranked queue)"


# -- projects overview ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ProjectSummary:
    project: Project
    counts: dict[str, int]
    total: int
    model_version: int | None
    accuracy: float | None


def project_summaries(db: Database) -> list[ProjectSummary]:
    """Every project with its item counts by status and its newest model's accuracy."""
    from sqlalchemy.orm import selectinload

    with db.reader() as session:
        projects = list(
            session.scalars(
                select(Project).order_by(Project.id).options(selectinload(Project.classes))
            )
        )
        counts: dict[int, dict[str, int]] = {
            p.id: {s.value: 0 for s in ItemStatus} for p in projects
        }
        for project_id, status, n in session.execute(
            select(Item.project_id, Item.status, func.count()).group_by(
                Item.project_id, Item.status
            )
        ):
            counts.setdefault(int(project_id), {})[str(status)] = int(n)
        latest = (
            select(ModelVersion.project_id, func.max(ModelVersion.version).label("version"))
            .group_by(ModelVersion.project_id)
            .subquery()
        )
        models = {
            int(project_id): (int(version), metrics)
            for project_id, version, metrics in session.execute(
                select(ModelVersion.project_id, ModelVersion.version, ModelVersion.metrics).join(
                    latest,
                    and_(
                        latest.c.project_id == ModelVersion.project_id,
                        latest.c.version == ModelVersion.version,
                    ),
                )
            )
        }
    summaries = []
    for project in projects:
        version, metrics = models.get(project.id, (None, None))
        accuracy = (metrics or {}).get("accuracy")
        summaries.append(
            ProjectSummary(
                project=project,
                counts=counts[project.id],
                total=sum(counts[project.id].values()),
                model_version=version,
                accuracy=float(accuracy) if isinstance(accuracy, int | float) else None,
            )
        )
    return summaries
