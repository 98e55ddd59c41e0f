"""The labeling loop's serving half: hand out the next batch under leases, take labels and skips,
and show an item's label history.

Serving order: unlabeled items ranked by the project's query strategy (``item.priority``, highest
first), then the unranked ones (not yet encoded, or beyond the ranked queue) in the stable random
order of ``item.random_key``. Each served item is leased to its annotator for
``settings.lease_seconds`` so that annotators working side by side never get the same item; the
same annotator asking again gets its still-leased items back first (a page refresh is idempotent).

Labels are append-only: a new label (or skip) marks the item's current label superseded and adds a
row, so changing a label keeps the history (who, when, human or model, which model version).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from labella.config import Settings
from labella.errors import InvalidInput, NotFound
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    Item,
    ItemStatus,
    Label,
    LabelBox,
    LabelClass,
    LabelSource,
    LabelValue,
    ModelVersion,
    Prediction,
    Project,
    utcnow,
)

MAX_BATCH = 500
EVAL_REASON = "evaluation sample (random)"  # services.evaluation.EVAL_REASON (no import cycle)
AUDIT_REASON = "auto-label audit (random)"  # services.autolabel_audit.AUDIT_REASON
DEFAULT_ANNOTATOR = "anonymous"
_ANNOTATOR_MAX_CHARS = 200


# -- views returned to the routes and the CLI ------------------------------------------------------
@dataclass(frozen=True)
class ClassRef:
    id: int
    name: str


@dataclass(frozen=True)
class ClassProbability:
    class_id: int
    name: str
    probability: float


@dataclass(frozen=True)
class PredictionView:
    """The newest model's prediction for an item."""

    classes: list[ClassRef]
    probabilities: list[ClassProbability]
    confidence: float
    model_version: int
    model_version_id: int
    # object detection: the detector's boxes above the display floor (box_labeling.BoxView)
    boxes: list[Any] | None = None


@dataclass(frozen=True)
class QueueItem:
    item_id: int
    text: str | None
    external_id: str | None
    media_uri: str | None
    meta: dict[str, Any] | None
    priority: float | None
    reason: str
    prediction: PredictionView | None
    lease_until: datetime


@dataclass(frozen=True)
class LabelView:
    id: int
    item_id: int
    source: str
    skipped: bool
    annotator: str | None
    classes: list[ClassRef]
    confidence: float | None
    model_version: int | None
    model_version_id: int | None
    is_current: bool
    created_at: datetime
    superseded_at: datetime | None
    # "label" or an overlap "answer" (services.assignment), and how a label made from several
    # answers was decided (consensus, majority, reviewer; None for one source's own label)
    kind: str = "label"
    decided_by: str | None = None


@dataclass(frozen=True)
class LabelResult:
    """What a submit or skip produced: the new current label, the item's status, and the training
    job this label scheduled (None when it did not reach the project's retrain threshold)."""

    label: LabelView
    item_status: str
    training_job_id: int | None


@dataclass(frozen=True)
class ItemView:
    id: int
    project_id: int
    text: str | None
    external_id: str | None
    media_uri: str | None
    meta: dict[str, Any] | None
    status: str
    priority: float | None
    priority_reason: str | None
    embedded: bool
    leased_by: str | None
    lease_until: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class ItemHistory:
    item: ItemView
    current_label: LabelView | None
    labels: list[LabelView]  # newest first, superseded ones included
    prediction: PredictionView | None


# -- serving ---------------------------------------------------------------------------------------
def next_batch(
    db: Database,
    settings: Settings,
    project_id: int,
    *,
    n: int = 10,
    annotator: str = DEFAULT_ANNOTATOR,
) -> list[QueueItem]:
    """Lease and return up to ``n`` unlabeled items for ``annotator``, most useful first.

    Items leased to another annotator whose lease has not expired are never returned. The
    annotator's own unexpired leases are served again (first), so asking twice gives the same batch.
    """
    if not 1 <= n <= MAX_BATCH:
        raise InvalidInput(f"batch size must be between 1 and {MAX_BATCH}, got {n}")
    annotator = clean_annotator(annotator)
    now = utcnow()
    lease_until = now + timedelta(seconds=settings.lease_seconds)
    # Core statements throughout: this is the hottest path of the app (one call per page of
    # labeling), and ORM object loading would cost more than the queries themselves.
    with db.transaction() as session:
        strategy = session.scalar(select(Project.strategy).where(Project.id == project_id))
        if strategy is None:
            raise NotFound(f"project {project_id} does not exist")
        # overlap (services.assignment): several annotators per item, leased per annotator
        from labella.services import assignment

        overlap = assignment.project_overlap(session, project_id)
        if overlap is not None:
            picked = assignment.lease_next(
                session,
                overlap,
                n=n,
                annotator=annotator,
                now=now,
                lease_until=lease_until,
                eval_every=settings.eval_every,
            )
        else:
            picked = _pick_queue_ids(
                session,
                project_id,
                n=n,
                annotator=annotator,
                now=now,
                eval_every=settings.eval_every,
            )
        ids = [item_id for item_id, _ in picked]
        if not ids:
            return []
        if overlap is None:
            # one UPDATE leases the whole batch (and renews the annotator's own leases)
            session.execute(
                _LEASE, {"ids": ids, "lease_until": lease_until, "leased_by": annotator}
            )
        rows = {row.id: row for row in session.execute(_QUEUE_ROWS, {"ids": ids})}
        classes = ProjectClasses.load(session, project_id)
        head_classes = _head_classes(
            session, {row.model_version_id for row in rows.values() if row.model_version_id}
        )
    already_mine = {item_id for item_id, mine in picked if mine}
    # own leases first, then the rest; within each, queue order
    ordered = sorted(ids, key=lambda item_id: item_id not in already_mine)
    return [
        _queue_item(rows[item_id], strategy, classes, head_classes, lease_until)
        for item_id in ordered
    ]


def _pick_queue_ids(
    session: Session,
    project_id: int,
    *,
    n: int,
    annotator: str,
    now: datetime,
    eval_every: int = 0,
) -> list[tuple[int, bool]]:
    """(item id, already leased to this annotator) for the first ``n`` servable items; every
    ``eval_every``-th slot goes to the random evaluation sample (services.evaluation). Pending
    auto-label audit items (services.autolabel_audit) come first: the user asked for them."""
    from labella.services.autolabel_audit import audit_query

    dialect = session.get_bind().dialect.name
    ranked, unranked = queue_queries(dialect)
    params: dict[str, Any] = {"project_id": project_id, "annotator": annotator, "now": now}
    audit = _fetch_pick(session, audit_query(dialect), {**params, "limit": n})
    if len(audit) >= n:
        return audit
    n -= len(audit)
    picked = _fetch_pick(session, ranked, {**params, "limit": n})
    if len(picked) < n:
        picked += _fetch_pick(session, unranked, {**params, "limit": n - len(picked)})
    if eval_every > 0:
        from labella.services.evaluation import interleave_eval_items

        picked = interleave_eval_items(
            session, project_id, picked, n=n, every=eval_every, params=params
        )
    return audit + picked


def _fetch_pick(session: Session, query: Select, params: dict[str, Any]) -> list[tuple[int, bool]]:
    return [(int(item_id), bool(mine)) for item_id, mine in session.execute(query, params)]


@functools.cache
def queue_queries(dialect: str) -> tuple[Select, Select]:
    """The two walks that serve the queue, built once per dialect: ranked items by priority,
    then unranked ones by ``random_key``. Each selects (item id, leased to the annotator already)
    and takes the parameters ``project_id``, ``annotator``, ``now`` and ``limit``.

    Two index walks instead of one ``ORDER BY priority DESC NULLS LAST, random_key``: that single
    ORDER BY makes SQLite sort every unranked item, while each walk below reads the batch straight
    off ``ix_item_queue`` / ``ix_item_random`` and stops. Rows leased to others are filtered
    during the walk, so the cost grows only with the number of live leases ahead in the queue.
    """
    now = bindparam("now", type_=Item.lease_until.type)
    annotator = bindparam("annotator", type_=Item.leased_by.type)
    free_or_mine: ColumnElement[bool] = or_(
        Item.lease_until.is_(None), Item.lease_until <= now, Item.leased_by == annotator
    )
    mine = and_(Item.leased_by == annotator, Item.lease_until > now)
    servable = select(Item.id, mine).where(
        Item.project_id == bindparam("project_id"),
        Item.status == ItemStatus.UNLABELED.value,
        # the evaluation sample is served in its own slots, in random order, so that which of
        # its items get labeled does not depend on the strategy (that would bias it again)
        Item.eval_sample.is_(False),
        free_or_mine,
    )
    ranked = servable.where(Item.priority.is_not(None)).order_by(
        Item.priority.desc(), Item.id.desc()
    )
    # "priority + 0": the same test, but one no index can answer; with table statistics SQLite
    # would otherwise pick ix_item_queue for "priority IS NULL" and sort every unranked item
    unranked = servable.where((Item.priority + 0).is_(None)).order_by(Item.random_key, Item.id)
    limit = bindparam("limit", type_=Integer)
    ranked, unranked = ranked.limit(limit), unranked.limit(limit)
    if dialect == "postgresql":
        # concurrent annotators skip each other's rows instead of waiting or sharing them;
        # SQLite needs nothing here: its write transaction (BEGIN IMMEDIATE) serialises callers
        ranked = ranked.with_for_update(skip_locked=True, of=Item)
        unranked = unranked.with_for_update(skip_locked=True, of=Item)
    return ranked, unranked


_LEASE = (
    update(Item)
    .where(Item.id.in_(bindparam("ids", expanding=True)))
    .values(lease_until=bindparam("lease_until"), leased_by=bindparam("leased_by"))
    .execution_options(synchronize_session=False)
)

_QUEUE_ROWS = (
    select(
        Item.id,
        Item.text,
        Item.external_id,
        Item.media_uri,
        Item.meta,
        Item.priority,
        Item.priority_reason,
        Item.embedded,
        Item.eval_sample,
        Item.audit_sample,
        Prediction.probs,
        Prediction.predicted,
        Prediction.confidence,
        Prediction.model_version_id,
        Prediction.boxes,
        ModelVersion.version,
    )
    .outerjoin(Prediction, Prediction.item_id == Item.id)
    .outerjoin(ModelVersion, ModelVersion.id == Prediction.model_version_id)
    .where(Item.id.in_(bindparam("ids", expanding=True)))
)


def _queue_item(
    row: Any,
    strategy: str,
    classes: ProjectClasses,
    head_classes: dict[int, list[int]],
    lease_until: datetime,
) -> QueueItem:
    prediction = None
    if row.model_version_id is not None:
        prediction = _prediction_view(classes, row, head_classes)
    return QueueItem(
        item_id=row.id,
        text=row.text,
        external_id=row.external_id,
        media_uri=row.media_uri,
        meta=row.meta,
        priority=row.priority,
        reason=EVAL_REASON
        if row.eval_sample
        else AUDIT_REASON
        if row.audit_sample
        else _serving_reason(strategy, row.priority, row.priority_reason, row.embedded, prediction),
        prediction=prediction,
        lease_until=lease_until,
    )


def _serving_reason(
    strategy: str,
    priority: float | None,
    priority_reason: str | None,
    embedded: bool,
    prediction: PredictionView | None,
) -> str:
    if priority is not None:
        return priority_reason or f"{strategy} {priority:.3g}"
    if not embedded:
        return "random (not yet encoded)"
    if strategy == "random":
        return "random"
    if prediction is None:
        return "random (not yet ranked)"
    return "random (outside the ranked queue)"


# -- labels ----------------------------------------------------------------------------------------
def submit_label(
    db: Database,
    project_id: int,
    item_id: int,
    *,
    classes: list[int | str],
    annotator: str = DEFAULT_ANNOTATOR,
    request_id: str | None = None,
) -> LabelResult:
    """Record a human label (class ids or names) as the item's current label.

    Submitting again changes the label: the previous row is kept, marked superseded. The training
    the project's retrain policy asks for is scheduled in the same transaction as the label. A
    repeated ``request_id`` for the item (a client retrying after a lost response) returns the
    label that request already made.
    """
    return _record_answer(
        db, project_id, item_id, classes=classes, annotator=annotator, request_id=request_id
    )


def skip_item(
    db: Database,
    project_id: int,
    item_id: int,
    *,
    annotator: str = DEFAULT_ANNOTATOR,
    request_id: str | None = None,
) -> LabelResult:
    """Set an item aside: a skip is recorded like a label (so it has a history) and the item
    leaves the queue with status ``skipped``."""
    return _record_answer(
        db, project_id, item_id, classes=None, annotator=annotator, request_id=request_id
    )


def _record_answer(
    db: Database,
    project_id: int,
    item_id: int,
    *,
    classes: list[int | str] | None,
    annotator: str,
    request_id: str | None,
) -> LabelResult:
    """A human's answer for an item, a label (``classes``) or a skip (``None``), made current."""
    from labella.services.training import maybe_schedule_training

    annotator = clean_annotator(annotator)
    with db.transaction() as session:
        project = repo.get_project(session, project_id)
        resolved = resolve_classes(project, classes) if classes is not None else []
        item = lock_item(session, project_id, item_id)
        replayed = replayed_result(session, project, item, request_id)
        if replayed is not None:
            return replayed
        # overlap (services.assignment): the answer is one of several that decide the label
        from labella.services import assignment

        if assignment.takes_answer(session, project, item, annotator):
            outcome = assignment.record_answer(
                session,
                project,
                item,
                classes=resolved if classes is not None else None,
                annotator=annotator,
                request_id=request_id,
            )
            decided = outcome.decided
            job = None
            if decided is not None and not decided.skipped:
                job = maybe_schedule_training(session, project)
            return LabelResult(
                label=label_view(outcome.answer, ProjectClasses.of(project), None),
                item_status=outcome.item_status,
                training_job_id=job.id if job is not None else None,
            )
        label = replace_current_label(
            session,
            item,
            Label(
                project_id=project_id,
                item_id=item.id,
                source=LabelSource.HUMAN,
                skipped=classes is None,
                annotator=annotator,
                request_id=request_id,
                values=[LabelValue(class_id=cls.id) for cls in resolved],
            ),
            status=ItemStatus.SKIPPED if classes is None else ItemStatus.LABELED,
        )
        # skips teach the model nothing, so only labels count towards a retrain
        job = maybe_schedule_training(session, project) if classes is not None else None
        if classes is not None:
            # a random share of each annotator's labels goes to review (services.review)
            from labella.services.review import maybe_sample_work

            maybe_sample_work(session, project, label)
        return LabelResult(
            label=label_view(label, ProjectClasses.of(project), None),
            item_status=item.status,
            training_job_id=job.id if job is not None else None,
        )


def item_history(
    db: Database, project_id: int, item_id: int, *, only_answers_of: str | None = None
) -> ItemHistory:
    """The item, its current label, every label it ever had (newest first) and its prediction.

    ``only_answers_of``: show of the overlap answers only this annotator's (an annotator's view:
    nobody sees the others' answers, services.assignment)."""
    from labella.services.assignment import visible_answer_filter

    with db.reader() as session:
        project = repo.get_project(session, project_id)
        item = repo.get_item(session, project_id, item_id)
        classes = ProjectClasses.of(project)
        query = (
            select(Label, ModelVersion.version)
            .outerjoin(ModelVersion, ModelVersion.id == Label.model_version_id)
            .where(Label.item_id == item.id)
            .order_by(Label.id.desc())
        )
        if only_answers_of is not None:
            query = query.where(visible_answer_filter(only_answers_of))
        rows = session.execute(query).all()
        labels = [label_view(label, classes, version) for label, version in rows]
        prediction_row = session.execute(
            select(
                Prediction.probs,
                Prediction.predicted,
                Prediction.confidence,
                Prediction.model_version_id,
                Prediction.boxes,
                ModelVersion.version,
            )
            .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
            .where(Prediction.item_id == item.id)
        ).first()
        prediction = None
        if prediction_row is not None:
            head_classes = _head_classes(session, {prediction_row.model_version_id})
            prediction = _prediction_view(classes, prediction_row, head_classes)
        return ItemHistory(
            item=_item_view(item),
            current_label=next((label for label in labels if label.is_current), None),
            labels=labels,
            prediction=prediction,
        )


def resolve_classes(project: Project, classes: list[int | str]) -> list[LabelClass]:
    """The project's classes named by id (int) or name (str), checked against its label mode."""
    by_id = {cls.id: cls for cls in project.classes}
    by_name = {cls.name: cls for cls in project.classes}
    resolved: list[LabelClass] = []
    for value in classes:
        found: LabelClass | None = None
        if isinstance(value, str):
            found = by_name.get(value.strip())
        elif isinstance(value, int) and not isinstance(value, bool):
            found = by_id.get(value)
        if found is None:
            choices = ", ".join(f"{cls.name} (id {cls.id})" for cls in project.classes)
            raise InvalidInput(
                f"unknown class {value!r} for project {project.name!r}; its classes are: {choices}",
                details={"classes": [{"id": c.id, "name": c.name} for c in project.classes]},
            )
        if found in resolved:
            raise InvalidInput(f"class {found.name!r} is given more than once")
        resolved.append(found)
    if not project.multi_label and len(resolved) != 1:
        given = ", ".join(cls.name for cls in resolved) or "none"
        raise InvalidInput(
            f"project {project.name!r} is single-label: give exactly one class, "
            f"got {len(resolved)} ({given})"
        )
    # multi-label: an empty set is a real answer ("none of these apply")
    return resolved


def clean_annotator(annotator: str) -> str:
    name = annotator.strip()
    if not name:
        raise InvalidInput("annotator must not be empty")
    if len(name) > _ANNOTATOR_MAX_CHARS:
        raise InvalidInput(f"annotator must be at most {_ANNOTATOR_MAX_CHARS} characters")
    return name


def replayed_result(
    session: Session, project: Project, item: Item, request_id: str | None
) -> LabelResult | None:
    """The result of an earlier request with the same key for this item, if there was one."""
    if request_id is None:
        return None
    earlier = session.scalar(
        select(Label).where(Label.item_id == item.id, Label.request_id == request_id)
    )
    if earlier is None:
        return None
    return LabelResult(
        label=label_view(earlier, ProjectClasses.of(project), None),
        item_status=item.status,
        training_job_id=None,
    )


def lock_item(session: Session, project_id: int, item_id: int) -> Item:
    # FOR UPDATE (PostgreSQL; SQLite's write transaction is already exclusive) so that two labels
    # for one item, or a label racing an auto-label, cannot both become current
    item = session.scalar(select(Item).where(Item.id == item_id).with_for_update())
    if item is None or item.project_id != project_id:
        raise NotFound(f"item {item_id} does not exist in project {project_id}")
    return item


def replace_current_label(session: Session, item: Item, label: Label, *, status: str) -> Label:
    now = utcnow()
    session.execute(
        update(Label)
        .where(Label.item_id == item.id, Label.is_current.is_(True))
        .values(is_current=False, superseded_at=now)
        .execution_options(synchronize_session=False)
    )
    label.is_current = True
    label.created_at = now
    session.add(label)
    item.status = status
    item.lease_until = None
    item.leased_by = None
    session.flush()
    return label


@dataclass(frozen=True)
class ModelLabel:
    """One auto-label to write: the model's classes for an item (and, for a detector, its boxes:
    dicts with ``class_id``, ``x_min``, ``y_min``, ``x_max``, ``y_max`` and ``score``)."""

    item_id: int
    confidence: float
    class_ids: Sequence[int]
    boxes: Sequence[Mapping[str, Any]] = ()


def write_model_labels(
    session: Session, project_id: int, model_version_id: int, labels: Sequence[ModelLabel]
) -> None:
    """Make each of ``labels`` its item's current ``model`` label and the item ``auto``.

    The caller has locked the items (``with_for_update(of=Item)``) and re-checked under that lock
    that they are still open (unlabeled, or auto-labeled by an older version), so a human label
    that arrived meanwhile is never superseded. Bulk statements, not ORM objects: an auto-label
    run writes thousands of labels per chunk.
    """
    if not labels:
        return
    item_ids = [label.item_id for label in labels]
    now = utcnow()
    session.execute(
        update(Label)
        .where(Label.item_id.in_(item_ids), Label.is_current.is_(True))
        .values(is_current=False, superseded_at=now)
        .execution_options(synchronize_session=False)
    )
    label_ids = session.scalars(
        insert(Label).returning(Label.id, sort_by_parameter_order=True),
        [
            {
                "project_id": project_id,
                "item_id": label.item_id,
                "source": LabelSource.MODEL.value,
                "skipped": False,
                "annotator": None,
                "model_version_id": model_version_id,
                "confidence": label.confidence,
                "is_current": True,
                "created_at": now,
            }
            for label in labels
        ],
    ).all()
    boxes = [
        {
            "label_id": label_id,
            "class_id": int(box["class_id"]),
            **{key: float(box[key]) for key in ("x_min", "y_min", "x_max", "y_max", "score")},
        }
        for label_id, label in zip(label_ids, labels, strict=True)
        for box in label.boxes
    ]
    if boxes:
        session.execute(insert(LabelBox), boxes)
    values = [
        {"label_id": label_id, "class_id": int(class_id)}
        for label_id, label in zip(label_ids, labels, strict=True)
        for class_id in dict.fromkeys(label.class_ids)
    ]
    if values:
        session.execute(insert(LabelValue), values)
    session.execute(
        update(Item)
        .where(Item.id.in_(item_ids))
        .values(status=ItemStatus.AUTO.value, lease_until=None, leased_by=None)
        .execution_options(synchronize_session=False)
    )


# -- shaping ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProjectClasses:
    """A project's classes by id, for naming and ordering the classes of labels and predictions."""

    names: dict[int, str]
    positions: dict[int, int]

    @classmethod
    def of(cls, project: Project) -> ProjectClasses:
        return cls(
            names={c.id: c.name for c in project.classes},
            positions={c.id: c.position for c in project.classes},
        )

    @classmethod
    def load(cls, session: Session, project_id: int) -> ProjectClasses:
        rows = session.execute(
            select(LabelClass.id, LabelClass.name, LabelClass.position).where(
                LabelClass.project_id == project_id
            )
        ).all()
        return cls(
            names={row.id: row.name for row in rows},
            positions={row.id: row.position for row in rows},
        )

    def ref(self, class_id: int) -> ClassRef:
        return ClassRef(id=class_id, name=self.names.get(class_id, f"#{class_id}"))

    def in_order(self) -> list[int]:
        return sorted(self.positions, key=self.positions.__getitem__)

    def sort(self, class_ids: Iterable[int]) -> list[int]:
        return sorted(class_ids, key=lambda c: self.positions.get(c, 1 << 30))


def _prediction_view(
    classes: ProjectClasses, row: Any, head_classes: dict[int, list[int]]
) -> PredictionView:
    """``row`` has probs, predicted, confidence, model_version_id, boxes and version."""
    # probs[j] belongs to the j-th class id the model version was trained with; a class added
    # since has no probability until the next training
    class_ids = head_classes.get(row.model_version_id) or classes.in_order()
    probabilities = [
        ClassProbability(class_id=class_id, name=classes.ref(class_id).name, probability=float(p))
        for class_id, p in zip(class_ids, row.probs or [], strict=False)
    ]
    return PredictionView(
        classes=[classes.ref(int(class_id)) for class_id in row.predicted or []],
        probabilities=probabilities,
        confidence=float(row.confidence),
        model_version=int(row.version),
        model_version_id=int(row.model_version_id),
        boxes=_predicted_boxes(classes, row.boxes),
    )


def _predicted_boxes(classes: ProjectClasses, raw: Any) -> list[Any] | None:
    if raw is None:  # a classifier's prediction
        return None
    from labella.services.box_labeling import predicted_boxes

    return list(predicted_boxes(classes, raw))


def _head_classes(session: Session, model_version_ids: set[int]) -> dict[int, list[int]]:
    """The class ids behind each model version's probability columns (recorded by training)."""
    if not model_version_ids:
        return {}
    rows = session.execute(
        select(ModelVersion.id, ModelVersion.metrics).where(ModelVersion.id.in_(model_version_ids))
    )
    return {
        int(version_id): [int(c) for c in (metrics or {}).get("class_ids") or []]
        for version_id, metrics in rows
    }


def label_view(label: Label, classes: ProjectClasses, version: int | None) -> LabelView:
    return LabelView(
        id=label.id,
        item_id=label.item_id,
        source=label.source,
        skipped=label.skipped,
        annotator=label.annotator,
        classes=[classes.ref(c) for c in classes.sort(v.class_id for v in label.values)],
        confidence=label.confidence,
        model_version=version,
        model_version_id=label.model_version_id,
        is_current=label.is_current,
        created_at=as_utc(label.created_at),
        superseded_at=as_utc(label.superseded_at) if label.superseded_at else None,
        kind=label.kind or "label",
        decided_by=label.decided_by,
    )


def as_utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; every stored timestamp is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _item_view(item: Item) -> ItemView:
    return ItemView(
        id=item.id,
        project_id=item.project_id,
        text=item.text,
        external_id=item.external_id,
        media_uri=item.media_uri,
        meta=item.meta,
        status=item.status,
        priority=item.priority,
        priority_reason=item.priority_reason,
        embedded=item.embedded,
        leased_by=item.leased_by,
        lease_until=as_utc(item.lease_until) if item.lease_until else None,
        created_at=as_utc(item.created_at),
    )
