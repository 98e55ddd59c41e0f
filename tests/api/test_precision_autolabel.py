"""Auto-label to a target precision, the evaluation sample and the stopping signal over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from labella.storage.db import Database
from tests.services.labeling_data import add_items, plant_model
from tests.services.test_evaluation import (
    current_model_labels,
    plant_overconfident_model,
    plant_versions,
)


def test_preview_then_flush_to_a_target_precision(
    client: TestClient, db: Database, make_project: Callable[..., Any]
) -> None:
    pid, truth = plant_overconfident_model(db, make_project, n_pool=1500)
    response = client.get(f"/api/projects/{pid}/autolabel/preview?target_precision=0.95")
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["calibrated"] is True and plan["temperature"] > 1.5
    assert plan["count"] > 50
    assert plan["ci_low"] <= plan["estimated_precision"] <= plan["ci_high"]
    assert plan["estimated_precision"] >= 0.95
    assert isinstance(plan["warnings"], list)
    assert bool(plan["warnings"]) == (plan["ci_low"] < 0.95)

    response = client.post(f"/api/projects/{pid}/autolabel", json={"target_precision": 0.95})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["labeled"] == plan["count"]
    assert body["threshold"] == plan["threshold"]
    labels = current_model_labels(db, pid)
    measured = sum(labels[i] == truth[i] for i in labels) / len(labels)
    assert plan["ci_low"] <= measured <= plan["ci_high"]


def test_preview_warns_when_the_evaluation_sample_cannot_confirm_the_target(
    client: TestClient, db: Database, make_project: Callable[..., Any]
) -> None:
    pid, _ = plant_overconfident_model(db, make_project, n_eval=40, n_pool=1500)
    response = client.get(f"/api/projects/{pid}/autolabel/preview?target_precision=0.95")
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["count"] > 0 and plan["ci_low"] < 0.95
    (warning,) = plan["warnings"]
    assert "cannot confirm the 95.0% target" in warning
    assert f"its {plan['eval_n']} items" in warning


def test_bad_precision_requests_are_clear_4xx(
    client: TestClient, db: Database, make_project: Callable[..., Any]
) -> None:
    pid = make_project().id
    ids = add_items(db, pid, 4)
    url = f"/api/projects/{pid}/autolabel"
    both = client.post(url, json={"threshold": 0.9, "target_precision": 0.9})
    assert both.status_code == 422 and "exactly one" in both.json()["detail"]
    assert client.post(url, json={}).status_code == 422
    assert client.post(url, json={"target_precision": 1.0}).status_code == 422
    assert client.get(f"{url}/preview").status_code == 422
    assert client.get(f"{url}/preview?target_precision=1.5").status_code == 422
    # no model yet, then a model without a labeled evaluation sample: 409 saying what is missing
    assert client.get(f"{url}/preview?target_precision=0.9").status_code == 409
    plant_model(db, pid, {i: [0.2, 0.8] for i in ids})
    response = client.post(url, json={"target_precision": 0.9})
    assert response.status_code == 409
    assert "evaluation sample" in response.json()["detail"]
    # the plain threshold still works as before
    assert client.post(url, json={"threshold": 0.8}).json()["labeled"] == 4


def test_eval_sample_and_stopping_routes(
    client: TestClient, db: Database, make_project: Callable[..., Any]
) -> None:
    pid = make_project().id
    add_items(db, pid, 30)
    drawn = client.post(f"/api/projects/{pid}/evaluation-sample?size=10").json()
    assert (drawn["drawn"], drawn["size"], drawn["unlabeled"]) == (10, 10, 10)
    again = client.post(f"/api/projects/{pid}/evaluation-sample?size=10").json()
    assert again["drawn"] == 0
    assert client.get(f"/api/projects/{pid}/evaluation-sample").json()["size"] == 10
    assert client.post(f"/api/projects/{pid}/evaluation-sample?size=-1").status_code == 422

    assert client.get(f"/api/projects/{pid}/stopping").json()["stop"] is False
    plant_versions(db, pid, [(100, 0.90), (200, 0.901), (300, 0.902)], agreement=0.99)
    signal = client.get(f"/api/projects/{pid}/stopping").json()
    assert signal["stop"] is True
    assert signal["estimated_labels_saved"] == 30
    assert client.get("/api/projects/999999/stopping").status_code == 404
