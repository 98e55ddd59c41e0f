"""Audit of the auto-labels: a random sample of them checked by humans, and the precision measured.

An auto-label run ("flush", ``services.autolabel``) promises a precision estimated from the
calibration on the evaluation sample; the audit measures what it delivered. A uniformly random
sample of the auto-labeled items is queued for humans (``next_batch`` serves it ahead of the
active-learning queue, with the reason :data:`AUDIT_REASON`), and each human answer is compared with
the model label it supersedes. The share that agrees is the measured precision of the auto-labels,
with a Wilson interval; the human labels stay (they replace the model's on those items, and the
history keeps both).

Only the items of one auto-label run are not singled out: the audit samples every item whose
current label is the model's, which is what an export would ship.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy import Integer, Select, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from labella.config import Settings
from labella.errors import InvalidInput
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import Item, ItemStatus, Label, LabelSource, LabelValue, ProjectKind

AUDIT_REASON = "auto-label audit (random)"
MAX_AUDIT_SIZE = 10_000


@dataclass(frozen=True)
class AuditReport:
    project_id: int
    auto_labeled: int
    """Items whose current label is the model's (not audited yet, or audit pending)."""
    queued: int
    """Audit items no human has answered yet."""
    checked: int
    """Audit items a human labeled (skips excluded)."""
    agreed: int
    """Of those, the human gave exactly the model's classes."""
    precision: float | None
    ci_low: float
    ci_high: float
    drawn: int = 0
    """Items this request added to the audit."""


def queue_audit(
    db: Database, settings: Settings, project_id: int, *, size: int, actor: str = "system"
) -> AuditReport:
    """Add auto-labeled items, drawn uniformly at random, to the audit until it holds ``size``
    items (answered ones included); idempotent, seeded by the project and the audit's size."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_AUDIT_SIZE:
        raise InvalidInput(f"audit size must be a whole number from 1 to {MAX_AUDIT_SIZE}")
    with db.transaction() as session:
        repo.get_project(session, project_id, for_update=True)
        have = int(
            session.scalar(
                select(func.count()).where(
                    Item.project_id == project_id, Item.audit_sample.is_(True)
                )
            )
            or 0
        )
        candidates = select(Item.id).where(
            Item.project_id == project_id,
            Item.status == ItemStatus.AUTO.value,
            Item.audit_sample.is_(False),
        )
        if have == 0 and session.scalar(candidates.limit(1)) is None:
            raise InvalidInput(
                "nothing to audit: no item carries an auto-label; run an auto-label first"
            )
        chosen = repo.mark_random_items(
            session,
            candidates,
            need=size - have,
            seed=[settings.random_seed, project_id, have, 0xA0D17],
            values={"audit_sample": True},
        )
        from labella.services import audit

        audit.record(
            session,
            actor=actor,
            action="autolabel.audit",
            project_id=project_id,
            detail={"size": size, "drawn": len(chosen)},
        )
    report = audit_report(db, project_id)
    return AuditReport(**{**report.__dict__, "drawn": len(chosen)})


def audit_report(db: Database, project_id: int) -> AuditReport:
    """How far the audit got and the auto-labels' measured precision so far."""
    from labella.services.evaluation import wilson_interval

    with db.reader() as session:
        project = repo.get_project(session, project_id)
        auto_labeled = int(
            session.scalar(
                select(func.count()).where(
                    Item.project_id == project_id, Item.status == ItemStatus.AUTO.value
                )
            )
            or 0
        )
        queued = int(
            session.scalar(
                select(func.count()).where(
                    Item.project_id == project_id,
                    Item.audit_sample.is_(True),
                    Item.status == ItemStatus.AUTO.value,
                )
            )
            or 0
        )
        if project.kind == ProjectKind.OBJECT_DETECTION:
            # an auto-label is its boxes: right when they pair up with the human's
            from labella.services.detection_autolabel import compare_audited_boxes

            checked, agreed = compare_audited_boxes(session, project_id)
        else:
            checked, agreed = _compare_answers(session, project_id)
    low, high = wilson_interval(agreed, checked)
    return AuditReport(
        project_id=project_id,
        auto_labeled=auto_labeled,
        queued=queued,
        checked=checked,
        agreed=agreed,
        precision=agreed / checked if checked else None,
        ci_low=low,
        ci_high=high,
    )


def _compare_answers(session: Session, project_id: int) -> tuple[int, int]:
    """(audited items a human labeled, of which the human agreed with the model label before)."""
    audited = select(Item.id).where(
        Item.project_id == project_id,
        Item.audit_sample.is_(True),
        Item.status == ItemStatus.LABELED.value,
    )
    human = _classes_by_item(
        session,
        select(Label.item_id, LabelValue.class_id)
        .outerjoin(LabelValue, LabelValue.label_id == Label.id)
        .where(Label.item_id.in_(audited), Label.is_current.is_(True)),
    )
    # the newest model label of each audited item: the auto-label the human checked
    newest_model = (
        select(Label.item_id, func.max(Label.id).label("label_id"))
        .where(Label.item_id.in_(audited), Label.source == LabelSource.MODEL)
        .group_by(Label.item_id)
        .subquery()
    )
    model = _classes_by_item(
        session,
        select(newest_model.c.item_id, LabelValue.class_id)
        .select_from(newest_model)
        .outerjoin(LabelValue, LabelValue.label_id == newest_model.c.label_id),
    )
    checked = [item_id for item_id in human if item_id in model]
    agreed = sum(1 for item_id in checked if human[item_id] == model[item_id])
    return len(checked), agreed


def _classes_by_item(session: Session, query: Select) -> dict[int, frozenset[int]]:
    found: dict[int, set[int]] = {}
    for item_id, class_id in session.execute(query):
        classes = found.setdefault(int(item_id), set())
        if class_id is not None:
            classes.add(int(class_id))
    return {item_id: frozenset(classes) for item_id, classes in found.items()}


# -- serving (called by labeling.next_batch) -------------------------------------------------------


@functools.cache
def audit_query(dialect: str) -> Select:
    """Pending audit items servable to ``annotator``, in ``random_key`` order."""
    now = bindparam("now", type_=Item.lease_until.type)
    annotator = bindparam("annotator", type_=Item.leased_by.type)
    mine = and_(Item.leased_by == annotator, Item.lease_until > now)
    query = (
        select(Item.id, mine)
        .where(
            Item.project_id == bindparam("project_id"),
            Item.audit_sample.is_(True),
            Item.status == ItemStatus.AUTO.value,
            or_(Item.lease_until.is_(None), Item.lease_until <= now, Item.leased_by == annotator),
        )
        .order_by(Item.random_key, Item.id)
        .limit(bindparam("limit", type_=Integer))
    )
    if dialect == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Item)
    return query
