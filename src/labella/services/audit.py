"""The audit log: who did what, when.

Two sources make up a project's history. Labels are append-only (``label``: every answer, change,
skip and auto-label keeps its author and time), so they are not copied; everything else that
changes a project (imports, exports, auto-label runs, training requests, settings and classes,
members and roles, review decisions) is an ``audit_event`` row written by :func:`record` inside the
transaction of the change it describes, so an event exists exactly when its change does. Sign-ins,
users and API tokens are events without a project.

:func:`item_timeline` and :func:`iter_export` merge the two sources in time order.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from labella.errors import InvalidInput
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import AuditEvent, Label, LabelSource, ModelVersion, utcnow

EXPORT_FORMATS = ("csv", "jsonl")
COLUMNS = ("at", "actor", "action", "project_id", "item_id", "detail")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
PAGE_ROWS = 2000
MAX_PAGE = 500


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    project_id: int | None = None,
    item_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an event to the caller's transaction (it commits, or rolls back, with the change)."""
    event = AuditEvent(
        project_id=project_id,
        item_id=item_id,
        actor=actor,
        action=action,
        detail=detail,
        created_at=utcnow(),
    )
    session.add(event)
    return event


@dataclass(frozen=True)
class Event:
    """One entry of a history, from the audit log or from the label history."""

    at: datetime
    actor: str
    action: str
    project_id: int | None
    item_id: int | None
    detail: dict[str, Any]
    event_id: int | None = None  # audit_event.id
    label_id: int | None = None  # label.id for label entries

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": _iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "project_id": self.project_id,
            "item_id": self.item_id,
            "detail": self.detail,
        }


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return _as_utc(moment).isoformat()


def _event(row: AuditEvent) -> Event:
    return Event(
        at=_as_utc(row.created_at),
        actor=row.actor,
        action=row.action,
        project_id=row.project_id,
        item_id=row.item_id,
        detail=dict(row.detail or {}),
        event_id=row.id,
    )


# -- label history as events -----------------------------------------------------------------------
def _label_rows(project_id: int) -> Select[Label, int, bool]:
    earlier = aliased(Label)
    changed = exists().where(earlier.item_id == Label.item_id, earlier.id < Label.id)
    return (
        select(Label, ModelVersion.version, changed.label("is_change"))
        .outerjoin(ModelVersion, ModelVersion.id == Label.model_version_id)
        .where(Label.project_id == project_id)
    )


def _label_event(
    label: Label, version: int | None, is_change: bool, class_names: dict[int, str]
) -> Event:
    names = sorted(class_names.get(v.class_id, str(v.class_id)) for v in label.values)
    detail: dict[str, Any] = {"label_id": label.id, "classes": names}
    if label.source == LabelSource.MODEL:
        action = "label.auto"
        actor = f"model v{version}" if version is not None else "model"
        detail["confidence"] = label.confidence
        detail["model_version"] = version
    else:
        action = (
            "label.skip" if label.skipped else ("label.change" if is_change else "label.create")
        )
        actor = label.annotator or "anonymous"
    return Event(
        at=_as_utc(label.created_at),
        actor=actor,
        action=action,
        project_id=label.project_id,
        item_id=label.item_id,
        detail=detail,
        label_id=label.id,
    )


def _class_names(session: Session, project_id: int) -> dict[int, str]:
    return {c.id: c.name for c in repo.get_project(session, project_id).classes}


# -- reading ---------------------------------------------------------------------------------------
def item_timeline(db: Database, project_id: int, item_id: int) -> list[Event]:
    """Everything that happened to one item, oldest first: its labels (answers, changes, skips,
    auto-labels) and the audit events about it (review decisions)."""
    with db.reader() as session:
        names = _class_names(session, project_id)
        repo.get_item(session, project_id, item_id)
        labels = [
            _label_event(label, version, bool(is_change), names)
            for label, version, is_change in session.execute(
                _label_rows(project_id).where(Label.item_id == item_id)
            ).all()
        ]
        events = [
            _event(e)
            for e in session.scalars(
                select(AuditEvent).where(
                    AuditEvent.project_id == project_id, AuditEvent.item_id == item_id
                )
            )
        ]
    return sorted(labels + events, key=lambda e: (e.at, e.label_id or 0, e.event_id or 0))


def list_events(
    db: Database,
    project_id: int | None,
    *,
    before_id: int | None = None,
    action: str | None = None,
    limit: int = 100,
) -> list[Event]:
    """Audit events of a project (``None``: the site's, those without a project), newest first,
    a page at a time (give the last event's id as ``before_id`` for the next page)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
    with db.reader() as session:
        if project_id is not None:
            repo.get_project(session, project_id)
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        query = query.where(
            AuditEvent.project_id == project_id
            if project_id is not None
            else AuditEvent.project_id.is_(None)
        )
        if before_id is not None:
            query = query.where(AuditEvent.id < before_id)
        if action:
            # "member" matches member.add, member.role, ...
            query = query.where(
                or_(AuditEvent.action == action, AuditEvent.action.like(f"{action}.%"))
            )
        return [_event(e) for e in session.scalars(query)]


# -- export ----------------------------------------------------------------------------------------
@dataclass
class AuditExport:
    filename: str
    media_type: str
    chunks: Iterator[str]

    def __iter__(self) -> Iterator[str]:
        return self.chunks


def iter_export(
    db: Database,
    project_id: int,
    *,
    fmt: str = "csv",
    actor: str,
    page_rows: int = PAGE_ROWS,
) -> AuditExport:
    """A project's whole history, oldest first, as CSV or JSON lines: every label (answer,
    change, skip, auto-label) and every audit event. Streamed a page at a time, each page in its
    own short read; checked (format, project) before the first byte. The export itself is
    recorded, like any export."""
    fmt = (fmt or "").strip().lower()
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(
            f"unknown audit export format {fmt!r}; choose one of: {', '.join(EXPORT_FORMATS)}"
        )
    if page_rows < 1:
        raise InvalidInput("page_rows must be at least 1")
    with db.transaction() as session:
        project = repo.get_project(session, project_id)
        name = project.name
        names = {c.id: c.name for c in project.classes}
        record(
            session,
            actor=actor,
            action="audit.export",
            project_id=project_id,
            detail={"format": fmt},
        )
    merged = heapq.merge(
        _label_events(db, project_id, names, page_rows),
        _audit_events(db, project_id, page_rows),
        key=lambda e: e.at,
    )
    chunks = _csv_chunks(merged, page_rows) if fmt == "csv" else _jsonl_chunks(merged, page_rows)
    return AuditExport(
        filename=f"{_slug(name)}-audit.{fmt}", media_type=MEDIA_TYPES[fmt], chunks=chunks
    )


def _label_events(
    db: Database, project_id: int, names: dict[int, str], page_rows: int
) -> Iterator[Event]:
    after: tuple[datetime, int] | None = None
    while True:
        with db.reader() as session:
            query = _label_rows(project_id).order_by(Label.created_at, Label.id).limit(page_rows)
            if after is not None:
                query = query.where(
                    or_(
                        Label.created_at > after[0],
                        and_(Label.created_at == after[0], Label.id > after[1]),
                    )
                )
            rows = session.execute(query).all()
            page = [_label_event(lab, ver, bool(chg), names) for lab, ver, chg in rows]
            if rows:
                last = rows[-1][0]
                after = (last.created_at, last.id)
        yield from page
        if len(rows) < page_rows:
            return


def _audit_events(db: Database, project_id: int, page_rows: int) -> Iterator[Event]:
    after = 0
    while True:
        with db.reader() as session:
            rows = list(
                session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.project_id == project_id, AuditEvent.id > after)
                    .order_by(AuditEvent.id)
                    .limit(page_rows)
                )
            )
        # ids grow with time within one writer; sorting the page keeps heapq.merge's input ordered
        # even when two transactions committed out of order
        yield from sorted((_event(e) for e in rows), key=lambda e: e.at)
        if len(rows) < page_rows:
            return
        after = rows[-1].id


def _csv_chunks(events: Iterator[Event], page_rows: int) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for count, event in enumerate(events, start=1):
        writer.writerow(
            [
                _iso(event.at),
                event.actor,
                event.action,
                event.project_id if event.project_id is not None else "",
                event.item_id if event.item_id is not None else "",
                json.dumps(event.detail, ensure_ascii=False, sort_keys=True),
            ]
        )
        if count % page_rows == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _jsonl_chunks(events: Iterator[Event], page_rows: int) -> Iterator[str]:
    lines: list[str] = []
    for event in events:
        lines.append(json.dumps(event.as_dict(), ensure_ascii=False))
        if len(lines) >= page_rows:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "project"
