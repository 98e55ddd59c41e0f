"""Export through the API, on SQLite and PostgreSQL: each label's source, confidence and model
version; predictions with include=all; streaming in pages; and a CSV round trip."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from labella.services.exporting import iter_export
from labella.storage.db import Database
from labella.storage.models import Item, Label, LabelValue, ModelVersion, Prediction
from tests.api.test_import import create_project, imported


def export(client: TestClient, project_id: int, **params: str) -> Any:
    response = client.get(f"/api/projects/{project_id}/export", params=params)
    assert response.status_code == 200, response.text
    return response


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def item_ids(db: Database, project_id: int) -> dict[str, int]:
    with db.reader() as session:
        rows = session.execute(select(Item.text, Item.id).where(Item.project_id == project_id))
        return {text or "": item_id for text, item_id in rows}


def add_model_results(db: Database, project: dict[str, Any]) -> dict[str, int]:
    """A trained model (version 3) that auto-labelled 'so so' and predicts 'unsure', and a skip of
    'skip me', written the way the labeling services write them."""
    classes = {c["name"]: c["id"] for c in project["classes"]}
    ids = item_ids(db, project["id"])
    with db.transaction() as session:
        model = ModelVersion(
            project_id=project["id"],
            version=3,
            head="linear",
            encoder="all-MiniLM-L6-v2",
            n_labels=2,
            metrics={},
            artifact_path="models/3",
        )
        session.add(model)
        session.flush()
        auto = Label(
            project_id=project["id"],
            item_id=ids["so so"],
            source="model",
            model_version_id=model.id,
            confidence=0.91,
        )
        auto.values.append(LabelValue(class_id=classes["positive"]))
        skip = Label(
            project_id=project["id"],
            item_id=ids["skip me"],
            source="human",
            skipped=True,
            annotator="ann",
        )
        session.add_all([auto, skip])
        session.add(
            Prediction(
                item_id=ids["unsure"],
                project_id=project["id"],
                model_version_id=model.id,
                probs=[0.7, 0.3],
                predicted=[classes["negative"]],
                confidence=0.7,
            )
        )
        session.execute(update(Item).where(Item.id == ids["so so"]).values(status="auto"))
        session.execute(update(Item).where(Item.id == ids["skip me"]).values(status="skipped"))
    return ids


SOURCE = (
    "id,text,label\nr1,loved it,positive\nr2,hated it,negative\nr3,so so,\nr4,unsure,\n"
    "r5,skip me,\n"
)


def test_csv_export_of_labeled_items_says_where_each_label_came_from(
    client: TestClient, db: Database
) -> None:
    project = create_project(client)
    imported(client, project["id"], "reviews.csv", SOURCE)
    ids = add_model_results(db, project)
    response = export(client, project["id"], format="csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="reviews-labeled.csv"'
    rows = csv_rows(response.text)
    assert list(rows[0]) == [
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
    ]
    by_text = {r["text"]: r for r in rows}
    assert set(by_text) == {"loved it", "hated it", "so so"}  # no skip, no unlabelled item
    human = by_text["loved it"]
    assert (human["id"], human["external_id"], human["label"], human["status"]) == (
        str(ids["loved it"]),
        "r1",
        "positive",
        "labeled",
    )
    assert (human["source"], human["confidence"], human["model_version"], human["annotator"]) == (
        "human",
        "",
        "",
        "import",
    )
    assert human["labeled_at"].endswith("+00:00")
    model = by_text["so so"]
    assert (model["label"], model["status"], model["source"]) == ("positive", "auto", "model")
    assert (float(model["confidence"]), model["model_version"], model["annotator"]) == (
        0.91,
        "3",
        "",
    )


def test_jsonl_export_of_all_items_includes_predictions(client: TestClient, db: Database) -> None:
    project = create_project(client)
    imported(client, project["id"], "reviews.csv", SOURCE)
    add_model_results(db, project)
    response = export(client, project["id"], format="jsonl", include="all")
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert 'filename="reviews-all.jsonl"' in response.headers["content-disposition"]
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [r["text"] for r in rows] == ["loved it", "hated it", "so so", "unsure", "skip me"]
    by_text = {r["text"]: r for r in rows}
    assert by_text["unsure"] | {"id": 0, "labeled_at": None} == {
        "id": 0,
        "external_id": "r4",
        "text": "unsure",
        "label": None,
        "status": "unlabeled",
        "source": None,
        "confidence": None,
        "model_version": None,
        "annotator": None,
        "labeled_at": None,
        "prediction": "negative",
        "prediction_confidence": 0.7,
    }
    skipped = by_text["skip me"]
    assert (skipped["label"], skipped["status"], skipped["annotator"]) == (None, "skipped", "ann")
    assert by_text["so so"]["model_version"] == 3 and by_text["so so"]["confidence"] == 0.91


def test_multi_label_values_are_lists_in_jsonl_and_joined_in_csv(
    client: TestClient, db: Database
) -> None:
    project = create_project(
        client, name="tags", classes=["urgent", "billing", "bug"], multi_label=True
    )
    imported(
        client,
        project["id"],
        "t.jsonl",
        '{"text": "charged twice", "labels": ["billing", "urgent"]}\n'
        '{"text": "typo", "labels": ["bug"]}\n',
    )
    rows = [json.loads(x) for x in export(client, project["id"], format="jsonl").text.splitlines()]
    # in the project's class order, whatever the order in the file
    assert [(r["text"], r["label"]) for r in rows] == [
        ("charged twice", ["urgent", "billing"]),
        ("typo", ["bug"]),
    ]
    rows_csv = csv_rows(export(client, project["id"], format="csv").text)
    assert [r["label"] for r in rows_csv] == ["urgent|billing", "bug"]


def test_exported_labeled_csv_reimports_into_a_new_project_with_the_same_labels(
    client: TestClient, db: Database
) -> None:
    original = create_project(client)
    lines = [f'r{i},"review, number {i}",{"positive" if i % 3 else "negative"}' for i in range(50)]
    imported(
        client,
        original["id"],
        "reviews.csv",
        "id,text,label\n" + "\n".join(lines) + "\nr99,no label,\n",
    )
    exported = export(client, original["id"], format="csv").content

    copy = create_project(client, name="reviews copy")
    report = imported(client, copy["id"], "reviews-labeled.csv", exported)
    assert (report["items_created"], report["labels_created"]) == (50, 50)
    assert (report["text_field"], report["label_field"], report["id_field"]) == (
        "text",
        "label",
        "external_id",
    )

    def labelled(project_id: int) -> list[tuple[str | None, str | None, str | None]]:
        names = {c["id"]: c["name"] for c in original["classes"] + copy["classes"]}
        with db.reader() as session:
            rows = session.execute(
                select(Item.external_id, Item.text, LabelValue.class_id)
                .join(Label, Label.item_id == Item.id)
                .join(LabelValue, LabelValue.label_id == Label.id)
                .where(Item.project_id == project_id, Label.source == "human")
            ).all()
        return sorted((ext, text, names[class_id]) for ext, text, class_id in rows)

    assert labelled(copy["id"]) == labelled(original["id"])
    assert len(labelled(original["id"])) == 50
    again = csv_rows(export(client, copy["id"], format="csv").text)
    assert [(r["external_id"], r["text"], r["label"]) for r in again] == [
        (r["external_id"], r["text"], r["label"]) for r in csv_rows(exported.decode())
    ]


def test_export_streams_in_pages_without_losing_or_repeating_rows(
    client: TestClient, db: Database
) -> None:
    project = create_project(client)
    body = "".join(f"text {i},{'positive' if i % 2 else 'negative'}\n" for i in range(23))
    imported(client, project["id"], "p.csv", "text,label\n" + body)
    whole = "".join(iter_export(db, project["id"], fmt="csv", include="all"))
    chunks = list(iter_export(db, project["id"], fmt="csv", include="all", page_rows=5))
    assert len(chunks) == 5  # header with rows 1-5, then four more pages
    assert "".join(chunks) == whole
    assert [r["text"] for r in csv_rows(whole)] == [f"text {i}" for i in range(23)]


def test_bad_export_requests(client: TestClient) -> None:
    project = create_project(client)
    bad_format = client.get(f"/api/projects/{project['id']}/export", params={"format": "xml"})
    assert bad_format.status_code == 422
    assert "unknown export format 'xml'; choose one of: csv, jsonl" in bad_format.json()["detail"]
    bad_include = client.get(f"/api/projects/{project['id']}/export", params={"include": "some"})
    assert bad_include.status_code == 422 and "labeled, all" in bad_include.json()["detail"]
    missing = client.get("/api/projects/9999/export")
    assert missing.status_code == 404
    empty = export(client, project["id"], format="csv")
    assert empty.text.splitlines() == [
        "id,external_id,text,label,status,source,confidence,model_version,annotator,labeled_at"
    ]
