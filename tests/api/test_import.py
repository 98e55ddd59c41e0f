"""Import through the API, on SQLite and PostgreSQL: every format, labels as human labels,
duplicates, and bad files that are refused with a 4xx naming the problem and change nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from labella.config import Settings
from labella.services import importing
from labella.services.importing import content_hash
from labella.storage.db import Database
from labella.storage.models import ImportRecord, Item, Job, Label, LabelValue, utcnow


def create_project(client: TestClient, **body: Any) -> dict[str, Any]:
    payload = {"name": "reviews", "classes": ["negative", "positive"], **body}
    response = client.post("/api/projects", json=payload)
    assert response.status_code == 201, response.text
    return response.json()


def upload(
    client: TestClient, project_id: int, filename: str, data: str | bytes, **form: str
) -> Any:
    content = data.encode("utf-8") if isinstance(data, str) else data
    return client.post(
        f"/api/projects/{project_id}/imports", files={"file": (filename, content)}, data=form
    )


def imported(
    client: TestClient, project_id: int, filename: str, data: str | bytes, **form: str
) -> dict:
    response = upload(client, project_id, filename, data, **form)
    assert response.status_code == 201, response.text
    return response.json()


def snapshot(db: Database, project_id: int) -> dict[str, Any]:
    """Everything an import may write, to show that a failed one wrote nothing."""
    with db.reader() as session:
        return {
            "items": sorted(
                session.execute(
                    select(Item.text, Item.status).where(Item.project_id == project_id)
                ).all()
            ),
            "labels": session.scalar(select(func.count()).select_from(Label)),
            "label_values": session.scalar(select(func.count()).select_from(LabelValue)),
            "imports": session.scalar(select(func.count()).select_from(ImportRecord)),
            "jobs": session.scalar(select(func.count()).select_from(Job)),
        }


def status_counts(db: Database, project_id: int) -> dict[str, int]:
    with db.reader() as session:
        rows = session.execute(
            select(Item.status, func.count())
            .where(Item.project_id == project_id)
            .group_by(Item.status)
        ).all()
    return {status: int(n) for status, n in rows}


def items_of(db: Database, project_id: int) -> list[Item]:
    with db.reader() as session:
        items = list(
            session.scalars(select(Item).where(Item.project_id == project_id).order_by(Item.id))
        )
        session.expunge_all()  # keep them loaded past the reader's rollback
        return items


FORMATS = {
    "reviews.csv": 'text,label\n"Great, really great",positive\nAwful film,negative\nMeh,\n',
    "reviews.tsv": "sentence\tlabel\nGreat, really great\tpositive\nAwful film\tnegative\nMeh\t\n",
    "reviews.jsonl": "\n".join(
        json.dumps(r)
        for r in [
            {"text": "Great, really great", "label": "positive"},
            {"text": "Awful film", "label": "negative"},
            {"text": "Meh", "label": None},
        ]
    ),
    "reviews.txt": "Great, really great\nAwful film\nMeh\n",
}


@pytest.mark.parametrize("filename", list(FORMATS))
def test_every_format_imports(client: TestClient, db: Database, filename: str) -> None:
    project = create_project(client)
    report = imported(client, project["id"], filename, FORMATS[filename])
    assert report["format"] == filename.rsplit(".", 1)[1]
    assert (report["rows"], report["items_created"], report["duplicates"]) == (3, 3, 0)
    labelled = 0 if filename.endswith(".txt") else 2
    assert report["labels_created"] == labelled
    items = items_of(db, project["id"])
    assert [i.text for i in items] == ["Great, really great", "Awful film", "Meh"]
    assert all(i.import_id == report["import_id"] for i in items)
    assert all(i.content_hash == content_hash(i.text or "") for i in items)
    assert len({i.random_key for i in items}) == 3
    statuses = [i.status for i in items]
    assert statuses == (["unlabeled"] * 3 if labelled == 0 else ["labeled", "labeled", "unlabeled"])
    with db.reader() as session:
        job = session.get(Job, report["encode_job_id"])
        assert job is not None and job.kind == "encode" and job.project_id == project["id"]
    listed = client.get(f"/api/projects/{project['id']}/imports").json()
    assert [(r["id"], r["filename"], r["items_created"]) for r in listed] == [
        (report["import_id"], filename, 3)
    ]


def test_labels_are_imported_as_human_labels_with_history(client: TestClient, db: Database) -> None:
    project = create_project(client)
    classes = {c["name"]: c["id"] for c in project["classes"]}
    imported(
        client, project["id"], "l.csv", "id,text,label\na1,good,positive\na2,bad,negative\na3,hm,\n"
    )
    with db.reader() as session:
        rows = session.execute(
            select(
                Item.external_id,
                Item.status,
                Label.source,
                Label.annotator,
                Label.is_current,
                LabelValue.class_id,
            )
            .join(Label, Label.item_id == Item.id)
            .join(LabelValue, LabelValue.label_id == Label.id)
            .where(Item.project_id == project["id"])
            .order_by(Item.id)
        ).all()
    assert rows == [
        ("a1", "labeled", "human", "import", True, classes["positive"]),
        ("a2", "labeled", "human", "import", True, classes["negative"]),
    ]
    assert status_counts(db, project["id"]) == {"labeled": 2, "unlabeled": 1}


def test_label_names_are_matched_case_insensitively_only_when_unambiguous(
    client: TestClient, db: Database
) -> None:
    project = create_project(client)
    report = imported(client, project["id"], "l.csv", "text,label\ngood,Positive\n")
    assert report["labels_created"] == 1


def test_duplicates_within_the_file_and_against_the_project_are_reported_not_doubled(
    client: TestClient, db: Database
) -> None:
    project = create_project(client)
    first = imported(client, project["id"], "a.txt", "alpha\nbeta\n")
    existing = {i.text: i.id for i in items_of(db, project["id"])}
    report = imported(
        client, project["id"], "b.csv", "text\ngamma\n  alpha \ngamma\nGAMMA\nbeta\ndelta\n"
    )
    assert first["items_created"] == 2
    assert (report["rows"], report["items_created"], report["duplicates"]) == (6, 3, 3)
    assert report["duplicate_examples"] == [
        {
            "line": 3,
            "text": "  alpha ",
            "duplicate_of": "project",
            "first_line": None,
            "item_id": existing["alpha"],
        },
        {"line": 4, "text": "gamma", "duplicate_of": "file", "first_line": 2, "item_id": None},
        {
            "line": 6,
            "text": "beta",
            "duplicate_of": "project",
            "first_line": None,
            "item_id": existing["beta"],
        },
    ]
    assert sorted(i.text or "" for i in items_of(db, project["id"])) == [
        "GAMMA",
        "alpha",
        "beta",
        "delta",
        "gamma",
    ]


def test_duplicate_check_holds_across_look_up_blocks(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The project's hashes are looked up two rows at a time here (5,000 in use): copies of one
    # text fall in different blocks, before and after the first copy's block is written.
    monkeypatch.setattr(importing, "_LOOKUP_BATCH", 2)
    project = create_project(client)
    imported(client, project["id"], "a.txt", "alpha\nbeta\n")
    existing = {i.text: i.id for i in items_of(db, project["id"])}
    report = imported(
        client,
        project["id"],
        "b.csv",
        "text,label\ngamma,positive\n  alpha ,\ngamma,\nalpha,\nGAMMA,\nbeta,\ndelta,negative\n"
        "gamma,\n",
    )
    assert (report["rows"], report["items_created"], report["duplicates"]) == (8, 3, 5)
    assert [
        (d["line"], d["duplicate_of"], d["first_line"], d["item_id"])
        for d in report["duplicate_examples"]
    ] == [
        (3, "project", None, existing["alpha"]),
        (4, "file", 2, None),
        (5, "project", None, existing["alpha"]),
        (7, "project", None, existing["beta"]),
        (9, "file", 2, None),
    ]
    assert sorted(i.text or "" for i in items_of(db, project["id"])) == [
        "GAMMA",
        "alpha",
        "beta",
        "delta",
        "gamma",
    ]
    assert report["labels_created"] == 2


def test_empty_rows_are_skipped_and_counted(client: TestClient, db: Database) -> None:
    project = create_project(client)
    report = imported(client, project["id"], "e.csv", 'text,label\none,\n"   ",positive\n,\ntwo,\n')
    assert (report["items_created"], report["empty_rows"], report["empty_row_lines"]) == (
        2,
        2,
        [3, 4],
    )


def test_multi_label_import(client: TestClient, db: Database) -> None:
    project = create_project(
        client, name="tags", classes=["urgent", "billing", "bug"], multi_label=True
    )
    ids = {c["name"]: c["id"] for c in project["classes"]}
    imported(
        client,
        project["id"],
        "t.jsonl",
        '{"text": "card charged twice", "labels": ["billing", "urgent"]}\n'
        '{"text": "typo on page", "labels": ["bug"]}\n',
    )
    imported(
        client, project["id"], "t.csv", "text,labels\nsite down|,bug; urgent\n", label_separator=";"
    )
    with db.reader() as session:
        pairs = session.execute(
            select(Item.text, LabelValue.class_id)
            .join(Label, Label.item_id == Item.id)
            .join(LabelValue, LabelValue.label_id == Label.id)
            .where(Item.project_id == project["id"])
        ).all()
    assert sorted(pairs) == sorted(
        [
            ("card charged twice", ids["billing"]),
            ("card charged twice", ids["urgent"]),
            ("typo on page", ids["bug"]),
            ("site down|", ids["bug"]),
            ("site down|", ids["urgent"]),
        ]
    )


def test_headerless_tsv_with_options(client: TestClient, db: Database) -> None:
    project = create_project(client, classes=["World", "Sports"])
    report = imported(
        client,
        project["id"],
        "ag.tsv",
        "Rain in Spain\tWorld\nA goal\tSports\n",
        has_header="false",
    )
    assert (report["items_created"], report["labels_created"], report["label_field"]) == (2, 2, "2")


# -- refused files: a 4xx naming the problem, and the project exactly as it was ------------------
SEED = "text,label\nalready here,positive\nand this,\n"

BAD_FILES: list[tuple[str, str | bytes, dict[str, str], int, str]] = [
    (
        "missing column",
        "text,label\na,positive\n",
        {"label_field": "sentiment"},
        422,
        "missing label column 'sentiment'; columns found: 'text', 'label'",
    ),
    (
        "missing text column",
        "title,label\na,positive\nb,negative\n",
        {"text_field": "body"},
        422,
        "missing text column 'body'",
    ),
    (
        "unknown label",
        "text,label\nfine,positive\nodd,neutral\n",
        {},
        422,
        "line 3: unknown label 'neutral'; project 'reviews' has the classes 'negative', 'positive'",
    ),
    (
        "several labels on a single-label project",
        "text,label\nx,positive|negative\n",
        {},
        422,
        "line 2: 2 labels ('positive', 'negative') on one row, "
        "but project 'reviews' is single-label",
    ),
    ("bad encoding", b"text\nok\ncaf\xe9\n", {}, 422, "file is not valid UTF-8 near line 3"),
    ("empty file", b"", {}, 422, "the file is empty"),
    ("header only", "text,label\n", {}, 422, "header row but no data rows"),
    (
        "bad JSON",
        '{"text": "ok"}\n{"text": nope}\n',
        {"format": "jsonl"},
        422,
        "line 2 is not valid JSON",
    ),
    (
        "wrong column count",
        "text,label\na,positive\nb,positive,extra\n",
        {},
        422,
        "line 3 has 3 columns, expected 2",
    ),
    ("unknown format", "whatever", {"format": "xlsx"}, 422, "unknown format 'xlsx'"),
    ("NUL in text", "text\nnul\x00here\n", {}, 422, "line 2: the text contains a NUL character"),
    (
        "bad has_header",
        "text\na\n",
        {"has_header": "maybe"},
        422,
        "has_header must be true or false",
    ),
]


@pytest.mark.parametrize(
    ("data", "form", "status", "message"),
    [case[1:] for case in BAD_FILES],
    ids=[case[0] for case in BAD_FILES],
)
def test_bad_files_are_refused_with_the_reason_and_change_nothing(
    client: TestClient,
    db: Database,
    data: str | bytes,
    form: dict[str, str],
    status: int,
    message: str,
) -> None:
    project = create_project(client)
    imported(client, project["id"], "seed.csv", SEED)
    before = snapshot(db, project["id"])
    filename = "upload.jsonl" if form.get("format") == "jsonl" else "upload.csv"
    response = upload(client, project["id"], filename, data, **form)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"], response.json()
    assert snapshot(db, project["id"]) == before


def test_failure_on_a_late_row_after_chunks_were_written_changes_nothing(
    client: TestClient, db: Database, settings: Settings
) -> None:
    settings.import_chunk_rows = 100  # so that nine chunks are written before the bad row
    project = create_project(client)
    imported(client, project["id"], "seed.csv", SEED)
    before = snapshot(db, project["id"])
    rows = [f"text number {i},{'positive' if i % 2 else ''}" for i in range(1000)]
    rows[950] = "the bad row,neutral"
    response = upload(client, project["id"], "late.csv", "text,label\n" + "\n".join(rows) + "\n")
    assert response.status_code == 422
    assert "line 952: unknown label 'neutral'" in response.json()["detail"]
    assert snapshot(db, project["id"]) == before
    encoding = ("text\n" + "\n".join(f"row {i}" for i in range(999))).encode() + b"\n\xff\xfe\n"
    response = upload(client, project["id"], "late.csv", encoding)
    assert response.status_code == 422
    assert "not valid UTF-8 near line 1001" in response.json()["detail"]
    assert snapshot(db, project["id"]) == before


def test_file_over_the_size_limit_is_refused(
    client: TestClient, db: Database, settings: Settings
) -> None:
    settings.max_upload_bytes = 1000
    project = create_project(client)
    imported(client, project["id"], "seed.csv", SEED)
    before = snapshot(db, project["id"])
    # Over the limit but within the multipart allowance: caught while streaming the file.
    response = upload(client, project["id"], "big.txt", "".join(f"line {i}\n" for i in range(200)))
    assert response.status_code == 413
    assert "larger than the upload limit of 1000 bytes" in response.json()["detail"]
    # Far over: refused from the Content-Length header before the body is read.
    response = upload(client, project["id"], "huge.txt", "x\n" * 100_000)
    assert response.status_code == 413
    assert "over the limit of 1000 bytes" in response.json()["detail"]
    assert snapshot(db, project["id"]) == before


def test_request_problems(client: TestClient) -> None:
    project = create_project(client)
    no_file = client.post(f"/api/projects/{project['id']}/imports", data={"format": "csv"})
    assert no_file.status_code == 422 and "no file uploaded" in no_file.json()["detail"]
    missing = upload(client, 9999, "a.txt", "hello\n")
    assert missing.status_code == 404 and "project 9999 does not exist" in missing.json()["detail"]
    assert client.get("/api/projects/9999/imports").status_code == 404


def test_the_upload_form_is_documented(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/projects/{project_id}/imports"]
    form = operation["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    assert {"file", "format", "text_field", "label_field", "id_field", "has_header"} <= set(
        form["properties"]
    )


def test_twenty_thousand_rows_stream_in(client: TestClient, db: Database) -> None:
    project = create_project(client)
    lines = "".join(
        f"synthetic short text {i}\t{'positive' if i % 10 == 0 else ''}\n" for i in range(20_000)
    )
    report = imported(client, project["id"], "many.tsv", "text\tlabel\n" + lines)
    assert (report["rows"], report["items_created"], report["labels_created"]) == (
        20_000,
        20_000,
        2_000,
    )
    assert status_counts(db, project["id"]) == {"unlabeled": 18_000, "labeled": 2_000}


def test_imported_rows_read_back_as_rows_the_orm_writes(client: TestClient, db: Database) -> None:
    """Bulk-inserted rows carry every column's default and the same stored conversions
    (booleans, JSON, UTC datetimes) as rows written one by one."""
    project = create_project(client, classes=["negative", "positive"])
    imported(
        client,
        project["id"],
        "a.jsonl",
        '{"text": "good film", "label": "positive", "source": "web"}\n{"text": "bad film"}\n',
    )
    with db.reader() as session:
        items = session.scalars(select(Item).order_by(Item.id)).all()
        labels = session.scalars(select(Label)).all()
        record = session.scalars(select(ImportRecord)).one()
    assert [(i.text, i.status, i.meta) for i in items] == [
        ("good film", "labeled", {"source": "web"}),
        ("bad film", "unlabeled", None),
    ]
    for item in items:
        assert (item.eval_sample, item.audit_sample, item.embedded) == (False, False, False)
        assert item.priority is None and item.lease_until is None
        assert item.import_id == record.id
        # read back as the record's own time, which the ORM wrote (naive on SQLite, UTC on PG)
        assert item.created_at.tzinfo == record.created_at.tzinfo
    (label,) = labels
    assert (label.item_id, label.kind, label.is_current, label.skipped) == (
        items[0].id,
        "label",
        True,
        False,
    )
    assert label.created_at == items[0].created_at


def test_rows_written_after_an_import_get_ids_of_their_own(
    client: TestClient, db: Database
) -> None:
    """The bulk path takes its ids from each table's own sequence (PostgreSQL) or lets SQLite
    assign them: rows the ORM writes afterwards never collide with the imported ones."""
    project = create_project(client)
    imported(client, project["id"], "a.csv", "text,label\ngood,positive\nbad,negative\nmeh,\n")
    with db.transaction() as session:
        item = Item(
            project_id=project["id"],
            text="typed in",
            content_hash=content_hash("x"),
            random_key=0.5,
        )
        session.add(item)
        session.flush()
        label = Label(project_id=project["id"], item_id=item.id, source="human", annotator="ann")
        session.add(label)
        session.flush()
        session.add(LabelValue(label_id=label.id, class_id=project["classes"][0]["id"]))
    imported(client, project["id"], "b.csv", "text,label\nfine,positive\n")
    with db.reader() as session:
        item_ids = session.scalars(select(Item.id).where(Item.project_id == project["id"])).all()
        label_ids = session.scalars(select(Label.id).where(Label.project_id == project["id"])).all()
    assert len(item_ids) == len(set(item_ids)) == 5
    assert len(label_ids) == len(set(label_ids)) == 4


def test_texts_and_fields_with_bulk_format_characters_are_stored_as_given(
    client: TestClient, db: Database
) -> None:
    """Tabs, line breaks, backslashes, a literal \\N (COPY's NULL) and non-ASCII text survive the
    bulk path byte for byte, in the text and in the extra fields."""
    project = create_project(client)
    texts = ["tab\there", "two\nlines", "back\\slash \\N", "\\N", "naïve café 🎬", "quote \" '"]
    rows = [
        {"text": text, "label": "positive", "note": text, "id": f"ext\t{i}"}
        for i, text in enumerate(texts)
    ]
    imported(client, project["id"], "odd.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    items = items_of(db, project["id"])
    assert [i.text for i in items] == texts
    assert [i.meta for i in items] == [{"note": text} for text in texts]
    assert [i.external_id for i in items] == [f"ext\t{i}" for i in range(len(texts))]


def test_a_bulk_write_that_breaks_a_constraint_raises_as_an_insert_does(
    client: TestClient, db: Database
) -> None:
    """The bulk path raises SQLAlchemy's IntegrityError, as an INSERT would, on both stores
    (PostgreSQL's COPY runs on the driver's cursor): the import turns it into a 409, not a 500."""
    project = create_project(client)
    imported(client, project["id"], "a.csv", "text\ngood\n")
    row = {
        "project_id": project["id"],
        "text": "good",
        "content_hash": content_hash("good"),
        "status": "unlabeled",
        "random_key": 0.5,
        "created_at": utcnow(),
    }
    with pytest.raises(IntegrityError), db.transaction() as session:
        importing._insert_rows(session, importing._ITEMS, [row])
    assert [i.text for i in items_of(db, project["id"])] == ["good"]


def test_equal_values_of_different_types_are_stored_as_given(
    client: TestClient, db: Database
) -> None:
    """A column's values are converted once when every row holds the same object; values that
    are only equal (1 == 1.0 == True in Python) still keep their own JSON."""
    project = create_project(client)
    rows = [{"text": f"row {i}", "flag": flag} for i, flag in enumerate([1, 1, True, 1.0])]
    imported(client, project["id"], "m.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    flags = [item.meta["flag"] for item in items_of(db, project["id"])]
    assert flags == [1, 1, True, 1.0]
    assert [type(f) for f in flags] == [int, int, bool, float]
