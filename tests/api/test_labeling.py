"""The labeling loop over HTTP: next batch, label, change, skip, history, and clear 4xx errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from labella.storage.db import Database
from labella.storage.models import Label
from tests.services.labeling_data import add_items


def create_project(client: TestClient, **body: Any) -> dict[str, Any]:
    payload = {"name": "reviews", "classes": ["negative", "positive"], **body}
    response = client.post("/api/projects", json=payload)
    assert response.status_code == 201, response.text
    return response.json()


def next_batch(client: TestClient, project_id: int, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/projects/{project_id}/next", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_next_batch_leases_items_in_queue_order(
    client: TestClient, db: Database, make_user: Callable[..., Any]
) -> None:
    project = create_project(client)
    pid = project["id"]
    ids = add_items(db, pid, 6, priorities=[None, 5.0, None, 9.0, None, None])
    alice = make_user("annotator", pid, username="alice")
    bob = make_user("annotator", pid, username="bob")
    # the signed-in user is the annotator; a name in the query is ignored
    body = next_batch(alice, pid, n=3, annotator="mallory")
    assert body["annotator"] == "alice" and body["lease_seconds"] > 0
    items = body["items"]
    assert [i["item_id"] for i in items][:2] == [ids[3], ids[1]]
    assert [i["reason"] for i in items][:2] == ["planted 9.0", "planted 5.0"]
    assert items[2]["priority"] is None and items[2]["reason"] == "random (not yet ranked)"
    assert items[0]["text"] == "text 3" and items[0]["external_id"] == "text-3"
    assert items[0]["prediction"] is None and items[0]["lease_until"]

    bobs = next_batch(bob, pid, n=10)["items"]
    assert len(bobs) == 3 and not {i["item_id"] for i in bobs} & {i["item_id"] for i in items}
    again = next_batch(alice, pid, n=3)["items"]
    assert [i["item_id"] for i in again] == [i["item_id"] for i in items]


def test_label_change_and_history(
    client: TestClient, db: Database, make_user: Callable[..., Any]
) -> None:
    project = create_project(client)
    pid = project["id"]
    negative, positive = (c["id"] for c in project["classes"])
    (item_id,) = add_items(db, pid, 1)
    alice = make_user("annotator", pid, username="alice")
    bob = make_user("reviewer", pid, username="bob")
    assert next_batch(alice, pid, n=1)["items"][0]["item_id"] == item_id

    first = alice.post(
        f"/api/projects/{pid}/items/{item_id}/label",
        json={"classes": ["negative"], "annotator": "alice"},
    )
    assert first.status_code == 201, first.text
    assert first.json()["item_status"] == "labeled"
    assert first.json()["label"]["classes"] == [{"id": negative, "name": "negative"}]
    assert first.json()["training_job_id"] is None

    changed = bob.post(
        f"/api/projects/{pid}/items/{item_id}/label",
        json={"classes": [positive], "annotator": "alice"},  # ignored: bob is signed in
    )
    assert changed.status_code == 201, changed.text

    history = client.get(f"/api/projects/{pid}/items/{item_id}").json()
    assert history["item"]["status"] == "labeled"
    assert history["current_label"]["annotator"] == "bob"
    assert [
        (h["annotator"], h["source"], h["is_current"], [c["name"] for c in h["classes"]])
        for h in history["labels"]
    ] == [("bob", "human", True, ["positive"]), ("alice", "human", False, ["negative"])]
    assert history["labels"][1]["superseded_at"] is not None
    assert history["prediction"] is None


def test_skip(client: TestClient, db: Database, make_user: Callable[..., Any]) -> None:
    pid = create_project(client)["id"]
    ids = add_items(db, pid, 2, priorities=[2.0, 1.0])
    carol = make_user("annotator", pid, username="carol")
    next_batch(carol, pid, n=1)
    response = carol.post(f"/api/projects/{pid}/items/{ids[0]}/skip", json={"annotator": "x"})
    assert response.status_code == 201, response.text
    assert response.json()["item_status"] == "skipped"
    assert response.json()["label"]["skipped"] is True
    # the body is optional
    assert client.post(f"/api/projects/{pid}/items/{ids[1]}/skip").status_code == 201
    history = client.get(f"/api/projects/{pid}/items/{ids[0]}").json()
    assert history["current_label"]["annotator"] == "carol"
    assert next_batch(client, pid)["items"] == []


def test_labels_reaching_the_retrain_threshold_schedule_training(
    client: TestClient, db: Database
) -> None:
    pid = create_project(client, retrain_every=2)["id"]
    ids = add_items(db, pid, 2)
    answers = [
        client.post(f"/api/projects/{pid}/items/{item_id}/label", json={"classes": [name]}).json()
        for item_id, name in zip(ids, ["negative", "positive"], strict=True)
    ]
    job_id = answers[1]["training_job_id"]
    assert answers[0]["training_job_id"] is None and job_id is not None
    job = client.get(f"/api/jobs/{job_id}").json()
    assert (job["kind"], job["status"], job["project_id"]) == ("train", "queued", pid)


def test_bad_requests_are_4xx_with_the_reason_and_change_nothing(
    client: TestClient, db: Database
) -> None:
    project = create_project(client)
    pid = project["id"]
    other = create_project(client, name="other")["id"]
    (item_id,) = add_items(db, pid, 1)
    (foreign,) = add_items(db, other, 1, prefix="foreign")
    url = f"/api/projects/{pid}/items/{item_id}"
    cases: list[tuple[str, str, Any, int, str]] = [
        ("post", f"{url}/label", {"classes": ["meh"]}, 422, "unknown class 'meh'"),
        ("post", f"{url}/label", {"classes": ["meh"]}, 422, "negative (id"),
        ("post", f"{url}/label", {"classes": [123456]}, 422, "unknown class 123456"),
        ("post", f"{url}/label", {"classes": ["negative", "positive"]}, 422, "exactly one class"),
        ("post", f"{url}/label", {"classes": []}, 422, "exactly one class, got 0"),
        ("post", f"{url}/label", {}, 422, "classes"),
        ("post", f"{url}/label", {"classes": ["negative"], "annotator": ""}, 422, "annotator"),
        ("post", f"{url}/label", {"classes": "negative"}, 422, "classes"),
        (
            "post",
            f"/api/projects/{pid}/items/{foreign}/label",
            {"classes": ["negative"]},
            404,
            f"item {foreign} does not exist in project {pid}",
        ),
        (
            "post",
            f"/api/projects/{pid}/items/999999/label",
            {"classes": ["negative"]},
            404,
            "999999",
        ),
        ("post", f"/api/projects/999999/items/{item_id}/label", {"classes": ["a"]}, 404, "project"),
        ("post", f"/api/projects/{other}/items/{item_id}/skip", None, 404, "does not exist"),
        ("get", f"/api/projects/{other}/items/{item_id}", None, 404, "does not exist"),
        ("get", "/api/projects/999999/next", None, 404, "project 999999 does not exist"),
        ("get", f"/api/projects/{pid}/next?n=0", None, 422, "n"),
        ("get", f"/api/projects/{pid}/next?n=100000", None, 422, "n"),
        ("get", f"/api/projects/{pid}/next?n=ten", None, 422, "n"),
    ]
    for method, path, body, code, message in cases:
        if method == "post":
            response = client.post(path, json=body) if body is not None else client.post(path)
        else:
            response = client.get(path)
        assert response.status_code == code, (path, body, response.text)
        assert message in response.json()["detail"], (path, body, response.json())
    history = client.get(url).json()
    assert history["labels"] == [] and history["item"]["status"] == "unlabeled"
    assert history["item"]["leased_by"] is None
    with db.reader() as session:
        assert session.scalar(select(func.count()).select_from(Label)) == 0


def test_routes_are_in_the_openapi_docs(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/projects/{project_id}/next",
        "/api/projects/{project_id}/items/{item_id}/label",
        "/api/projects/{project_id}/items/{item_id}/skip",
        "/api/projects/{project_id}/items/{item_id}",
        "/api/projects/{project_id}/autolabel/preview",
        "/api/projects/{project_id}/autolabel",
    ):
        assert path in paths, path


def test_a_retried_answer_with_the_same_request_id_is_recorded_once(
    client: TestClient, db: Database
) -> None:
    pid = create_project(client)["id"]
    (item_id,) = add_items(db, pid, 1)
    url = f"/api/projects/{pid}/items/{item_id}/label"
    body = {"classes": ["positive"], "annotator": "ana", "request_id": "answer-1"}
    first = client.post(url, json=body)
    again = client.post(url, json=body)
    assert first.status_code == again.status_code == 201, again.text
    assert first.json()["label"]["id"] == again.json()["label"]["id"]
    assert len(client.get(f"/api/projects/{pid}/items/{item_id}").json()["labels"]) == 1
    # a new answer (a new key) for the same item is a change, kept in the history
    changed = client.post(url, json={**body, "classes": ["negative"], "request_id": "answer-2"})
    assert changed.json()["label"]["id"] != first.json()["label"]["id"]
    assert len(client.get(f"/api/projects/{pid}/items/{item_id}").json()["labels"]) == 2
    skip_url = f"/api/projects/{pid}/items/{item_id}/skip"
    skip = {"annotator": "ana", "request_id": "answer-3"}
    assert client.post(skip_url, json=skip).json() == client.post(skip_url, json=skip).json()
    assert len(client.get(f"/api/projects/{pid}/items/{item_id}").json()["labels"]) == 3
