"""The audit log: who did what and when, per project and per item, and its export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from labella.storage.db import Database
from tests.services.labeling_data import add_items, plant_model


def events(client: TestClient, pid: int, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"/api/projects/{pid}/audit", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found


def test_project_changes_are_recorded_with_who_and_what(
    client: TestClient, db: Database, make_user: Callable[..., Any]
) -> None:
    project = client.post(
        "/api/projects", json={"name": "audited", "classes": ["neg", "pos"]}
    ).json()
    pid = project["id"]
    manager = make_user("manager", pid, username="mgr")
    neg_id = project["classes"][0]["id"]
    manager.patch(f"/api/projects/{pid}", json={"retrain_every": 7, "description": "d"})
    added = manager.post(f"/api/projects/{pid}/classes", json={"name": "maybe"}).json()
    maybe_id = added["classes"][-1]["id"]
    manager.patch(f"/api/projects/{pid}/classes/{neg_id}", json={"name": "negative"})
    manager.delete(f"/api/projects/{pid}/classes/{maybe_id}")
    imported = manager.post(
        f"/api/projects/{pid}/imports",
        files={"file": ("rows.csv", b"text,label\nbad film,negative\ngood film,pos\n")},
    )
    assert imported.status_code == 201, imported.text
    assert manager.get(f"/api/projects/{pid}/export").status_code == 200
    rank_job = manager.post(f"/api/projects/{pid}/rank").json()["id"]
    manager.post(f"/api/jobs/{rank_job}/cancel")
    for item_id, name in zip(add_items(db, pid, 2), ["negative", "pos"], strict=True):
        manager.post(f"/api/projects/{pid}/items/{item_id}/label", json={"classes": [name]})
    train_job = manager.post(f"/api/projects/{pid}/train")
    assert train_job.status_code == 202, train_job.text
    make_user(username="newbie")
    manager.post(f"/api/projects/{pid}/members", json={"username": "newbie", "role": "annotator"})
    manager.patch(f"/api/projects/{pid}/members/newbie", json={"role": "reviewer"})
    manager.delete(f"/api/projects/{pid}/members/newbie")
    add_items(db, pid, 1, prefix="unlabeled")
    manager.post(f"/api/projects/{pid}/evaluation-sample", params={"size": 1})

    log = events(client, pid)
    by_action = {e["action"]: e for e in reversed(log)}
    assert [e["action"] for e in reversed(log)] == [
        "project.create",
        "member.add",
        "project.update",
        "class.add",
        "class.update",
        "class.delete",
        "import",
        "export",
        "rank.request",
        "job.cancel",
        "train.request",
        "member.add",
        "member.role",
        "member.remove",
        "eval_sample.draw",
    ]
    oldest_first = list(reversed(log))
    assert [e["actor"] for e in oldest_first[:2]] == ["admin", "test"]  # the fixture added mgr
    assert {e["actor"] for e in oldest_first[2:]} == {"mgr"}
    assert by_action["project.update"]["detail"]["retrain_every"] == {"from": 50, "to": 7}
    assert by_action["class.update"]["detail"]["name"] == {"from": "neg", "to": "negative"}
    assert by_action["class.delete"]["detail"]["name"] == "maybe"
    assert by_action["import"]["detail"]["items_created"] == 2
    assert by_action["import"]["detail"]["labels_created"] == 2
    assert by_action["import"]["detail"]["filename"] == "rows.csv"
    assert by_action["export"]["detail"] == {"format": "csv", "include": "labeled"}
    assert by_action["train.request"]["detail"]["job_id"] == train_job.json()["id"]
    assert by_action["member.role"]["detail"] == {
        "username": "newbie",
        "from": "annotator",
        "to": "reviewer",
    }
    assert by_action["job.cancel"]["detail"]["job_id"] == rank_job
    assert [e["action"] for e in events(client, pid, action="member")] == [
        "member.remove",
        "member.role",
        "member.add",
        "member.add",
    ]
    # paging: newest first, then older ones
    first_page = client.get(f"/api/projects/{pid}/audit", params={"limit": 3}).json()
    assert len(first_page["events"]) == 3 and first_page["next_before_id"]
    older = events(client, pid, before_id=first_page["next_before_id"])
    assert older[0]["event_id"] < first_page["events"][-1]["event_id"]


def test_an_items_history_merges_labels_and_auto_labels(
    client: TestClient, db: Database, make_user: Callable[..., Any]
) -> None:
    pid = client.post("/api/projects", json={"name": "h", "classes": ["neg", "pos"]}).json()["id"]
    first, second = add_items(db, pid, 2, priorities=[2.0, 1.0])
    annotator = make_user("annotator", pid, username="ann")
    reviewer = make_user("reviewer", pid, username="rev")
    annotator.get(f"/api/projects/{pid}/next", params={"n": 1})
    annotator.post(f"/api/projects/{pid}/items/{first}/label", json={"classes": ["neg"]})
    reviewer.post(f"/api/projects/{pid}/items/{first}/label", json={"classes": ["pos"]})
    reviewer.post(f"/api/projects/{pid}/items/{first}/skip")
    plant_model(db, pid, {second: [0.02, 0.98]})
    applied = client.post(f"/api/projects/{pid}/autolabel", json={"threshold": 0.9})
    assert applied.status_code == 200 and applied.json()["labeled"] == 1

    history = reviewer.get(f"/api/projects/{pid}/items/{first}/audit").json()
    assert [(h["actor"], h["action"], h["detail"]["classes"]) for h in history] == [
        ("ann", "label.create", ["neg"]),
        ("rev", "label.change", ["pos"]),
        ("rev", "label.skip", []),
    ]
    auto = reviewer.get(f"/api/projects/{pid}/items/{second}/audit").json()
    assert [(h["action"], h["detail"]["classes"], h["detail"]["confidence"]) for h in auto] == [
        ("label.auto", ["pos"], 0.98)
    ]
    assert auto[0]["actor"].startswith("model v")
    run = events(client, pid, action="autolabel")[0]
    assert run["actor"] == "admin" and run["detail"]["labeled"] == 1
    assert run["detail"]["threshold"] == 0.9
    assert reviewer.get(f"/api/projects/{pid}/items/999999/audit").status_code == 404


def test_the_history_exports_as_csv_and_jsonl(
    client: TestClient, db: Database, make_user: Callable[..., Any]
) -> None:
    pid = client.post("/api/projects", json={"name": "Ex port", "classes": ["a", "b"]}).json()["id"]
    ids = add_items(db, pid, 3)
    for item_id, name in zip(ids, ["a", "b", "a"], strict=True):
        client.post(f"/api/projects/{pid}/items/{item_id}/label", json={"classes": [name]})
    client.post(f"/api/projects/{pid}/items/{ids[0]}/label", json={"classes": ["b"]})

    response = client.get(f"/api/projects/{pid}/audit/export", params={"format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="ex-port-audit.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == ["at", "actor", "action", "project_id", "item_id", "detail"]
    actions = [r["action"] for r in rows]
    assert actions[0] == "project.create"
    assert actions.count("label.create") == 3 and actions.count("label.change") == 1
    assert actions[-1] == "audit.export"  # the export itself is recorded, before it streams
    change = next(r for r in rows if r["action"] == "label.change")
    assert change["actor"] == "admin" and change["item_id"] == str(ids[0])
    assert json.loads(change["detail"])["classes"] == ["b"]
    times = [r["at"] for r in rows]
    assert times == sorted(times)

    jsonl = client.get(f"/api/projects/{pid}/audit/export", params={"format": "jsonl"})
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [line["action"] for line in lines][:-1] == actions  # plus the second export
    bad = client.get(f"/api/projects/{pid}/audit/export", params={"format": "xml"})
    assert bad.status_code == 422 and "csv, jsonl" in bad.json()["detail"]
    # small pages stream the same rows
    from labella.services import audit

    paged = "".join(audit.iter_export(db, pid, fmt="csv", actor="t", page_rows=2)).splitlines()
    first = response.text.splitlines()
    # the same rows, then the two exports made since (jsonl, and this one)
    assert paged[: len(first)] == first and len(paged) == len(first) + 2
