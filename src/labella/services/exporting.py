"""Export a project's items and labels as CSV or JSON lines, streamed.

Rows are read a page at a time (keyset pagination on the item id, each page in its own short
read-only unit of work), so an export of any size holds one page in memory and no transaction open
while the client is slow to read. Every row says where its label came from: ``source`` (human or
model), the model's ``confidence`` and ``model_version`` for model labels, the ``annotator`` and
when it was labelled.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, select

from labella.errors import InvalidInput
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import Item, Label, LabelValue, ModelVersion, Prediction, Project

EXPORT_FORMATS = ("csv", "jsonl")
INCLUDE_CHOICES = ("labeled", "all")
PAGE_ROWS = 5000

LABEL_COLUMNS = (
    "id",
    "external_id",
    "text",
    "label",
    "status",
    "source",
    "confidence",
    "model_version",
    "annotator",
    "labeled_at",
)
PREDICTION_COLUMNS = ("prediction", "prediction_confidence")

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


@dataclass
class ExportStream:
    """An export ready to stream: iterate it for text chunks (one page of rows each)."""

    filename: str
    media_type: str
    columns: tuple[str, ...]
    chunks: Iterator[str]

    def __iter__(self) -> Iterator[str]:
        return self.chunks


def iter_export(
    db: Database,
    project_id: int,
    *,
    fmt: str = "csv",
    include: str = "labeled",
    label_separator: str = "|",
    page_rows: int = PAGE_ROWS,
    actor: str = "system",
) -> ExportStream:
    """Check the request and the project now (so errors come before any byte is sent) and return
    the stream. ``include="labeled"``: items with a current label, human or model;
    ``include="all"``: every item, with the newest model's prediction and its confidence."""
    fmt = (fmt or "").strip().lower()
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(
            f"unknown export format {fmt!r}; choose one of: {', '.join(EXPORT_FORMATS)}"
        )
    if include not in INCLUDE_CHOICES:
        raise InvalidInput(
            f"unknown export selection {include!r}; choose one of: {', '.join(INCLUDE_CHOICES)}"
        )
    if page_rows < 1:
        raise InvalidInput("page_rows must be at least 1")
    from labella.services import audit

    with db.transaction() as session:
        project = _ProjectInfo.of(repo.get_project(session, project_id))
        audit.record(
            session,
            actor=actor,
            action="export",
            project_id=project_id,
            detail={"format": fmt, "include": include},
        )
    columns = LABEL_COLUMNS + (PREDICTION_COLUMNS if include == "all" else ())
    exporter = _Exporter(
        db,
        project,
        include=include,
        columns=columns,
        page_rows=page_rows,
        separator=label_separator,
    )
    chunks = exporter.csv_chunks() if fmt == "csv" else exporter.jsonl_chunks()
    return ExportStream(
        filename=f"{_slug(project.name)}-{include}.{fmt}",
        media_type=MEDIA_TYPES[fmt],
        columns=columns,
        chunks=chunks,
    )


@dataclass(frozen=True)
class _ProjectInfo:
    """What the export needs of the project, read once up front."""

    id: int
    name: str
    multi_label: bool
    classes: dict[int, tuple[int, str]]  # class id -> (position, name)

    @classmethod
    def of(cls, project: Project) -> _ProjectInfo:
        return cls(
            id=project.id,
            name=project.name,
            multi_label=project.multi_label,
            classes={c.id: (c.position, c.name) for c in project.classes},
        )


class _Exporter:
    def __init__(
        self,
        db: Database,
        project: _ProjectInfo,
        *,
        include: str,
        columns: tuple[str, ...],
        page_rows: int,
        separator: str,
    ) -> None:
        self.db = db
        self.project = project
        self.include = include
        self.columns = columns
        self.page_rows = page_rows
        self.separator = separator
        self.multi_label = project.multi_label
        # positions keep multi-label values in the project's class order
        self.classes = project.classes

    def csv_chunks(self) -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for page in self._pages():
            for row in page:
                writer.writerow([_csv_cell(row[c], self.separator) for c in self.columns])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue()

    def jsonl_chunks(self) -> Iterator[str]:
        for page in self._pages():
            yield "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in page)

    # -- reading -----------------------------------------------------------------------------
    def _pages(self) -> Iterator[list[dict[str, Any]]]:
        after = 0
        while True:
            with self.db.reader() as session:
                rows = session.execute(self._page_query(after)).all()
                label_ids = [r.label_id for r in rows if r.label_id is not None]
                values: dict[int, list[int]] = {}
                if label_ids:
                    for label_id, class_id in session.execute(
                        select(LabelValue.label_id, LabelValue.class_id).where(
                            LabelValue.label_id.in_(label_ids)
                        )
                    ):
                        values.setdefault(label_id, []).append(class_id)
            if not rows:
                return
            yield [self._row(r, values.get(r.label_id, [])) for r in rows]
            if len(rows) < self.page_rows:
                return
            after = rows[-1].id

    def _page_query(self, after: int) -> Select[Any]:
        current = and_(Label.item_id == Item.id, Label.is_current.is_(True))
        columns: list[Any] = [
            Item.id,
            Item.external_id,
            Item.text,
            Item.status,
            Label.id.label("label_id"),
            Label.source,
            Label.skipped,
            Label.confidence,
            Label.annotator,
            Label.created_at.label("labeled_at"),
            ModelVersion.version.label("model_version"),
        ]
        if self.include == "all":
            columns += [
                Prediction.predicted.label("predicted"),
                Prediction.confidence.label("prediction_confidence"),
            ]
        query = select(*columns).select_from(Item)
        if self.include == "labeled":
            query = query.join(Label, current).where(Label.skipped.is_(False))
        else:
            query = query.outerjoin(Label, current).outerjoin(
                Prediction, Prediction.item_id == Item.id
            )
        return (
            query.outerjoin(ModelVersion, ModelVersion.id == Label.model_version_id)
            .where(Item.project_id == self.project.id, Item.id > after)
            .order_by(Item.id)
            .limit(self.page_rows)
        )

    def _row(self, r: Any, class_ids: list[int]) -> dict[str, Any]:
        labeled = r.label_id is not None and not r.skipped
        row: dict[str, Any] = {
            "id": r.id,
            "external_id": r.external_id,
            "text": r.text,
            "label": self._label_value(class_ids) if labeled else None,
            "status": r.status,
            "source": r.source,
            "confidence": r.confidence,
            "model_version": r.model_version,
            "annotator": r.annotator,
            "labeled_at": _iso(r.labeled_at),
        }
        if self.include == "all":
            predicted = r.predicted
            row["prediction"] = None if predicted is None else self._label_value(list(predicted))
            row["prediction_confidence"] = r.prediction_confidence
        return row

    def _label_value(self, class_ids: list[int]) -> str | list[str] | None:
        known = sorted(self.classes[c] for c in class_ids if c in self.classes)
        names = [name for _, name in known]
        if self.multi_label:
            return names
        return names[0] if names else None


def _csv_cell(value: Any, separator: str) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return separator.join(value)
    return value


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were written in UTC
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    return slug[:80] or "project"
