"""Auto-label over HTTP and in the service: preview equals apply, only confident unlabeled items
change, human labels and skips are untouched, provenance is recorded, re-runs are safe."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from labella.services import autolabel, labeling
from labella.storage.db import Database
from labella.storage.models import Label
from tests.services.labeling_data import add_items, plant_model

# item index -> (p_negative, p_positive)
PROBS = [
    (0.97, 0.03),  # 0 confident negative
    (0.05, 0.95),  # 1 confident positive
    (0.40, 0.60),  # 2 unsure
    (0.01, 0.99),  # 3 confident positive, but a human labeled it negative
    (0.92, 0.08),  # 4 confident negative, but skipped
    (0.89, 0.11),  # 5 just under 0.9
    (0.10, 0.90),  # 6 exactly at the threshold
]


@pytest.fixture
def planted(client: TestClient, db: Database) -> dict[str, Any]:
    response = client.post("/api/projects", json={"name": "p", "classes": ["negative", "positive"]})
    project_id = response.json()["id"]
    class_ids = [c["id"] for c in response.json()["classes"]]
    ids = add_items(db, project_id, len(PROBS) + 1)  # the last item has no prediction
    labeling.submit_label(db, project_id, ids[3], classes=["negative"], annotator="alice")
    labeling.skip_item(db, project_id, ids[4], annotator="alice")
    model = plant_model(db, project_id, {ids[i]: p for i, p in enumerate(PROBS)})
    return {"project_id": project_id, "ids": ids, "class_ids": class_ids, "model": model}


def current_labels(db: Database, project_id: int) -> dict[int, tuple[Any, ...]]:
    """item id -> (source, annotator, confidence, model_version_id, skipped, class ids)."""
    with db.reader() as session:
        labels = session.scalars(
            select(Label).where(Label.project_id == project_id, Label.is_current.is_(True))
        )
        return {
            label.item_id: (
                label.source,
                label.annotator,
                label.confidence,
                label.model_version_id,
                label.skipped,
                sorted(v.class_id for v in label.values),
            )
            for label in labels
        }


def count_labels(db: Database, project_id: int) -> int:
    with db.reader() as session:
        return int(session.scalar(select(func.count()).where(Label.project_id == project_id)) or 0)


def test_preview_counts_what_apply_labels(client: TestClient, db: Database, planted: dict) -> None:
    pid, ids, model = planted["project_id"], planted["ids"], planted["model"]
    negative, positive = planted["class_ids"]
    before = current_labels(db, pid)

    preview = client.get(f"/api/projects/{pid}/autolabel/preview", params={"threshold": 0.9})
    assert preview.status_code == 200, preview.text
    assert preview.json() == {
        "threshold": 0.9,
        "count": 3,
        "by_class": {"negative": 1, "positive": 2},
        "model_version": model.version,
    }

    applied = client.post(f"/api/projects/{pid}/autolabel", json={"threshold": 0.9})
    assert applied.status_code == 200, applied.text
    assert applied.json() == {"threshold": 0.9, "labeled": 3, "model_version": model.version}

    after = current_labels(db, pid)
    changed = {item_id for item_id in after if after[item_id] != before.get(item_id)}
    assert changed == {ids[0], ids[1], ids[6]}
    assert after[ids[0]] == ("model", None, pytest.approx(0.97), model.id, False, [negative])
    assert after[ids[1]] == ("model", None, pytest.approx(0.95), model.id, False, [positive])
    assert after[ids[3]] == before[ids[3]]  # the human label stands
    assert after[ids[4]] == before[ids[4]]  # so does the skip

    statuses = {
        i: client.get(f"/api/projects/{pid}/items/{i}").json()["item"]["status"] for i in ids
    }
    assert [statuses[i] for i in ids] == [
        "auto",
        "auto",
        "unlabeled",
        "labeled",
        "skipped",
        "unlabeled",
        "auto",
        "unlabeled",
    ]
    history = client.get(f"/api/projects/{pid}/items/{ids[1]}").json()
    assert history["current_label"]["source"] == "model"
    assert history["current_label"]["model_version"] == model.version
    assert history["current_label"]["annotator"] is None
    # auto-labeled items leave the queue
    served = {i["item_id"] for i in client.get(f"/api/projects/{pid}/next?n=50").json()["items"]}
    assert served == {ids[2], ids[5], ids[7]}


def test_rerunning_is_safe_and_a_newer_model_refreshes_only_model_labels(
    client: TestClient, db: Database, planted: dict
) -> None:
    pid, ids = planted["project_id"], planted["ids"]
    assert autolabel.apply(db, pid, threshold=0.9).labeled == 3
    n_labels = count_labels(db, pid)
    again = autolabel.apply(db, pid, threshold=0.9)
    assert again.labeled == 0 and count_labels(db, pid) == n_labels
    assert autolabel.preview(db, pid, threshold=0.9).count == 0

    newer = plant_model(db, pid, {ids[i]: (0.02, 0.98) for i in range(len(PROBS))})
    preview = autolabel.preview(db, pid, threshold=0.9)
    # items 0, 1, 6 (auto by the old model), 2 and 5 (unlabeled): never 3 (human) or 4 (skipped)
    assert preview.count == 5 and preview.model_version == newer.version
    assert autolabel.apply(db, pid, threshold=0.9).labeled == 5
    after = current_labels(db, pid)
    assert after[ids[0]][3] == newer.id and after[ids[0]][0] == "model"
    assert after[ids[3]][:2] == ("human", "alice")
    history = labeling.item_history(db, pid, ids[0])
    assert [(h.source, h.model_version, h.is_current) for h in history.labels] == [
        ("model", newer.version, True),
        ("model", planted["model"].version, False),
    ]


def test_a_human_label_supersedes_an_auto_label(
    client: TestClient, db: Database, planted: dict
) -> None:
    pid, ids = planted["project_id"], planted["ids"]
    autolabel.apply(db, pid, threshold=0.9)
    response = client.post(
        f"/api/projects/{pid}/items/{ids[0]}/label", json={"classes": ["positive"]}
    )
    assert response.status_code == 201
    assert current_labels(db, pid)[ids[0]][0] == "human"
    # and the next auto-label leaves it alone
    assert autolabel.apply(db, pid, threshold=0.5).labeled == 2  # items 2 and 5
    assert current_labels(db, pid)[ids[0]][0] == "human"


def test_small_chunks_give_the_same_result(db: Database, planted: dict) -> None:
    pid = planted["project_id"]
    preview = autolabel.preview(db, pid, threshold=0.5)
    result = autolabel.apply(db, pid, threshold=0.5, chunk=2)
    assert result.labeled == preview.count == 5  # items 0, 1, 2, 5, 6


def test_multi_label_auto_labels_carry_every_predicted_class(
    client: TestClient, db: Database
) -> None:
    response = client.post(
        "/api/projects", json={"name": "tags", "classes": ["a", "b", "c"], "multi_label": True}
    )
    pid = response.json()["id"]
    ids = add_items(db, pid, 2)
    plant_model(db, pid, {ids[0]: (0.99, 0.97, 0.02), ids[1]: (0.6, 0.5, 0.4)})
    result = client.post(f"/api/projects/{pid}/autolabel", json={"threshold": 0.9}).json()
    assert result["labeled"] == 1
    label = client.get(f"/api/projects/{pid}/items/{ids[0]}").json()["current_label"]
    assert [c["name"] for c in label["classes"]] == ["a", "b"]


def test_bad_autolabel_requests(client: TestClient, db: Database, planted: dict) -> None:
    pid = planted["project_id"]
    n_labels = count_labels(db, pid)
    for threshold in (0, -0.5, 1.5, "high"):
        preview = client.get(
            f"/api/projects/{pid}/autolabel/preview", params={"threshold": threshold}
        )
        assert preview.status_code == 422, preview.text
        assert "threshold" in preview.json()["detail"]
        applied = client.post(f"/api/projects/{pid}/autolabel", json={"threshold": threshold})
        assert applied.status_code == 422, applied.text
        assert "threshold" in applied.json()["detail"]
    assert client.get(f"/api/projects/{pid}/autolabel/preview").status_code == 422
    assert client.post("/api/projects/999999/autolabel", json={"threshold": 0.9}).status_code == 404
    assert count_labels(db, pid) == n_labels

    fresh = client.post("/api/projects", json={"name": "fresh", "classes": ["x", "y"]}).json()
    for response in (
        client.get(f"/api/projects/{fresh['id']}/autolabel/preview", params={"threshold": 0.9}),
        client.post(f"/api/projects/{fresh['id']}/autolabel", json={"threshold": 0.9}),
    ):
        assert response.status_code == 409
        assert "no trained model yet" in response.json()["detail"]


def test_service_threshold_checks(db: Database, planted: dict) -> None:
    from labella.errors import InvalidInput

    for threshold in (0.0, 1.01, float("nan"), float("inf")):
        with pytest.raises(InvalidInput, match="threshold"):
            autolabel.preview(db, planted["project_id"], threshold=threshold)
    assert autolabel.preview(db, planted["project_id"], threshold=1.0).count == 0
