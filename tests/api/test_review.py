"""The review-queue routes over a project whose planted labels include a few flips."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from labella.config import Settings
from labella.jobs.worker import Worker
from labella.storage.db import Database
from tests.services.test_label_qa import PlantedProject, planted_project


@pytest.fixture
def trained(
    db: Database,
    settings: Settings,
    make_project: Callable[..., Any],
    worker: Worker,
    client: TestClient,
) -> PlantedProject:
    planted = planted_project(db, settings, make_project, seed=7)
    assert client.post(f"/api/projects/{planted.id}/train").status_code in (201, 202)
    worker.run_until_idle()
    return planted


def test_review_queue_and_decisions(client: TestClient, trained: PlantedProject) -> None:
    base = f"/api/projects/{trained.id}/review"
    response = client.get(base, params={"limit": 3})
    assert response.status_code == 200, response.text
    flags = response.json()["flags"]
    assert 1 <= len(flags) <= 3
    first = flags[0]
    assert first["item_id"] in trained.flipped
    assert first["status"] == "open" and first["suggested_class"]["name"]
    assert first["label_classes"][0]["name"] != first["suggested_class"]["name"]

    changed = client.post(
        f"{base}/{first['id']}",
        json={"action": "change", "classes": [first["suggested_class"]["name"]]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["status"] == "changed" and changed.json()["resolution_label_id"]
    history = client.get(f"/api/projects/{trained.id}/items/{first['item_id']}").json()
    # the signed-in reviewer (the client's admin) made the new label
    assert [label["annotator"] for label in history["labels"]] == ["admin", "alice"]
    item_flags = client.get(f"{base}/items/{first['item_id']}").json()
    assert [f["status"] for f in item_flags] == ["changed"]

    again = client.post(f"{base}/{first['id']}", json={"action": "keep"})
    assert again.status_code == 409 and "already resolved" in again.json()["detail"]
    if len(flags) > 1:
        kept = client.post(f"{base}/{flags[1]['id']}", json={"action": "keep", "reviewer": "r"})
        assert kept.status_code == 200 and kept.json()["status"] == "kept"


def test_review_errors_are_clear(client: TestClient, trained: PlantedProject) -> None:
    base = f"/api/projects/{trained.id}/review"
    flag = client.get(base, params={"limit": 1}).json()["flags"][0]
    missing = client.post(f"{base}/999999", json={"action": "keep"})
    assert missing.status_code == 404 and "flag 999999" in missing.json()["detail"]
    bad_action = client.post(f"{base}/{flag['id']}", json={"action": "drop"})
    assert bad_action.status_code == 422
    assert "'approve' ('keep') or 'change'" in bad_action.json()["detail"]
    bad_class = client.post(f"{base}/{flag['id']}", json={"action": "change", "classes": ["zz"]})
    assert bad_class.status_code == 422 and "unknown class 'zz'" in bad_class.json()["detail"]
    no_body = client.post(f"{base}/{flag['id']}", json={})
    assert no_body.status_code == 422 and "action" in no_body.json()["detail"]
    assert client.get(base, params={"limit": 0}).status_code == 422
    assert client.get("/api/projects/999999/review").status_code == 404
    # the flag is untouched by the refused requests
    assert client.get(base, params={"limit": 1}).json()["flags"][0] == flag
