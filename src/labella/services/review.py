"""The review queue: one queue for reviewers, whatever put an entry (a ``label_flag``) there.

Kinds of entries:

- ``suspect_label``: a human label the model confidently disagrees with (services.label_qa,
  after each training);
- ``disagreement``: the answers to an overlapped item differ (services.assignment); with a
  majority the item already carries the majority's label, without one it waits in ``in_review``;
- ``work_sample``: a random share (``project.review_sample_share``) of each annotator's labels,
  drawn when the label is made, so a reviewer sees a fair sample of everyone's work.

A reviewer approves the label in question (the flag is "kept") or changes it: the new label is a
human label by the reviewer, ``decided_by`` "reviewer", which supersedes the old one, so the
item's history keeps both; the flag records who decided, when, and the label it led to. The
decision, the new label and the audit event are one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from labella.errors import Conflict, InvalidInput, NotFound
from labella.services import labeling
from labella.services.assignment import DISAGREEMENT, live_answers
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    DecidedBy,
    FlagStatus,
    Item,
    ItemStatus,
    Label,
    LabelClass,
    LabelFlag,
    LabelKind,
    LabelSource,
    LabelValue,
    Project,
    ProjectKind,
    utcnow,
)

SUSPECT_LABEL = "suspect_label"  # services.label_qa.FLAG_KIND
WORK_SAMPLE = "work_sample"
KINDS = (SUSPECT_LABEL, DISAGREEMENT, WORK_SAMPLE)
STATUSES = ("open", "resolved", "all")
MAX_REVIEW_PAGE = 500
_ACTIONS = {"approve": FlagStatus.KEPT, "keep": FlagStatus.KEPT, "change": FlagStatus.CHANGED}


@dataclass(frozen=True)
class AnswerView:
    """One annotator's answer to an overlapped item (shown to reviewers only)."""

    annotator: str
    classes: list[labeling.ClassRef]
    skipped: bool
    created_at: datetime


@dataclass(frozen=True)
class ReviewFlag:
    id: int
    kind: str
    item_id: int
    text: str | None
    external_id: str | None
    media_uri: str | None
    item_status: str
    label_id: int | None  # None: a disagreement without a majority (no label yet)
    label_classes: list[labeling.ClassRef]
    label_skipped: bool
    annotator: str | None
    decided_by: str | None
    suggested_class: labeling.ClassRef | None
    score: float
    model_version_id: int | None
    answers: list[AnswerView]
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution_label_id: int | None


# -- the queue -------------------------------------------------------------------------------------
def parse_kinds(kinds: Sequence[str] | None) -> list[str] | None:
    """The kinds asked for (None or empty: all), each checked."""
    if not kinds:
        return None
    cleaned = [k.strip() for k in kinds if k.strip()]
    unknown = sorted({k for k in cleaned if k not in KINDS})
    if unknown:
        raise InvalidInput(
            f"unknown review kind {', '.join(map(repr, unknown))}; choose from {', '.join(KINDS)}"
        )
    return cleaned or None


def review_queue(
    db: Database,
    project_id: int,
    *,
    kinds: Sequence[str] | None = None,
    status: str = "open",
    annotator: str | None = None,
    limit: int = 50,
) -> list[ReviewFlag]:
    """Review entries, open ones most pressing first (their score: suspicion, or how split the
    answers are; work samples last), resolved ones newest first.

    An open entry whose label was changed since (by anyone) is no longer in question and is left
    out. ``annotator`` keeps the entries about that annotator's work: their label, or an item
    they answered."""
    if not 1 <= limit <= MAX_REVIEW_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_REVIEW_PAGE}, got {limit}")
    if status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    wanted = parse_kinds(kinds)
    with db.reader() as session:
        repo.get_project(session, project_id)
        query = _flag_rows().where(LabelFlag.project_id == project_id)
        if wanted is not None:
            query = query.where(LabelFlag.kind.in_(wanted))
        if annotator is not None:
            query = query.where(_about_annotator(annotator))
        if status == "open":
            query = query.where(LabelFlag.status == FlagStatus.OPEN, _still_in_question())
            query = query.order_by(LabelFlag.score.desc(), LabelFlag.id)
        else:
            if status == "resolved":
                query = query.where(LabelFlag.status != FlagStatus.OPEN)
            query = query.order_by(LabelFlag.resolved_at.desc().nulls_first(), LabelFlag.id.desc())
        rows = session.execute(query.limit(limit)).all()
        return _review_flags(session, project_id, rows)


def queue_counts(db: Database, project_id: int) -> dict[str, int]:
    """Open entries per kind (every kind present, zeros included)."""
    with db.reader() as session:
        repo.get_project(session, project_id)
        rows = session.execute(
            select(LabelFlag.kind, func.count())
            .select_from(LabelFlag)
            .join(Item, Item.id == LabelFlag.item_id)
            .outerjoin(Label, Label.id == LabelFlag.label_id)
            .where(
                LabelFlag.project_id == project_id,
                LabelFlag.status == FlagStatus.OPEN,
                _still_in_question(),
            )
            .group_by(LabelFlag.kind)
        ).all()
    counts = dict.fromkeys(KINDS, 0)
    counts.update({str(kind): int(n) for kind, n in rows})
    return counts


def item_flags(db: Database, project_id: int, item_id: int) -> list[ReviewFlag]:
    """Every entry an item ever had, newest first: the review side of its history."""
    with db.reader() as session:
        repo.get_item(session, project_id, item_id)
        rows = session.execute(
            _flag_rows()
            .where(LabelFlag.project_id == project_id, LabelFlag.item_id == item_id)
            .order_by(LabelFlag.id.desc())
        ).all()
        return _review_flags(session, project_id, rows)


def _still_in_question() -> Any:
    return or_(
        and_(LabelFlag.label_id.is_not(None), Label.is_current.is_(True)),
        and_(LabelFlag.label_id.is_(None), Item.status == ItemStatus.IN_REVIEW.value),
    )


def _about_annotator(annotator: str) -> Any:
    answer = aliased(Label)
    answered = exists().where(
        answer.item_id == LabelFlag.item_id,
        answer.kind == LabelKind.ANSWER.value,
        answer.annotator == annotator,
    )
    return or_(Label.annotator == annotator, answered)


# -- decisions -------------------------------------------------------------------------------------
def resolve_flag(
    db: Database,
    project_id: int,
    flag_id: int,
    *,
    action: str,
    classes: list[int | str] | None = None,
    reviewer: str = labeling.DEFAULT_ANNOTATOR,
) -> ReviewFlag:
    """Approve the label in question (``approve``, or its older name ``keep``) or ``change`` it
    to ``classes``: a new label by ``reviewer`` that supersedes it (both stay in the history).

    A disagreement without a majority has no label to approve; the reviewer gives the classes."""
    from labella.services import audit
    from labella.services.training import maybe_schedule_training

    reviewer = labeling.clean_annotator(reviewer)
    if action not in _ACTIONS:
        raise InvalidInput(f"action must be 'approve' ('keep') or 'change', got {action!r}")
    new_status = _ACTIONS[action]
    if new_status == FlagStatus.KEPT and classes:
        raise InvalidInput(f"'{action}' takes no classes; use action 'change' to give a new label")
    if new_status == FlagStatus.CHANGED and classes is None:
        raise InvalidInput("action 'change' needs the new label's classes (ids or names)")
    with db.transaction() as session:
        project = repo.get_project(session, project_id)
        if new_status == FlagStatus.CHANGED and project.kind == ProjectKind.OBJECT_DETECTION:
            # a label of classes only would replace the image's boxes with none
            raise Conflict(
                f"flag {flag_id}: an object-detection label is corrected in the box editor "
                "(PUT /api/projects/{id}/items/{item_id}/boxes), not by classes"
            )
        flag = _lock_open_flag(session, project_id, flag_id)
        item = labeling.lock_item(session, project_id, flag.item_id)
        _check_still_in_question(session, flag, item)
        if new_status == FlagStatus.KEPT:
            if flag.label_id is None:
                raise InvalidInput(
                    f"flag {flag_id}: the answers have no majority, so there is no label to "
                    "approve; give the classes with action 'change'"
                )
        else:
            assert classes is not None
            flag.resolution_label_id = _write_decision(
                session, project, item, flag, classes, reviewer
            )
        flag.status = new_status
        flag.resolved_at = utcnow()
        flag.resolved_by = reviewer
        if new_status == FlagStatus.CHANGED:
            maybe_schedule_training(session, project)
        audit.record(
            session,
            actor=reviewer,
            action=f"review.{'keep' if new_status == FlagStatus.KEPT else 'change'}",
            project_id=project_id,
            item_id=flag.item_id,
            detail={
                "flag_id": flag.id,
                "kind": flag.kind,
                "flagged_label_id": flag.label_id,
                "new_label_id": flag.resolution_label_id,
            },
        )
    return _one_flag(db, project_id, flag_id)


def _write_decision(
    session: Session,
    project: Project,
    item: Item,
    flag: LabelFlag,
    classes: list[int | str],
    reviewer: str,
) -> int:
    resolved = labeling.resolve_classes(project, classes)
    if flag.label_id is not None:
        old_ids = set(
            session.scalars(select(LabelValue.class_id).where(LabelValue.label_id == flag.label_id))
        )
        old_skipped = session.scalar(select(Label.skipped).where(Label.id == flag.label_id))
        if not old_skipped and {cls.id for cls in resolved} == old_ids:
            raise InvalidInput("the new classes equal the label in question; approve it instead")
    label = labeling.replace_current_label(
        session,
        item,
        Label(
            project_id=project.id,
            item_id=item.id,
            source=LabelSource.HUMAN,
            kind=LabelKind.LABEL,
            decided_by=DecidedBy.REVIEWER,
            skipped=False,
            annotator=reviewer,
            values=[LabelValue(class_id=cls.id) for cls in resolved],
        ),
        status=ItemStatus.LABELED,
    )
    return label.id


def _lock_open_flag(session: Session, project_id: int, flag_id: int) -> LabelFlag:
    flag = session.scalar(select(LabelFlag).where(LabelFlag.id == flag_id).with_for_update())
    if flag is None or flag.project_id != project_id:
        raise NotFound(f"flag {flag_id} does not exist in project {project_id}")
    if flag.status != FlagStatus.OPEN:
        raise Conflict(f"flag {flag_id} was already resolved ({flag.status} by {flag.resolved_by})")
    return flag


def _check_still_in_question(session: Session, flag: LabelFlag, item: Item) -> None:
    if flag.label_id is None:
        if item.status != ItemStatus.IN_REVIEW:
            raise Conflict(
                f"item {item.id} of flag {flag.id} was labeled since (status {item.status}); "
                "there is nothing left to decide"
            )
        return
    if not session.scalar(select(Label.is_current).where(Label.id == flag.label_id)):
        raise Conflict(
            f"the label flagged by flag {flag.id} was changed since it was flagged; "
            "the item's current label is not the one in question"
        )


# -- work samples ----------------------------------------------------------------------------------
def work_sample_draw(project_id: int, label_id: int) -> float:
    """A uniform number in [0, 1) fixed by the label, so the sample is reproducible."""
    digest = hashlib.blake2b(f"work-sample:{project_id}:{label_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64


def maybe_sample_work(session: Session, project: Project, label: Label) -> LabelFlag | None:
    """Queue a new human label for review with probability ``project.review_sample_share``
    (called in the labeling transaction)."""
    share = project.review_sample_share or 0.0
    if share <= 0 or label.source != LabelSource.HUMAN or label.skipped:
        return None
    if work_sample_draw(project.id, label.id) >= share:
        return None
    flag = LabelFlag(
        project_id=project.id,
        item_id=label.item_id,
        label_id=label.id,
        kind=WORK_SAMPLE,
        score=0.0,
        status=FlagStatus.OPEN,
    )
    session.add(flag)
    return flag


def check_sample_share(share: float | None) -> None:
    if share is not None and not (isinstance(share, int | float) and 0.0 <= share <= 1.0):
        raise InvalidInput(f"review_sample_share must be between 0 and 1, got {share!r}")


# -- shaping ---------------------------------------------------------------------------------------
def _one_flag(db: Database, project_id: int, flag_id: int) -> ReviewFlag:
    with db.reader() as session:
        repo.get_project(session, project_id)
        rows = session.execute(
            _flag_rows().where(LabelFlag.id == flag_id, LabelFlag.project_id == project_id)
        ).all()
        if not rows:
            raise NotFound(f"flag {flag_id} does not exist in project {project_id}")
        return _review_flags(session, project_id, rows)[0]


def _flag_rows() -> Any:
    return (
        select(
            LabelFlag,
            Item.text,
            Item.external_id,
            Item.media_uri,
            Item.status,
            Label.annotator,
            Label.decided_by,
            Label.skipped,
        )
        .join(Item, Item.id == LabelFlag.item_id)
        .outerjoin(Label, Label.id == LabelFlag.label_id)
    )


def _review_flags(session: Session, project_id: int, rows: Sequence[Any]) -> list[ReviewFlag]:
    names = dict(
        session.execute(
            select(LabelClass.id, LabelClass.name).where(LabelClass.project_id == project_id)
        ).all()
    )

    def ref(class_id: int) -> labeling.ClassRef:
        return labeling.ClassRef(id=class_id, name=names.get(class_id, f"#{class_id}"))

    label_ids = [row[0].label_id for row in rows if row[0].label_id is not None]
    values: dict[int, list[int]] = {}
    if label_ids:
        for label_id, class_id in session.execute(
            select(LabelValue.label_id, LabelValue.class_id).where(
                LabelValue.label_id.in_(label_ids)
            )
        ):
            values.setdefault(int(label_id), []).append(int(class_id))
    answers = {
        item_id: live_answers(session, item_id)
        for item_id in {row[0].item_id for row in rows if row[0].kind == DISAGREEMENT}
    }
    views = []
    for flag, text, external_id, media_uri, item_status, annotator, decided_by, skipped in rows:
        views.append(
            ReviewFlag(
                id=flag.id,
                kind=flag.kind,
                item_id=flag.item_id,
                text=text,
                external_id=external_id,
                media_uri=media_uri,
                item_status=item_status,
                label_id=flag.label_id,
                label_classes=[ref(c) for c in sorted(values.get(flag.label_id or 0, []))],
                label_skipped=bool(skipped),
                annotator=annotator,
                decided_by=decided_by,
                suggested_class=ref(flag.suggested_class_id)
                if flag.suggested_class_id is not None
                else None,
                score=float(flag.score),
                model_version_id=flag.model_version_id,
                answers=[
                    AnswerView(
                        annotator=a.annotator,
                        classes=[ref(c) for c in sorted(a.class_ids)],
                        skipped=a.skipped,
                        created_at=labeling.as_utc(a.created_at),
                    )
                    for a in answers.get(flag.item_id, [])
                ],
                status=flag.status,
                created_at=labeling.as_utc(flag.created_at),
                resolved_at=labeling.as_utc(flag.resolved_at) if flag.resolved_at else None,
                resolved_by=flag.resolved_by,
                resolution_label_id=flag.resolution_label_id,
            )
        )
    return views
