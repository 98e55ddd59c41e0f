"""Import a file of texts (and optionally their labels) into a project.

The whole import is one unit of work: rows are streamed from the file and written in chunks, and
any problem, on the first row or the last, rolls everything back, so a failed import leaves the
project exactly as it was. Memory stays bounded by one chunk plus the content hashes of the file's
own rows: the project's items are checked for duplicates a block of rows at a time, by index.
"""

from __future__ import annotations

import hashlib
import io
import operator
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import repeat
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Table,
    func,
    insert,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from labella.config import Settings
from labella.errors import Conflict, ImportFailed
from labella.services.readers import (
    ByteSource,
    CountingReader,
    Record,
    RecordReader,
    detect_format,
)
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    ImportRecord,
    Item,
    ItemStatus,
    Label,
    LabelClass,
    LabelSource,
    LabelValue,
    Project,
    ProjectKind,
    utcnow,
)

_OPTIONAL_COLUMNS = ("external_id", "meta", "media_uri")
_LOOKUP_BATCH = 5000  # rows per duplicate look-up, and keys per look-up of new ids

MAX_EXAMPLES = 20
EXAMPLE_CHARS = 120
IMPORT_ANNOTATOR = "import"
READ_BUFFER_BYTES = 256 * 1024

# Core tables: chunks are written with multi-row INSERT ... RETURNING, not per-row ORM objects.
_ITEMS = Item.metadata.tables[Item.__tablename__]
_LABELS = Label.metadata.tables[Label.__tablename__]
_LABEL_VALUES = LabelValue.metadata.tables[LabelValue.__tablename__]


@dataclass(frozen=True)
class DuplicateExample:
    """A row that was not imported because its text is already there: earlier in the same file
    (``first_line``) or in the project before this import (``item_id``)."""

    line: int
    text: str
    duplicate_of: str  # "file" or "project"
    first_line: int | None = None
    item_id: int | None = None


@dataclass
class ImportReport:
    import_id: int
    project_id: int
    filename: str
    format: str
    rows: int = 0
    items_created: int = 0
    labels_created: int = 0
    duplicates: int = 0
    duplicate_examples: list[DuplicateExample] = field(default_factory=list)
    empty_rows: int = 0
    empty_row_lines: list[int] = field(default_factory=list)
    text_field: str | None = None
    label_field: str | None = None
    id_field: str | None = None
    bytes_read: int = 0
    seconds: float = 0.0
    encode_job_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        parts = [
            f"{self.rows:,} rows read",
            f"{self.items_created:,} items created",
            f"{self.labels_created:,} labels imported",
        ]
        if self.duplicates:
            parts.append(f"{self.duplicates:,} duplicates skipped")
        if self.empty_rows:
            parts.append(f"{self.empty_rows:,} empty rows skipped")
        return ", ".join(parts)


def content_hash(text: str) -> str:
    """The identity of a text for duplicate detection and the embedding cache: SHA-256 of the
    text with surrounding whitespace removed and inner runs of whitespace collapsed."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def normalise_text(text: str) -> str:
    return " ".join(text.split())


def import_file(
    db: Database,
    settings: Settings,
    project_id: int,
    stream: ByteSource,
    *,
    filename: str,
    fmt: str | None = None,
    text_field: str | None = None,
    label_field: str | None = None,
    id_field: str | None = None,
    has_header: bool = True,
    label_separator: str = "|",
    size_limit: int | None = None,
    actor: str = "system",
) -> ImportReport:
    """Stream ``stream`` into the project; see the module docstring for the guarantees."""
    fmt = detect_format(filename, fmt)
    if label_separator in ("\n", "\r", '"'):
        raise ImportFailed(f"{label_separator!r} cannot separate labels")
    limit = settings.max_upload_bytes if size_limit is None else size_limit
    counting = CountingReader(stream, limit=limit)
    reader = RecordReader(
        io.BufferedReader(counting, buffer_size=READ_BUFFER_BYTES),
        fmt=fmt,
        text_field=text_field,
        label_field=label_field,
        id_field=id_field,
        has_header=has_header,
        label_separator=label_separator,
    )
    started = time.perf_counter()
    try:
        with db.transaction() as session:
            project = repo.get_project(session, project_id, for_update=True)
            if project.kind == ProjectKind.IMAGE_CLASSIFICATION:
                raise ImportFailed(
                    f"project {project.name!r} is an image project: import images (a folder, a "
                    "zip, image files, or a CSV/JSONL listing of image paths) with `labella "
                    f"import` or POST /api/projects/{project_id}/images"
                )
            record = ImportRecord(project_id=project_id, filename=filename[-500:], format=fmt)
            session.add(record)
            session.flush()
            report = ImportReport(
                import_id=record.id, project_id=project_id, filename=record.filename, format=fmt
            )
            writer = ChunkWriter(session, settings, project, report)
            writer.run(reader)
            report.text_field = reader.text_field
            report.label_field = reader.label_field
            report.id_field = reader.id_field
            report.bytes_read = counting.bytes_read
            queue_encoding(session, project_id, report)
            report.seconds = round(time.perf_counter() - started, 3)
            close_import_record(session, record, report, rows=report.rows, actor=actor)
            return report
    except IntegrityError as exc:
        # Imports into one project are serialised (project row lock / SQLite write lock), so this
        # means another writer added the same text meanwhile; nothing of this import was kept.
        raise Conflict(
            "the project changed while the file was being imported; nothing was imported, "
            "import the file again"
        ) from exc


def list_imports(db: Database, project_id: int) -> list[ImportRecord]:
    with db.reader() as session:
        repo.get_project(session, project_id)
        records = list(
            session.scalars(
                select(ImportRecord)
                .where(ImportRecord.project_id == project_id)
                .order_by(ImportRecord.id)
            )
        )
        # Detach them loaded: the reader's closing rollback would otherwise expire them.
        session.expunge_all()
        return records


class RecordedReport(Protocol):
    """What :func:`close_import_record` copies into the import's record (a text or an image
    import's report)."""

    format: str
    items_created: int
    labels_created: int
    duplicates: int

    def to_dict(self) -> dict[str, Any]: ...


class EncodedReport(Protocol):
    items_created: int
    encode_job_id: int | None


def queue_encoding(session: Session, project_id: int, report: EncodedReport) -> None:
    """Queue the encode job that embeds the items the import created (none: no job)."""
    if report.items_created:
        from labella.jobs import queue

        job = queue.enqueue(session, kind="encode", project_id=project_id)
        report.encode_job_id = job.id


def close_import_record(
    session: Session,
    record: ImportRecord,
    report: RecordedReport,
    *,
    rows: int,
    actor: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Store the import's counts and report in its record and audit it; ``rows`` is what the
    import read (rows of a file, images found), ``detail`` what its audit adds."""
    record.rows = rows
    record.items_created = report.items_created
    record.labels_created = report.labels_created
    record.duplicates = report.duplicates
    record.report = report.to_dict()
    from labella.services import audit

    audit.record(
        session,
        actor=actor,
        action="import",
        project_id=record.project_id,
        detail={
            "import_id": record.id,
            "filename": record.filename,
            "format": report.format,
            "rows": rows,
            "items_created": report.items_created,
            "labels_created": report.labels_created,
            "duplicates": report.duplicates,
            **(detail or {}),
        },
    )


class WriterReport(Protocol):
    """What :class:`ChunkWriter` counts into (a text or an image import's report)."""

    import_id: int
    items_created: int
    labels_created: int


class ChunkWriter:
    """Turns records into rows and writes them a chunk at a time with bulk INSERTs.

    Text imports feed it records (:meth:`run`); the image import feeds it finished rows
    (:meth:`add_item`, then :meth:`finish`).
    """

    def __init__(
        self, session: Session, settings: Settings, project: Project, report: WriterReport
    ) -> None:
        import numpy as np

        self.session = session
        self.project = project
        self.report = report
        self.chunk_rows = max(1, settings.import_chunk_rows)
        # Per-import stream, reproducible from the settings' seed and the import id.
        self.rng = np.random.default_rng([settings.random_seed, report.import_id])
        self.now: datetime = utcnow()
        self.classes = ClassLookup(project)
        # hash -> line of this file where it first occurred, 0 for texts already in the project.
        # Only this file's hashes: the project's are looked up a block of rows at a time, so a
        # small import into a project of a million items does not load a million hashes.
        self.seen: dict[str, int] = {}
        self.project_item_ids: dict[str, int] = {}  # hash -> id, for the project duplicates met
        # An empty project holds no duplicates: the look-ups (~4 us a row on SQLite) are skipped.
        self.project_had_items = repo.project_has_items(session, project.id)
        self.items: list[dict[str, Any]] = []
        self.item_labels: list[Sequence[int] | None] = []

    def add_item(self, row: dict[str, Any], class_ids: Sequence[int] | None) -> None:
        """Queue one new item: ``row`` has its ``content_hash`` and ``text`` and/or
        ``media_uri``, optionally ``external_id`` and ``meta``. The caller has checked that it
        is no duplicate. ``class_ids`` (if any) become its human label."""
        self.items.append(
            {
                "project_id": self.project.id,
                "external_id": None,
                "meta": None,
                **row,
                "status": ItemStatus.LABELED.value if class_ids else ItemStatus.UNLABELED.value,
                "embedded": False,
                "import_id": self.report.import_id,
                "created_at": self.now,
            }
        )
        self.item_labels.append(class_ids)
        if len(self.items) >= self.chunk_rows:
            self._flush()

    def finish(self) -> None:
        """Write what :meth:`add_item` still holds."""
        self._flush()

    def run(self, records: RecordReader) -> None:
        report = self.report
        if not isinstance(report, ImportReport):
            raise TypeError("run() needs a text import's ImportReport")
        # Rows wait in a block only when the project's items must be looked up: held rows
        # outlive the collector's youngest generation, which costs ~10% of a large import.
        block: list[tuple[Record, str]] = []
        for rec in records:
            report.rows += 1
            text = rec.text
            normalised = " ".join(text.split())
            if not normalised:
                report.empty_rows += 1
                if len(report.empty_row_lines) < MAX_EXAMPLES:
                    report.empty_row_lines.append(rec.line)
                continue
            if "\x00" in text:
                raise ImportFailed(
                    f"line {rec.line}: the text contains a NUL character",
                    details={"line": rec.line},
                )
            digest = hashlib.sha256(normalised.encode("utf-8")).hexdigest()
            if not self.project_had_items:
                self._add_row(rec, digest)
                continue
            block.append((rec, digest))
            if len(block) >= _LOOKUP_BATCH:
                self._add_block(block)
                block = []
        self._add_block(block)
        self._flush()

    def _add_block(self, block: list[tuple[Record, str]]) -> None:
        """Queue a block of hashed rows, in file order, after one look-up of which of them the
        project already holds."""
        unseen = {digest for _, digest in block if digest not in self.seen}
        if unseen:
            self.project_item_ids.update(
                repo.item_ids_by_content_hash(self.session, self.project.id, unseen)
            )
        for rec, digest in block:
            self._add_row(rec, digest)

    def _add_row(self, rec: Record, digest: str) -> None:
        """Queue one hashed row, or count it as a duplicate (of an earlier row of the file, or of
        an item the project held: ``project_item_ids`` has every such hash of the row's block)."""
        seen = self.seen
        first = seen.get(digest)
        if first is None and digest in self.project_item_ids:
            first = seen[digest] = 0
        if first is not None:
            self._duplicate(rec.line, rec.text, first, digest)
            return
        seen[digest] = rec.line
        class_ids = self.classes.resolve(rec.labels, rec.line) if rec.labels else None
        self.add_item(
            {
                "external_id": rec.external_id,
                "text": rec.text,
                "meta": rec.meta,
                "content_hash": digest,
            },
            class_ids,
        )

    def _duplicate(self, line: int, text: str, first_line: int, digest: str) -> None:
        report = self.report
        if not isinstance(report, ImportReport):
            raise TypeError("duplicates are counted here for text imports only")
        report.duplicates += 1
        if len(report.duplicate_examples) >= MAX_EXAMPLES:
            return
        shown = text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"
        report.duplicate_examples.append(
            DuplicateExample(
                line=line,
                text=shown,
                duplicate_of="project" if first_line == 0 else "file",
                first_line=first_line or None,
                item_id=self.project_item_ids.get(digest) if first_line == 0 else None,
            )
        )

    def _flush(self) -> None:
        if not self.items:
            return
        keys = self.rng.random(len(self.items)).tolist()
        for row, key in zip(self.items, keys, strict=True):
            row["random_key"] = key
        # Columns that no row of the chunk fills are left to their NULL default: most files have
        # no ids and no extra fields, and each bound value costs per row.
        for name in _OPTIONAL_COLUMNS:
            if all(row.get(name) is None for row in self.items):
                for row in self.items:
                    row.pop(name, None)
        labelled = [i for i, ids in enumerate(self.item_labels) if ids]
        if labelled:
            # content_hash is unique within a project, so it names each new item's row
            id_by_hash = _insert_rows_mapping_ids(
                self.session,
                _ITEMS,
                self.items,
                key="content_hash",
                wanted=[self.items[i]["content_hash"] for i in labelled],
                scope=_ITEMS.c.project_id == self.project.id,
            )
            self._write_labels(
                [id_by_hash[self.items[i]["content_hash"]] for i in labelled],
                [self.item_labels[i] for i in labelled],
            )
        else:
            _insert_rows(self.session, _ITEMS, self.items)
        self.report.items_created += len(self.items)
        self.items = []
        self.item_labels = []

    def _write_labels(self, item_ids: list[int], class_ids: list[Sequence[int] | None]) -> None:
        rows = [
            {
                "project_id": self.project.id,
                "item_id": item_id,
                "source": LabelSource.HUMAN.value,
                "skipped": False,
                "annotator": IMPORT_ANNOTATOR,
                "is_current": True,
                "created_at": self.now,
            }
            for item_id in item_ids
        ]
        # the items are new, so each has exactly one label: this one
        label_by_item = _insert_rows_mapping_ids(
            self.session,
            _LABELS,
            rows,
            key="item_id",
            wanted=item_ids,
            scope=_LABELS.c.project_id == self.project.id,
        )
        values = [
            {"label_id": label_by_item[item_id], "class_id": class_id}
            for item_id, ids in zip(item_ids, class_ids, strict=True)
            for class_id in ids or ()
        ]
        _insert_rows(self.session, _LABEL_VALUES, values)
        self.report.labels_created += len(rows)


def _insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows at the driver's bulk speed (see ``_insert_rows_mapping_ids``)."""
    if not rows:
        return
    if _is_postgresql(session):
        _postgresql_copy(session, table, rows)
    else:
        _sqlite_insert_many(session, table, rows)


def _insert_rows_mapping_ids(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    key: str,
    wanted: list[Any],
    scope: ColumnElement[bool],
) -> dict[Any, int]:
    """Insert rows and return the new ids of the ``wanted`` ones, keyed by ``key`` (a column that
    is unique among the rows within ``scope``).

    PostgreSQL: the ids are drawn from the table's sequence first, then the rows (ids included)
    go in by ``COPY``: 1.2-1.5x the rate of a fully labelled import by ``INSERT ... SELECT FROM
    unnest(...) RETURNING``, whose array parameters psycopg quotes element by element in Python
    (SQLAlchemy's multi-row ``VALUES`` is slower still: psycopg re-parses every statement of
    thousands of parameters). SQLite: a plain executemany, then one indexed look-up of the wanted
    keys. ``INSERT ... RETURNING`` costs SQLite more than the look-up, and its row order is not
    guaranteed (asking SQLAlchemy to sort by parameter order makes it insert one row per
    statement there).
    """
    if not rows:
        return {}
    if _is_postgresql(session):
        ids = _postgresql_new_ids(session, table, len(rows))
        _postgresql_copy(session, table, rows, ids=ids)
        by_key = dict(zip((row[key] for row in rows), ids, strict=True))
        return {k: by_key[k] for k in wanted}
    _sqlite_insert_many(session, table, rows)
    found: dict[Any, int] = {}
    for start in range(0, len(wanted), _LOOKUP_BATCH):
        part = wanted[start : start + _LOOKUP_BATCH]
        query = select(table.c[key], table.c.id).where(
            scope, repo.column_among(session, table.c[key], part)
        )
        # the driver's rows as they are (a text or integer key, an integer id): SQLAlchemy's
        # row objects, fetched one by one, cost ~1 s of a 100,000-row fully labelled import
        result = session.connection().execute(query)
        found.update(result.cursor.fetchall())
        result.close()
    return found


def _driver_columns(
    session: Session, table: Table, rows: list[dict[str, Any]]
) -> tuple[list[str], list[list[Any]]]:
    """The rows (each with the first row's keys) as column names and lists of driver-ready values.

    SQLAlchemy's own executemany builds and processes every row's parameters one by one, which
    took about a third of a fully labelled import. Here each column's bind processor (the same
    conversion SQLAlchemy applies: booleans, JSON, UTC datetimes) runs over the column at once,
    and the scalar Python-side defaults of the columns the rows leave out are filled in as
    SQLAlchemy would; a column with a callable default must be given."""
    names = list(rows[0])
    given = set(names)
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.name in given or column.primary_key or column.default is None:
            continue
        if not column.default.is_scalar:
            raise TypeError(f"{table.name}.{column.name}: give it (its default is computed)")
        defaults[column.name] = column.default.arg  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect

    def bound(name: str, values: list[Any]) -> list[Any]:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is None:
            return values
        first = values[0]
        # one object for the whole column (the import's timestamp, its id): converted once.
        # Identity, not equality: 1 == True, yet a JSON column stores them differently.
        if all(map(operator.is_, values, repeat(first))):
            return [process(first)] * len(values)
        return [process(v) for v in values]

    columns = [bound(name, [row[name] for row in rows]) for name in names]
    columns += [bound(name, [value]) * len(rows) for name, value in defaults.items()]
    return [*names, *defaults], columns


def _sqlite_insert_many(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """SQLite: one driver-level executemany of the rows (see :func:`_driver_columns`)."""
    names, columns = _driver_columns(session, table, rows)
    dialect = session.get_bind().dialect
    statement = insert(table).compile(dialect=dialect, column_keys=names)
    order = {name: i for i, name in enumerate(names)}
    positions = [order[key] for key in statement.positiontup or ()]
    parameters = list(zip(*(columns[i] for i in positions), strict=True))
    session.connection().exec_driver_sql(statement.string, parameters)


def _postgresql_new_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` fresh ids from the sequence behind ``table.id`` (never handed out twice, even to
    concurrent transactions)."""
    sequence = session.scalar(select(func.pg_get_serial_sequence(table.name, "id")))
    drawn = select(func.nextval(sequence)).select_from(func.generate_series(1, count))
    return [int(i) for i in session.scalars(drawn).all()]


def _postgresql_copy(
    session: Session, table: Table, rows: list[dict[str, Any]], *, ids: list[int] | None = None
) -> None:
    """PostgreSQL: the rows (with ``ids`` when given) by ``COPY ... FROM STDIN`` on this
    session's connection, so inside its transaction (see :func:`_driver_columns`)."""
    names, columns = _driver_columns(session, table, rows)
    if ids is not None:
        names, columns = ["id", *names], [ids, *columns]
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    statement = f"COPY {quote(table.name)} ({', '.join(map(quote, names))}) FROM STDIN"
    driver = session.connection().connection.driver_connection
    assert driver is not None  # a live connection of this session
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in zip(*columns, strict=True):
                copy.write_row(row)
    except dialect.loaded_dbapi.Error as exc:
        # raised as SQLAlchemy raises a statement's errors (IntegrityError, DataError, ...), so
        # callers handle a COPY's as they handle an INSERT's
        raise DBAPIError.instance(
            statement, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
        ) from exc


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


class ClassLookup:
    """Class names to ids for one project; refuses unknown names and, for single-label projects,
    rows with several labels."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.by_name = {cls.name: cls.id for cls in project.classes}
        folded: dict[str, list[LabelClass]] = {}
        for cls in project.classes:
            folded.setdefault(cls.name.lower(), []).append(cls)
        # Case is forgiven only where it cannot be ambiguous.
        self.by_folded = {name: found[0].id for name, found in folded.items() if len(found) == 1}
        # A file repeats a handful of label sets over many rows: each is resolved once.
        self._resolved: dict[tuple[str, ...], tuple[int, ...]] = {}

    def find(self, name: str) -> int | None:
        """The id of the class called ``name`` (case forgiven where unambiguous), or None."""
        class_id = self.by_name.get(name)
        if class_id is None:
            class_id = self.by_folded.get(name.lower())
        return class_id

    def resolve(self, labels: list[str], line: int) -> tuple[int, ...]:
        """The distinct class ids of a row's ``labels``, in order; ImportFailed naming ``line``
        for an unknown class, or for several on a single-label project."""
        key = tuple(labels)
        ids = self._resolved.get(key)
        if ids is None:
            ids = self._resolved[key] = self._resolve(labels, line)
        return ids

    def _resolve(self, labels: list[str], line: int) -> tuple[int, ...]:
        ids: list[int] = []
        for name in labels:
            class_id = self.find(name)
            if class_id is None:
                classes = ", ".join(repr(c.name) for c in self.project.classes)
                raise ImportFailed(
                    f"line {line}: unknown label {name!r}; project {self.project.name!r} has the "
                    f"classes {classes} (add the class first, or fix the file)",
                    details={"line": line, "label": name},
                )
            if class_id not in ids:
                ids.append(class_id)
        if len(ids) > 1 and not self.project.multi_label:
            shown = ", ".join(repr(n) for n in labels)
            raise ImportFailed(
                f"line {line}: {len(ids)} labels ({shown}) on one row, but project "
                f"{self.project.name!r} is single-label",
                details={"line": line},
            )
        return tuple(ids)
