"""Overlap, review and agreement through the API, as the roles that use them: annotators answer
what they are served and see only their own work, reviewers decide disagreements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from labella.storage.db import Database
from tests.services.labeling_data import add_items


def overlap_project(client: TestClient, make_project: Callable[..., Any], **patch: Any) -> int:
    project = make_project()
    response = client.patch(f"/api/projects/{project.id}", json={"overlap": 2, **patch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["overlap"] == 2 and body["overlap_share"] == 1.0
    return int(project.id)


def test_annotators_answer_overlapped_items_and_a_reviewer_decides(
    client: TestClient, db: Database, make_project: Callable[..., Any], make_user: Any
) -> None:
    pid = overlap_project(client, make_project)
    [item] = add_items(db, pid, 1)
    alice, bob, carol = (make_user("annotator", pid, username=n) for n in ("alice", "bob", "carol"))
    rita = make_user("reviewer", pid, username="rita")
    base = f"/api/projects/{pid}"

    for annotator in (alice, bob):
        served = annotator.get(f"{base}/next", params={"n": 5}).json()["items"]
        assert [i["item_id"] for i in served] == [item]
    assert carol.get(f"{base}/next").json()["items"] == []  # both places taken
    refused = carol.post(f"{base}/items/{item}/label", json={"classes": ["negative"]})
    assert refused.status_code == 403 and "not served to you" in refused.json()["detail"]

    first = alice.post(f"{base}/items/{item}/label", json={"classes": ["negative"]})
    assert first.status_code == 201, first.text
    assert first.json()["label"]["kind"] == "answer" and first.json()["item_status"] == "unlabeled"
    # bob, served the same item, cannot see alice's answer before giving his own
    seen = bob.get(f"{base}/items/{item}")
    assert seen.status_code == 200 and seen.json()["labels"] == []
    second = bob.post(f"{base}/items/{item}/label", json={"classes": ["positive"]})
    assert second.json()["item_status"] == "in_review"
    assert [lab["annotator"] for lab in bob.get(f"{base}/items/{item}").json()["labels"]] == ["bob"]
    assert len(rita.get(f"{base}/items/{item}").json()["labels"]) == 2

    denied = alice.get(f"{base}/review")
    assert denied.status_code == 403 and "'review'" in denied.json()["detail"]
    queue = rita.get(f"{base}/review", params={"kind": "disagreement"}).json()
    assert queue["counts"] == {"suspect_label": 0, "disagreement": 1, "work_sample": 0}
    [entry] = queue["flags"]
    assert entry["label_id"] is None and entry["item_status"] == "in_review"
    assert [(a["annotator"], a["classes"][0]["name"]) for a in entry["answers"]] == [
        ("alice", "negative"),
        ("bob", "positive"),
    ]
    no_label = rita.post(f"{base}/review/{entry['id']}", json={"action": "approve"})
    assert no_label.status_code == 422 and "no majority" in no_label.json()["detail"]
    decided = rita.post(
        f"{base}/review/{entry['id']}", json={"action": "change", "classes": ["positive"]}
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "changed" and decided.json()["resolved_by"] == "rita"
    current = rita.get(f"{base}/items/{item}").json()["current_label"]
    assert current["decided_by"] == "reviewer" and current["annotator"] == "rita"

    agreement = rita.get(f"{base}/agreement").json()
    assert (agreement["items"], agreement["annotators"], agreement["percent_agreement"]) == (
        1,
        2,
        0.0,
    )
    # one item split one against one: 1 - (n - 1) * 2 / (2 * 1 * 1) with n = 2
    assert agreement["krippendorff_alpha"] == 0.0
    assert agreement["decided_by"] == {"reviewer": 1}
    assert alice.get(f"{base}/agreement").status_code == 403

    own = alice.get(f"{base}/annotators").json()["annotators"]
    assert [(s["annotator"], s["reviewed"], s["agreement_with_review"]) for s in own] == [
        ("alice", 1, 0.0)
    ]
    everyone = {s["annotator"] for s in rita.get(f"{base}/annotators").json()["annotators"]}
    assert everyone == {"alice", "bob", "rita"}


def test_review_and_settings_refuse_bad_input(
    client: TestClient, make_project: Callable[..., Any]
) -> None:
    project = make_project()
    base = f"/api/projects/{project.id}"
    bad_kind = client.get(f"{base}/review", params={"kind": "typo"})
    assert bad_kind.status_code == 422 and "unknown review kind 'typo'" in bad_kind.json()["detail"]
    bad_status = client.get(f"{base}/review", params={"status": "closed"})
    assert bad_status.status_code == 422 and "open, resolved, all" in bad_status.json()["detail"]
    too_many = client.patch(base, json={"overlap": 50})
    assert too_many.status_code == 422 and "overlap" in too_many.json()["detail"]
    bad_share = client.patch(base, json={"overlap_share": 2})
    assert bad_share.status_code == 422 and "overlap_share" in bad_share.json()["detail"]
    window = client.get(f"{base}/annotators", params={"window_hours": 0})
    assert window.status_code == 422 and "window_hours" in window.json()["detail"]
    assert client.get(f"{base}").json()["overlap"] == 1
    assert client.get("/api/projects/999999/agreement").status_code == 404


def test_work_samples_reach_the_queue(
    client: TestClient, db: Database, make_project: Callable[..., Any], make_user: Any
) -> None:
    project = make_project()
    pid = project.id
    client.patch(f"/api/projects/{pid}", json={"review_sample_share": 1.0})
    ids = add_items(db, pid, 2)
    dan = make_user("annotator", pid, username="dan")
    served = [i["item_id"] for i in dan.get(f"/api/projects/{pid}/next").json()["items"]]
    assert sorted(served) == sorted(ids)
    for item_id in served:
        done = dan.post(
            f"/api/projects/{pid}/items/{item_id}/label", json={"classes": ["positive"]}
        )
        assert done.status_code == 201 and done.json()["label"]["kind"] == "label"
    queue = client.get(f"/api/projects/{pid}/review", params={"kind": "work_sample"}).json()
    assert [f["annotator"] for f in queue["flags"]] == ["dan", "dan"]
    assert {f["kind"] for f in queue["flags"]} == {"work_sample"}
    changed = client.post(
        f"/api/projects/{pid}/review/{queue['flags'][0]['id']}",
        json={"action": "change", "classes": ["negative"]},
    )
    assert changed.status_code == 200 and changed.json()["status"] == "changed"
    history = client.get(f"/api/projects/{pid}/review/items/{queue['flags'][0]['item_id']}")
    assert [f["status"] for f in history.json()] == ["changed"]
