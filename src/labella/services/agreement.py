"""Inter-annotator agreement of a project and the annotator dashboard.

Agreement is measured on the overlap answers (services.assignment): every item at least two
annotators answered is a unit, each annotator a coder, their latest answer the rating; skips are
left out (a skip says nothing about the class). The coefficients are labella.quality.agreement's:
percent agreement, Cohen's kappa per annotator pair, Fleiss' kappa and Krippendorff's alpha over
everyone. Multi-label projects: kappa and alpha are computed per class (present or absent) and
averaged over the classes; percent agreement counts an item as agreed when the whole class sets
are equal (per-class percent agreement would be inflated by every class both left out).

The dashboard: per annotator, how much they label (in total, and per hour of work lately), how
often they agree with the others on shared items, and how often review outcomes side with them.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labella.errors import InvalidInput
from labella.quality import agreement as coef
from labella.services.labeling import as_utc
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    FlagStatus,
    Label,
    LabelFlag,
    LabelKind,
    LabelSource,
    LabelValue,
    Project,
    utcnow,
)

# A pause longer than this between two labels is a break, not labeling time.
IDLE_GAP = timedelta(minutes=5)
MAX_WINDOW_HOURS = 24 * 90
_SKIP = "skip"

Choice = frozenset[int] | str  # a class set, or the skip


@dataclass(frozen=True)
class PairAgreement:
    annotator_a: str
    annotator_b: str
    items: int  # items both answered (skips left out)
    percent_agreement: float | None
    cohen_kappa: float | None


@dataclass(frozen=True)
class ProjectAgreement:
    project_id: int
    multi_label: bool
    items: int  # items with at least two answers (skips left out)
    annotators: int
    answers: int
    percent_agreement: float | None
    fleiss_kappa: float | None
    krippendorff_alpha: float | None
    pairs: list[PairAgreement]
    decided_by: dict[str, int]  # current labels of overlapped items by how they were decided
    in_review: int  # overlapped items waiting for a reviewer


@dataclass(frozen=True)
class AnnotatorStats:
    annotator: str
    labels: int  # labels and answers given, skips not counted
    skips: int
    recent_labels: int  # labels and answers in the window
    active_hours: float  # labeling time in the window (pauses over IDLE_GAP left out)
    labels_per_hour: float | None
    last_active: datetime | None
    shared_items: int  # overlapped items they and someone else answered
    agreement_with_others: float | None  # share of (item, other annotator) pairs agreeing
    kappa_with_others: float | None  # Cohen's kappa of them against the others, same pairs
    reviewed: int  # their labels or answers a reviewer has decided on
    agreement_with_review: float | None  # share of those the review outcome agreed with


# -- loading ---------------------------------------------------------------------------------------
def _answers(session: Session, project_id: int) -> dict[int, dict[str, Choice]]:
    """item id -> annotator -> their latest answer."""
    rows = session.execute(
        select(Label.id, Label.item_id, Label.annotator, Label.skipped, LabelValue.class_id)
        .outerjoin(LabelValue, LabelValue.label_id == Label.id)
        .where(
            Label.project_id == project_id,
            Label.kind == LabelKind.ANSWER.value,
            Label.superseded_at.is_(None),
        )
        .order_by(Label.id)
    ).all()
    classes: dict[int, set[int]] = defaultdict(set)
    meta: dict[int, tuple[int, str, bool]] = {}
    for label_id, item_id, annotator, skipped, class_id in rows:
        meta[int(label_id)] = (int(item_id), str(annotator), bool(skipped))
        if class_id is not None:
            classes[int(label_id)].add(int(class_id))
    out: dict[int, dict[str, Choice]] = defaultdict(dict)
    for label_id, (item_id, annotator, skipped) in meta.items():
        out[item_id][annotator] = _SKIP if skipped else frozenset(classes.get(label_id, ()))
    return dict(out)


def _rated(answers: dict[int, dict[str, Choice]]) -> dict[int, dict[str, frozenset[int]]]:
    """Units for agreement: per item the non-skip answers, items with at least two of them."""
    rated: dict[int, dict[str, frozenset[int]]] = {}
    for item_id, by_annotator in answers.items():
        sets = {a: c for a, c in by_annotator.items() if isinstance(c, frozenset)}
        if len(sets) >= 2:
            rated[item_id] = sets
    return rated


# -- project agreement -----------------------------------------------------------------------------
def project_agreement(db: Database, project_id: int) -> ProjectAgreement:
    """Agreement over everyone, and per annotator pair (pairs that share no item left out)."""
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        rated = _rated(_answers(session, project_id))
        decided = dict(
            session.execute(
                select(Label.decided_by, func.count())
                .where(
                    Label.project_id == project_id,
                    Label.is_current.is_(True),
                    Label.decided_by.is_not(None),
                )
                .group_by(Label.decided_by)
            ).all()
        )
        in_review = repo.count_items_by_status(session, project_id).get("in_review", 0)
    class_ids = [c.id for c in sorted(project.classes, key=lambda c: c.position)]
    annotators = sorted({a for sets in rated.values() for a in sets})
    table = _Table(rated, annotators, class_ids, multi_label=project.multi_label)
    pairs = []
    for a, b in itertools.combinations(range(len(annotators)), 2):
        both = table.both(a, b)
        if not both.any():
            continue
        pairs.append(
            PairAgreement(
                annotator_a=annotators[a],
                annotator_b=annotators[b],
                items=int(both.sum()),
                percent_agreement=_finite(coef.percent_agreement(table.codes[both][:, [a, b]])),
                cohen_kappa=_finite(table.pair_kappa(a, b)),
            )
        )
    return ProjectAgreement(
        project_id=project_id,
        multi_label=project.multi_label,
        items=len(rated),
        annotators=len(annotators),
        answers=sum(len(sets) for sets in rated.values()),
        percent_agreement=_finite(coef.percent_agreement(table.codes)),
        fleiss_kappa=_finite(table.overall(coef.fleiss_kappa_ratings)),
        krippendorff_alpha=_finite(table.overall(coef.krippendorff_alpha)),
        pairs=pairs,
        decided_by={str(k): int(v) for k, v in decided.items()},
        in_review=int(in_review),
    )


class _Table:
    """The answers as reliability matrices: ``codes`` (items x annotators; a class index, or a
    class-set index for multi-label) and, for multi-label, ``present`` (items x annotators x
    classes, 1/0, MISSING where the annotator did not answer)."""

    def __init__(
        self,
        rated: dict[int, dict[str, frozenset[int]]],
        annotators: list[str],
        class_ids: list[int],
        *,
        multi_label: bool,
    ) -> None:
        self.multi_label = multi_label
        column = {a: j for j, a in enumerate(annotators)}
        position = {c: i for i, c in enumerate(class_ids)}
        set_codes: dict[frozenset[int], int] = {}
        self.codes = np.full((len(rated), len(annotators)), coef.MISSING, dtype=np.int64)
        self.present = np.full(
            (len(rated), len(annotators), len(class_ids) if multi_label else 0),
            coef.MISSING,
            dtype=np.int64,
        )
        for row, sets in enumerate(rated.values()):
            for annotator, classes in sets.items():
                j = column[annotator]
                if multi_label:
                    self.codes[row, j] = set_codes.setdefault(classes, len(set_codes))
                    self.present[row, j, :] = 0
                    for c in classes:
                        if c in position:
                            self.present[row, j, position[c]] = 1
                else:
                    # a single-label answer has one class; a class deleted since has no position
                    first = min(classes, default=None)
                    if first is not None and first in position:
                        self.codes[row, j] = position[first]

    def both(self, a: int, b: int) -> np.ndarray:
        return (self.codes[:, a] != coef.MISSING) & (self.codes[:, b] != coef.MISSING)

    def overall(self, coefficient: Any) -> float:
        if self.multi_label:
            return coef.per_class_mean(self.present, coefficient)
        return float(coefficient(self.codes))

    def pair_kappa(self, a: int, b: int) -> float:
        if self.multi_label:
            return coef.per_class_mean(
                self.present[:, [a, b], :], lambda m: coef.cohen_kappa(m[:, 0], m[:, 1])
            )
        return coef.cohen_kappa(self.codes[:, a], self.codes[:, b])


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


# -- the annotator dashboard -----------------------------------------------------------------------
def annotator_stats(
    db: Database,
    project_id: int,
    *,
    window_hours: float = 24.0,
    only: str | None = None,
    now: datetime | None = None,
) -> list[AnnotatorStats]:
    """Per annotator (everyone who labeled, answered or was reviewed in the project; just
    ``only`` when given), busiest first.

    ``labels_per_hour`` is the pace while labeling: the labels of the last ``window_hours`` over
    the time between them, pauses longer than :data:`IDLE_GAP` left out; None with fewer than two
    labels in the window."""
    if not (isinstance(window_hours, int | float) and 0 < window_hours <= MAX_WINDOW_HOURS):
        raise InvalidInput(
            f"window_hours must be more than 0 and at most {MAX_WINDOW_HOURS}, got {window_hours!r}"
        )
    now = now or utcnow()
    since = now - timedelta(hours=window_hours)
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        totals = _label_totals(session, project_id, only)
        recent = _recent_times(session, project_id, since, only)
        answers = _answers(session, project_id)
        outcomes = _review_outcomes(session, project, answers)
    others = _agreement_with_others(_rated(answers))
    names = set(totals) | set(outcomes) | set(others)
    if only is not None:
        names &= {only}
    stats = []
    for name in names:
        labels, skips, last = totals.get(name, (0, 0, None))
        times = recent.get(name, [])
        active = _active_seconds(times)
        agree, kappa, shared = others.get(name, (None, None, 0))
        reviewed = outcomes.get(name, [])
        stats.append(
            AnnotatorStats(
                annotator=name,
                labels=labels,
                skips=skips,
                recent_labels=len(times),
                active_hours=active / 3600,
                labels_per_hour=(len(times) - 1) * 3600 / active if active > 0 else None,
                last_active=as_utc(last) if last is not None else None,
                shared_items=shared,
                agreement_with_others=agree,
                kappa_with_others=kappa,
                reviewed=len(reviewed),
                agreement_with_review=sum(reviewed) / len(reviewed) if reviewed else None,
            )
        )
    stats.sort(key=lambda s: (-s.labels, s.annotator))
    return stats


def _human_labels(project_id: int, only: str | None) -> Any:
    conditions = [
        Label.project_id == project_id,
        Label.source == LabelSource.HUMAN.value,
        Label.annotator.is_not(None),
    ]
    if only is not None:
        conditions.append(Label.annotator == only)
    return conditions


def _label_totals(
    session: Session, project_id: int, only: str | None
) -> dict[str, tuple[int, int, datetime | None]]:
    rows = session.execute(
        select(Label.annotator, Label.skipped, func.count(), func.max(Label.created_at))
        .where(*_human_labels(project_id, only))
        .group_by(Label.annotator, Label.skipped)
    ).all()
    totals: dict[str, tuple[int, int, datetime | None]] = {}
    for annotator, skipped, n, last in rows:
        name = str(annotator)
        labels, skips, seen = totals.get(name, (0, 0, None))
        if skipped:
            skips += int(n)
        else:
            labels += int(n)
        last = as_utc(last) if last is not None else None
        totals[name] = (labels, skips, max(filter(None, (seen, last)), default=None))
    return totals


def _recent_times(
    session: Session, project_id: int, since: datetime, only: str | None
) -> dict[str, list[datetime]]:
    rows = session.execute(
        select(Label.annotator, Label.created_at)
        .where(*_human_labels(project_id, only), Label.created_at >= since)
        .where(Label.skipped.is_(False))
        .order_by(Label.annotator, Label.created_at)
    ).all()
    times: dict[str, list[datetime]] = defaultdict(list)
    for annotator, created_at in rows:
        times[str(annotator)].append(as_utc(created_at))
    return times


def _active_seconds(times: Sequence[datetime]) -> float:
    """Labeling time: the gaps between consecutive labels, each counted up to IDLE_GAP."""
    cap = IDLE_GAP.total_seconds()
    return sum(
        min((later - earlier).total_seconds(), cap) for earlier, later in itertools.pairwise(times)
    )


def _agreement_with_others(
    rated: dict[int, dict[str, frozenset[int]]],
) -> dict[str, tuple[float | None, float | None, int]]:
    """annotator -> (share of agreeing (item, other) pairs, Cohen's kappa of the annotator's
    answers against the others' over those pairs, shared items)."""
    pairs: dict[str, list[tuple[frozenset[int], frozenset[int]]]] = defaultdict(list)
    shared: dict[str, int] = defaultdict(int)
    for sets in rated.values():
        for annotator, mine in sets.items():
            shared[annotator] += 1
            pairs[annotator].extend((mine, theirs) for a, theirs in sets.items() if a != annotator)
    out: dict[str, tuple[float | None, float | None, int]] = {}
    for annotator, compared in pairs.items():
        codes: dict[frozenset[int], int] = {}
        mine_codes = [codes.setdefault(m, len(codes)) for m, _ in compared]
        their_codes = [codes.setdefault(t, len(codes)) for _, t in compared]
        agree = float(np.mean([m == t for m, t in compared]))
        kappa = _finite(coef.cohen_kappa(mine_codes, their_codes))
        out[annotator] = (agree, kappa, shared[annotator])
    return out


def _review_outcomes(
    session: Session, project: Project, answers: dict[int, dict[str, Choice]]
) -> dict[str, list[bool]]:
    """annotator -> for each decided review entry about their work, whether the outcome agreed
    with them: their flagged label approved (or their answer equal to the label the reviewer
    approved or gave)."""
    flags = session.execute(
        select(
            LabelFlag.kind,
            LabelFlag.status,
            LabelFlag.item_id,
            LabelFlag.label_id,
            LabelFlag.resolution_label_id,
            Label.annotator,
        )
        .outerjoin(Label, Label.id == LabelFlag.label_id)
        .where(LabelFlag.project_id == project.id, LabelFlag.status != FlagStatus.OPEN)
    ).all()
    outcome_ids = {int(i) for i in map(_outcome_label_id, flags) if i is not None}
    outcome_choice = _choices(session, outcome_ids)
    results: dict[str, list[bool]] = defaultdict(list)
    for flag in flags:
        outcome_id = _outcome_label_id(flag)
        item_answers = answers.get(int(flag.item_id), {})
        if item_answers:
            # an overlapped item: each answer is judged against the label the review settled on
            if outcome_id is None or int(outcome_id) not in outcome_choice:
                continue
            settled = outcome_choice[int(outcome_id)]
            for annotator, choice in item_answers.items():
                results[annotator].append(choice == settled)
        elif flag.annotator is not None:
            results[str(flag.annotator)].append(flag.status == FlagStatus.KEPT)
    return results


def _outcome_label_id(flag: Any) -> int | None:
    """The label a resolved review entry settled on: the reviewer's new one, or the approved."""
    return flag.resolution_label_id if flag.status == FlagStatus.CHANGED else flag.label_id


def _choices(session: Session, label_ids: Iterable[int]) -> dict[int, Choice]:
    ids = list(label_ids)
    if not ids:
        return {}
    skipped = dict(session.execute(select(Label.id, Label.skipped).where(Label.id.in_(ids))).all())
    classes: dict[int, set[int]] = defaultdict(set)
    for label_id, class_id in session.execute(
        select(LabelValue.label_id, LabelValue.class_id).where(LabelValue.label_id.in_(ids))
    ):
        classes[int(label_id)].add(int(class_id))
    return {
        int(label_id): _SKIP if is_skip else frozenset(classes.get(int(label_id), ()))
        for label_id, is_skip in skipped.items()
    }
