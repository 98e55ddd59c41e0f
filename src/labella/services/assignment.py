"""Overlap: a share of a project's items is answered by ``project.overlap`` annotators each, and
their answers decide the item's label.

Which items overlap is drawn reproducibly from the item id (:func:`drawn_for_overlap`: a
multiplicative hash, so that any run of consecutive items holds the configured share, whatever
order they are served in); an item that already holds answers or leases keeps overlapping after
the share changes. Evaluation-sample and auto-label audit items are labeled once (they are served
in their own slots, and each measures one human's answer against the model).

Serving. ``item.leased_by`` holds one name, so an overlapped item's leases are per annotator in
``item_assignment``: the item stays servable while fewer than ``k`` annotators answered it or hold
a live lease on it, and an annotator is never served an item they already answered. The serving
walks are the labeling queue's two index walks (priority, then random order) with the overlap
conditions added; on PostgreSQL the picked items are then checked again under their row locks, in
a statement of its own (READ COMMITTED gives each statement a fresh snapshot, and every writer of
an item's assignments holds the item's row lock first), so that two annotators racing for the
last place on an item cannot both get it.

Answers. Each answer is a ``label`` row of kind ``answer`` (never current); an annotator who
answers again replaces their answer (the old one stays, superseded). When the ``k``-th answer
arrives the label is decided: every answer alike is a consensus, more than half alike a majority
(a skip counts as an answer, so a majority of skips skips the item); either becomes the item's
current label with ``decided_by``. Any disagreement also opens a "disagreement" review flag; with
no majority the item waits in status ``in_review`` for a reviewer (services.review). Answers that
arrive after the decision are kept as answers (they count for agreement) and change nothing.

Annotators never see each other's answers before they answer: the queue shows the item and the
model's prediction only, and item views hide other annotators' answers
(:func:`visible_answer_filter`).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from labella.errors import InvalidInput
from labella.storage.models import (
    DecidedBy,
    FlagStatus,
    Item,
    ItemAssignment,
    ItemStatus,
    Label,
    LabelClass,
    LabelFlag,
    LabelKind,
    LabelSource,
    LabelValue,
    Project,
    utcnow,
)

MAX_OVERLAP = 20
DISAGREEMENT = "disagreement"
# Knuth's multiplicative hash on 16 bits (2^16 / golden ratio): consecutive ids land evenly spread
# over [0, 2^16), so every stretch of items holds the configured share.
_HASH_MULTIPLIER = 40503
_HASH_SPACE = 1 << 16
# answers are decided on these statuses; any other means the item already has its label
_OPEN_STATUSES = (ItemStatus.UNLABELED.value, ItemStatus.AUTO.value)
_SKIP = "skip"


@dataclass(frozen=True)
class Overlap:
    """A project's overlap setting: ``k`` annotators for a ``share`` of the items."""

    project_id: int
    k: int
    share: float

    @property
    def cut(self) -> int:
        return round(self.share * _HASH_SPACE)


def check_overlap_settings(overlap: int | None, share: float | None) -> None:
    if overlap is not None and not (
        isinstance(overlap, int) and not isinstance(overlap, bool) and 1 <= overlap <= MAX_OVERLAP
    ):
        raise InvalidInput(
            f"overlap must be a whole number of annotators per item between 1 (no overlap) "
            f"and {MAX_OVERLAP}, got {overlap!r}"
        )
    if share is not None and not (isinstance(share, int | float) and 0.0 <= share <= 1.0):
        raise InvalidInput(f"overlap_share must be between 0 and 1, got {share!r}")


def project_overlap(session: Session, project_id: int) -> Overlap | None:
    """The project's overlap, or None when every item is labeled once. A share of 0 still
    counts: items that collected answers before it was set keep collecting them."""
    row = session.execute(
        select(Project.overlap, Project.overlap_share).where(Project.id == project_id)
    ).first()
    if row is None or row.overlap <= 1:
        return None
    return Overlap(project_id=project_id, k=int(row.overlap), share=float(row.overlap_share))


def drawn_for_overlap(item_id: int, share: float) -> bool:
    """Whether the share ``share`` of items that overlap includes this item (the same test the
    serving walks make in SQL)."""
    return (item_id * _HASH_MULTIPLIER) % _HASH_SPACE < round(share * _HASH_SPACE)


def _drawn_sql(cut: Any) -> ColumnElement[bool]:
    # BIGINT: on PostgreSQL id * 40503 overflows a 32-bit integer from id 53,000 on
    return and_(
        Item.eval_sample.is_(False),
        Item.audit_sample.is_(False),
        (cast(Item.id, BigInteger) * _HASH_MULTIPLIER) % _HASH_SPACE < cut,
    )


# -- serving ---------------------------------------------------------------------------------------
@functools.cache
def overlap_queue_queries(dialect: str) -> tuple[Select, Select]:
    """The labeling queue's two walks (``labeling.queue_queries``) for a project with overlap.
    Extra parameters: ``overlap`` (k) and ``overlap_cut`` (:attr:`Overlap.cut`)."""
    now = bindparam("now", type_=Item.lease_until.type)
    annotator = bindparam("annotator", type_=Item.leased_by.type)
    assignment = ItemAssignment
    has_assignment = exists().where(assignment.item_id == Item.id)
    overlapped = or_(_drawn_sql(bindparam("overlap_cut", type_=Integer)), has_assignment)
    answered_by_me = exists().where(
        assignment.item_id == Item.id,
        assignment.annotator == annotator,
        assignment.answered_at.is_not(None),
    )
    taken_by_others = (
        select(func.count())
        .where(
            assignment.item_id == Item.id,
            or_(
                assignment.answered_at.is_not(None),
                and_(assignment.lease_until > now, assignment.annotator != annotator),
            ),
        )
        .scalar_subquery()
    )
    my_live_assignment = exists().where(
        assignment.item_id == Item.id,
        assignment.annotator == annotator,
        assignment.answered_at.is_(None),
        assignment.lease_until > now,
    )
    mine = or_(and_(Item.leased_by == annotator, Item.lease_until > now), my_live_assignment)
    servable = select(Item.id, mine).where(
        Item.project_id == bindparam("project_id"),
        Item.status == ItemStatus.UNLABELED.value,
        Item.eval_sample.is_(False),
        # an item-level lease (an item served before the project overlapped) still holds
        or_(Item.lease_until.is_(None), Item.lease_until <= now, Item.leased_by == annotator),
        or_(
            not_(overlapped),
            and_(not_(answered_by_me), taken_by_others < bindparam("overlap", type_=Integer)),
        ),
    )
    ranked = servable.where(Item.priority.is_not(None)).order_by(
        Item.priority.desc(), Item.id.desc()
    )
    unranked = servable.where((Item.priority + 0).is_(None)).order_by(Item.random_key, Item.id)
    limit = bindparam("limit", type_=Integer)
    ranked, unranked = ranked.limit(limit), unranked.limit(limit)
    if dialect == "postgresql":
        ranked = ranked.with_for_update(skip_locked=True, of=Item)
        unranked = unranked.with_for_update(skip_locked=True, of=Item)
    return ranked, unranked


def lease_next(
    session: Session,
    overlap: Overlap,
    *,
    n: int,
    annotator: str,
    now: datetime,
    lease_until: datetime,
    eval_every: int,
) -> list[tuple[int, bool]]:
    """Pick and lease up to ``n`` items for ``annotator`` in a project with overlap: (item id,
    already leased to them) in queue order. Overlapped items are leased in ``item_assignment``,
    the others on the item as usual."""
    kept: list[tuple[int, bool]] = []
    overlapped: set[int] = set()
    refused: set[int] = set()
    # A pick refused on the re-check (a race lost on PostgreSQL) is replaced by walking again;
    # the next statement's snapshot already sees the winner's lease.
    for _ in range(3):
        seen = {item_id for item_id, _ in kept} | refused
        n_refused = len(refused)
        candidates = [
            (item_id, mine)
            for item_id, mine in _walk(
                session, overlap, n=n + len(seen), annotator=annotator, now=now, every=eval_every
            )
            if item_id not in seen
        ][: n - len(kept)]
        if not candidates:
            break
        verdicts = _recheck(session, overlap, [i for i, _ in candidates], annotator, now)
        for item_id, mine in candidates:
            verdict = verdicts[item_id]
            if verdict == "refuse":
                refused.add(item_id)
                continue
            if verdict == "overlap":
                overlapped.add(item_id)
            kept.append((item_id, mine))
        if len(kept) >= n or len(refused) == n_refused:
            break
    single = [item_id for item_id, _ in kept if item_id not in overlapped]
    if single:
        session.execute(
            update(Item)
            .where(Item.id.in_(single))
            .values(lease_until=lease_until, leased_by=annotator)
            .execution_options(synchronize_session=False)
        )
    _lease_assignments(session, overlap.project_id, sorted(overlapped), annotator, lease_until)
    return kept


def _walk(
    session: Session, overlap: Overlap, *, n: int, annotator: str, now: datetime, every: int
) -> list[tuple[int, bool]]:
    ranked, unranked = overlap_queue_queries(session.get_bind().dialect.name)
    params: dict[str, Any] = {
        "project_id": overlap.project_id,
        "annotator": annotator,
        "now": now,
        "overlap": overlap.k,
        "overlap_cut": overlap.cut,
    }
    # as labeling._pick_queue_ids: pending auto-label audit items first (the user asked for them)
    from labella.services.autolabel_audit import audit_query

    plain = {k: params[k] for k in ("project_id", "annotator", "now")}
    audit = [
        (int(i), bool(m))
        for i, m in session.execute(
            audit_query(session.get_bind().dialect.name), {**plain, "limit": n}
        )
    ]
    if len(audit) >= n:
        return audit
    n -= len(audit)
    picked = [(int(i), bool(m)) for i, m in session.execute(ranked, {**params, "limit": n})]
    if len(picked) < n:
        picked += [
            (int(i), bool(m))
            for i, m in session.execute(unranked, {**params, "limit": n - len(picked)})
        ]
    if every > 0:
        from labella.services.evaluation import interleave_eval_items

        picked = interleave_eval_items(
            session, overlap.project_id, picked, n=n, every=every, params=plain
        )
    return audit + picked


def _recheck(
    session: Session, overlap: Overlap, item_ids: list[int], annotator: str, now: datetime
) -> dict[int, str]:
    """For items this transaction holds locked: "single" (label once), "overlap" (one of its
    ``k`` places is free for ``annotator``) or "refuse" (answered by them, or no place left)."""
    labeled_once = set(
        session.scalars(
            select(Item.id).where(
                Item.id.in_(item_ids), or_(Item.eval_sample.is_(True), Item.audit_sample.is_(True))
            )
        )
    )
    per_item: dict[int, list[Any]] = {item_id: [] for item_id in item_ids}
    for row in session.execute(
        select(
            ItemAssignment.item_id,
            ItemAssignment.annotator,
            ItemAssignment.lease_until,
            ItemAssignment.answered_at,
        ).where(ItemAssignment.item_id.in_(item_ids))
    ):
        per_item[int(row.item_id)].append(row)
    verdicts: dict[int, str] = {}
    for item_id, rows in per_item.items():
        drawn = item_id not in labeled_once and drawn_for_overlap(item_id, overlap.share)
        if not rows and not drawn:
            verdicts[item_id] = "single"
            continue
        if any(r.annotator == annotator and r.answered_at is not None for r in rows):
            verdicts[item_id] = "refuse"
            continue
        taken = sum(
            1
            for r in rows
            if r.answered_at is not None
            or (
                r.annotator != annotator
                and r.lease_until is not None
                and _after(r.lease_until, now)
            )
        )
        verdicts[item_id] = "overlap" if taken < overlap.k else "refuse"
    return verdicts


def _after(moment: datetime, now: datetime) -> bool:
    from labella.services.labeling import as_utc

    return as_utc(moment) > now


def _lease_assignments(
    session: Session, project_id: int, item_ids: list[int], annotator: str, lease_until: datetime
) -> None:
    if not item_ids:
        return
    existing = set(
        session.scalars(
            select(ItemAssignment.item_id).where(
                ItemAssignment.item_id.in_(item_ids), ItemAssignment.annotator == annotator
            )
        )
    )
    if existing:
        session.execute(
            update(ItemAssignment)
            .where(
                ItemAssignment.item_id.in_(existing),
                ItemAssignment.annotator == annotator,
                ItemAssignment.answered_at.is_(None),
            )
            .values(lease_until=lease_until)
            .execution_options(synchronize_session=False)
        )
    fresh = [item_id for item_id in item_ids if item_id not in existing]
    if fresh:
        session.add_all(
            ItemAssignment(
                project_id=project_id, item_id=item_id, annotator=annotator, lease_until=lease_until
            )
            for item_id in fresh
        )
        session.flush()


def served_to(session: Session, item_id: int, annotator: str, now: datetime) -> bool:
    """Whether ``annotator`` holds a live lease on the overlapped item, or answered it."""
    row = session.execute(
        select(ItemAssignment.lease_until, ItemAssignment.answered_at).where(
            ItemAssignment.item_id == item_id, ItemAssignment.annotator == annotator
        )
    ).first()
    if row is None:
        return False
    return row.answered_at is not None or (
        row.lease_until is not None and _after(row.lease_until, now)
    )


# -- answers ---------------------------------------------------------------------------------------
def takes_answer(session: Session, project: Project, item: Item, annotator: str) -> bool:
    """Whether ``annotator``'s answer for the locked ``item`` is one of several that decide its
    label (overlap) rather than the label itself.

    Until the label is decided every answer counts. Afterwards only those the item was served to
    still answer (a late answer, kept for agreement); anyone else changes the decided label like
    any item's (a reviewer or manager correcting it)."""
    places = session.scalars(
        select(ItemAssignment.annotator).where(ItemAssignment.item_id == item.id)
    ).all()
    drawn = (
        project.overlap > 1
        and not item.eval_sample
        and not item.audit_sample
        and drawn_for_overlap(item.id, project.overlap_share)
    )
    if not places and not drawn:
        return False
    return item.status in _OPEN_STATUSES or annotator in places


@dataclass(frozen=True)
class AnswerOutcome:
    """What recording an answer did: the answer row, and the label decided now (if any)."""

    answer: Label
    decided: Label | None
    item_status: str


def record_answer(
    session: Session,
    project: Project,
    item: Item,
    *,
    classes: Sequence[LabelClass] | None,
    annotator: str,
    request_id: str | None,
) -> AnswerOutcome:
    """Record ``annotator``'s answer (``classes``, or None for a skip) to an overlapped item the
    caller holds locked (see :func:`takes_answer`), and decide its label when this is the
    ``k``-th answer.

    An annotator who answered the item before replaces their answer; one who never did takes a
    place. An answer that arrives after the decision is kept and changes nothing."""
    now = utcnow()
    session.execute(
        update(Label)
        .where(
            Label.item_id == item.id,
            Label.kind == LabelKind.ANSWER.value,
            Label.annotator == annotator,
            Label.superseded_at.is_(None),
        )
        .values(superseded_at=now)
        .execution_options(synchronize_session=False)
    )
    answer = Label(
        project_id=project.id,
        item_id=item.id,
        source=LabelSource.HUMAN,
        kind=LabelKind.ANSWER,
        skipped=classes is None,
        annotator=annotator,
        request_id=request_id,
        is_current=False,
        created_at=now,
        values=[LabelValue(class_id=cls.id) for cls in classes or []],
    )
    session.add(answer)
    _mark_answered(session, project.id, item.id, annotator, now)
    session.flush()
    decided = None
    if item.status in _OPEN_STATUSES:
        answers = live_answers(session, item.id)
        if len(answers) >= max(project.overlap, 1):
            decided = decide_item(session, project, item, answers)
    return AnswerOutcome(answer=answer, decided=decided, item_status=item.status)


def _mark_answered(
    session: Session, project_id: int, item_id: int, annotator: str, now: datetime
) -> None:
    done = session.execute(
        update(ItemAssignment)
        .where(ItemAssignment.item_id == item_id, ItemAssignment.annotator == annotator)
        .values(answered_at=now, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        # answered without being served (a reviewer labeling from the items table): a place
        session.add(
            ItemAssignment(
                project_id=project_id, item_id=item_id, annotator=annotator, answered_at=now
            )
        )


@dataclass(frozen=True)
class Answer:
    label_id: int
    annotator: str
    skipped: bool
    class_ids: frozenset[int]
    created_at: datetime

    @property
    def choice(self) -> frozenset[int] | str:
        """What the answer votes for: its set of classes, or the skip."""
        return _SKIP if self.skipped else self.class_ids


def live_answers(session: Session, item_id: int) -> list[Answer]:
    """Each annotator's latest answer to the item, oldest first."""
    rows = session.execute(
        select(Label.id, Label.annotator, Label.skipped, Label.created_at, LabelValue.class_id)
        .outerjoin(LabelValue, LabelValue.label_id == Label.id)
        .where(
            Label.item_id == item_id,
            Label.kind == LabelKind.ANSWER.value,
            Label.superseded_at.is_(None),
        )
        .order_by(Label.id)
    ).all()
    return _group_answers(rows)


def _group_answers(rows: Sequence[Any]) -> list[Answer]:
    grouped: dict[int, tuple[Any, set[int]]] = {}
    for row in rows:
        entry = grouped.setdefault(int(row.id), (row, set()))
        if row.class_id is not None:
            entry[1].add(int(row.class_id))
    return [
        Answer(
            label_id=label_id,
            annotator=str(row.annotator),
            skipped=bool(row.skipped),
            class_ids=frozenset(classes),
            created_at=row.created_at,
        )
        for label_id, (row, classes) in grouped.items()
    ]


@dataclass(frozen=True)
class Vote:
    """The outcome of a vote over answers: the winning choice (a class set, the skip, or None
    when no choice has more than half the answers), how it was decided, and the share of answers
    behind the most common choice."""

    choice: frozenset[int] | str | None
    decided_by: DecidedBy | None
    top_share: float


def vote(choices: Sequence[frozenset[int] | str]) -> Vote:
    """Consensus when every answer agrees, majority when more than half do, else no decision.
    Ties between equally common choices never decide (two against two is not a majority)."""
    if not choices:
        raise ValueError("a vote needs at least one answer")
    counts = Counter(choices).most_common()
    top_choice, top = counts[0]
    share = top / len(choices)
    if top == len(choices):
        return Vote(top_choice, DecidedBy.CONSENSUS, share)
    if 2 * top > len(choices):
        return Vote(top_choice, DecidedBy.MAJORITY, share)
    return Vote(None, None, share)


def decide_item(
    session: Session, project: Project, item: Item, answers: Sequence[Answer]
) -> Label | None:
    """Give the locked ``item`` the label its answers decide, open a disagreement flag when they
    differ, and put it in review when there is no majority. Returns the new label, if any."""
    from labella.services.labeling import replace_current_label

    outcome = vote([a.choice for a in answers])
    label = None
    if outcome.choice is not None:
        skipped = outcome.choice == _SKIP
        class_ids = sorted(outcome.choice) if isinstance(outcome.choice, frozenset) else []
        label = replace_current_label(
            session,
            item,
            Label(
                project_id=project.id,
                item_id=item.id,
                source=LabelSource.HUMAN,
                kind=LabelKind.LABEL,
                decided_by=outcome.decided_by,
                skipped=skipped,
                annotator=None,
                values=[LabelValue(class_id=c) for c in class_ids],
            ),
            status=ItemStatus.SKIPPED if skipped else ItemStatus.LABELED,
        )
    else:
        # no label yet: a model label the item may carry is superseded, the reviewer decides
        session.execute(
            update(Label)
            .where(Label.item_id == item.id, Label.is_current.is_(True))
            .values(is_current=False, superseded_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        item.status = ItemStatus.IN_REVIEW
        item.lease_until = None
        item.leased_by = None
    if outcome.decided_by != DecidedBy.CONSENSUS:
        session.add(
            LabelFlag(
                project_id=project.id,
                item_id=item.id,
                label_id=label.id if label is not None else None,
                kind=DISAGREEMENT,
                # the more split the answers, the sooner a reviewer should look
                score=1.0 - outcome.top_share,
                status=FlagStatus.OPEN,
            )
        )
    session.flush()
    return label


def settle_pending(session: Session, project: Project) -> int:
    """After the project's overlap changed: decide the items that now have enough answers; with
    no overlap left, drop the unanswered per-annotator leases (items are leased on the item
    again). Returns how many items were decided."""
    k = max(project.overlap, 1)
    if project.overlap <= 1:
        session.execute(
            delete(ItemAssignment).where(
                ItemAssignment.project_id == project.id, ItemAssignment.answered_at.is_(None)
            )
        )
    ready = session.scalars(
        select(Label.item_id)
        .join(Item, Item.id == Label.item_id)
        .where(
            Label.project_id == project.id,
            Label.kind == LabelKind.ANSWER.value,
            Label.superseded_at.is_(None),
            Item.status.in_(_OPEN_STATUSES),
        )
        .group_by(Label.item_id)
        .having(func.count() >= k)
    ).all()
    decided = 0
    for item_id in ready:
        item = session.scalar(select(Item).where(Item.id == item_id).with_for_update())
        if item is None or item.status not in _OPEN_STATUSES:
            continue
        decide_item(session, project, item, live_answers(session, item.id))
        decided += 1
    return decided


def visible_answer_filter(viewer: str) -> ColumnElement[bool]:
    """Label rows ``viewer`` may see in an item's history when they may only see their own
    work: every label of the item, but of the answers only their own."""
    return or_(Label.kind != LabelKind.ANSWER.value, Label.annotator == viewer)
