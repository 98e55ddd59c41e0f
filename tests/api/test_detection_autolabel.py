"""The box auto-label routes: preview with the measured precision and recall, apply, and every bad
request answered with a 4xx that names the problem."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from labella.storage.db import Database
from tests.services.test_detection_autolabel import World, project, world

__all__ = ["project", "world"]  # fixtures used by the tests below


def url(project_id: int, tail: str = "") -> str:
    return f"/api/projects/{project_id}/detections/autolabel{tail}"


def test_preview_then_apply(client: TestClient, world: World) -> None:
    preview = client.get(url(world.project_id, "/preview"), params={"target_precision": 0.95})
    assert preview.status_code == 200, preview.text
    plan = preview.json()
    assert plan["threshold"] == 0.8 and plan["images"] == 4 and plan["boxes"] == 2
    assert plan["precision"] == 1.0 and abs(plan["recall"] - 5 / 6) < 1e-9
    assert plan["precision_low"] < 1.0 and "item_ids" not in plan
    applied = client.post(
        url(world.project_id),
        json={"target_precision": 0.95, "model_version": plan["model_version"]},
    )
    assert applied.status_code == 200, applied.text
    assert applied.json() == {
        "target_precision": 0.95,
        "threshold": 0.8,
        "labeled": 4,
        "boxes": 2,
        "model_version": plan["model_version"],
    }
    stale = client.post(
        url(world.project_id),
        json={"target_precision": 0.95, "model_version": plan["model_version"] + 1},
    )
    assert stale.status_code == 409 and "preview again" in stale.json()["detail"]


def test_bad_requests_name_the_problem(client: TestClient, world: World) -> None:
    pid = world.project_id
    for params in ({"target_precision": 1.5}, {"target_precision": 0}):
        response = client.get(url(pid, "/preview"), params=params)
        assert response.status_code == 422 and "target_precision" in response.json()["detail"]
    response = client.post(url(pid), json={"target_precision": 1})
    assert response.status_code == 422 and "target_precision" in response.json()["detail"]
    response = client.get(url(pid, "/preview"))
    assert response.status_code == 422 and "target_precision" in response.json()["detail"]
    response = client.get(url(pid, "/preview"), params={"target_precision": 0.9, "floor": 2})
    assert response.status_code == 422 and "floor" in response.json()["detail"]
    # the classification flush points a detection project to these routes
    response = client.get(f"/api/projects/{pid}/autolabel/preview", params={"threshold": 0.9})
    assert response.status_code == 422 and "/detections/autolabel" in response.json()["detail"]


def test_no_detector_yet_is_a_conflict(client: TestClient, db: Database, project: Any) -> None:
    response = client.get(url(project.id, "/preview"), params={"target_precision": 0.9})
    assert response.status_code == 409 and "no trained model" in response.json()["detail"]
    missing = client.get(url(999_999, "/preview"), params={"target_precision": 0.9})
    assert missing.status_code == 404
