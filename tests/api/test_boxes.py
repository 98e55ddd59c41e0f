"""Bounding boxes as an image's label (the box editor's API): submit, read back with the history
and the detector's prelabels, idempotent retries, and every bad input answered with a 4xx that
names the problem while nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from labella.services import box_labeling
from labella.storage.db import Database
from labella.storage.models import (
    Item,
    Label,
    LabelBox,
    LabelValue,
    ModelVersion,
    Prediction,
    Project,
)
from tests.image_files import image_bytes
from tests.services.labeling_data import add_items

WIDTH, HEIGHT = 40, 30


def detection_project(
    client: TestClient, db: Database, n_images: int = 3, **body: Any
) -> dict[str, Any]:
    """A detection project (classes cat, dog) with ``n_images`` 40x30 images and no boxes;
    ``items`` holds their ids in upload order."""
    created = client.post(
        "/api/projects",
        json={"name": "boxes", "kind": "object_detection", "classes": ["cat", "dog"], **body},
    )
    assert created.status_code == 201, created.text
    project = dict(created.json())
    files = [
        ("files", (f"img-{i}.png", image_bytes(i, fmt="png", size=(WIDTH, HEIGHT)), "image/png"))
        for i in range(n_images)
    ]
    imported = client.post(f"/api/projects/{project['id']}/detections/import", files=files)
    assert imported.status_code == 201, imported.text
    with db.reader() as session:
        project["items"] = list(
            session.scalars(
                select(Item.id).where(Item.project_id == project["id"]).order_by(Item.id)
            )
        )
    project["class_ids"] = {c["name"]: c["id"] for c in project["classes"]}
    return project


def box(cls: int | str, x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"class": cls, "x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1}


def corners(boxes: list[dict[str, Any]]) -> list[tuple[str, float, float, float, float]]:
    return [(b["name"], b["x_min"], b["y_min"], b["x_max"], b["y_max"]) for b in boxes]


def stored(db: Database, item_id: int) -> tuple[int, int, int]:
    """(labels, label_value rows, label_box rows) of the item."""
    with db.reader() as session:
        label_ids = select(Label.id).where(Label.item_id == item_id)
        return (
            int(session.scalar(select(func.count()).select_from(label_ids.subquery())) or 0),
            int(
                session.scalar(select(func.count()).where(LabelValue.label_id.in_(label_ids))) or 0
            ),
            int(session.scalar(select(func.count()).where(LabelBox.label_id.in_(label_ids))) or 0),
        )


def test_submit_boxes_then_read_them_back_with_history(client: TestClient, db: Database) -> None:
    project = detection_project(client, db)
    pid, item = project["id"], project["items"][0]
    url = f"/api/projects/{pid}/items/{item}/boxes"

    first = client.put(
        url,
        json={
            "boxes": [
                box("cat", 1, 2, 10.5, 12),
                box(project["class_ids"]["dog"], 20, 5, 39, 29),
                box("Cat", 0, 0, 4, 4),  # a name differing only in case is that class
            ]
        },
    )
    assert first.status_code == 200, first.text
    result = first.json()
    assert result["item_status"] == "labeled"
    assert result["label"]["source"] == "human" and result["label"]["annotator"] == "admin"
    assert [c["name"] for c in result["label"]["classes"]] == ["cat", "dog"]  # distinct
    assert corners(result["boxes"]) == [
        ("cat", 1, 2, 10.5, 12),
        ("dog", 20, 5, 39, 29),
        ("cat", 0, 0, 4, 4),
    ]
    assert stored(db, item) == (1, 2, 3)

    read = client.get(url).json()
    assert (read["width"], read["height"], read["status"]) == (WIDTH, HEIGHT, "labeled")
    assert corners(read["current"]["boxes"]) == corners(result["boxes"])
    assert read["previous"] == [] and read["prelabel"] is None

    # changing the boxes keeps the previous ones in the history
    second = client.put(url, json={"boxes": [box("dog", 5, 5, 15, 15)]})
    assert second.status_code == 200, second.text
    read = client.get(url).json()
    assert corners(read["current"]["boxes"]) == [("dog", 5, 5, 15, 15)]
    assert [corners(p["boxes"]) for p in read["previous"]] == [corners(result["boxes"])]
    assert read["previous"][0]["label"]["is_current"] is False
    assert read["previous"][0]["label"]["superseded_at"] is not None
    history = client.get(f"/api/projects/{pid}/items/{item}").json()
    assert [len(label["classes"]) for label in history["labels"]] == [1, 2]
    assert stored(db, item) == (2, 3, 4)


def test_zero_boxes_is_an_answer(client: TestClient, db: Database) -> None:
    project = detection_project(client, db, n_images=1)
    pid, item = project["id"], project["items"][0]
    response = client.put(f"/api/projects/{pid}/items/{item}/boxes", json={"boxes": []})
    assert response.status_code == 200, response.text
    assert response.json()["boxes"] == [] and response.json()["label"]["classes"] == []
    assert response.json()["item_status"] == "labeled"
    assert stored(db, item) == (1, 0, 0)
    # the labeled image leaves the queue
    assert client.get(f"/api/projects/{pid}/next").json()["items"] == []


def test_a_retried_request_is_not_recorded_twice(client: TestClient, db: Database) -> None:
    project = detection_project(client, db, n_images=1)
    pid, item = project["id"], project["items"][0]
    url = f"/api/projects/{pid}/items/{item}/boxes"
    body = {"boxes": [box("cat", 1, 1, 9, 9)], "request_id": "retry-me"}
    first = client.put(url, json=body)
    again = client.put(url, json=body)
    # even a different body under the same key returns what that request already made
    other = client.put(url, json={"boxes": [box("dog", 2, 2, 3, 3)], "request_id": "retry-me"})
    assert first.status_code == again.status_code == other.status_code == 200
    assert first.json()["label"]["id"] == again.json()["label"]["id"] == other.json()["label"]["id"]
    assert corners(other.json()["boxes"]) == [("cat", 1, 1, 9, 9)]
    assert stored(db, item) == (1, 1, 1)


def test_overshoot_under_a_pixel_is_clipped(client: TestClient, db: Database) -> None:
    project = detection_project(client, db, n_images=1)
    pid, item = project["id"], project["items"][0]
    response = client.put(
        f"/api/projects/{pid}/items/{item}/boxes",
        json={"boxes": [box("cat", -0.6, -0.2, WIDTH + 0.9, HEIGHT + 0.4)]},
    )
    assert response.status_code == 200, response.text
    assert corners(response.json()["boxes"]) == [("cat", 0, 0, WIDTH, HEIGHT)]


BAD_BOXES = [
    ([box("horse", 1, 1, 5, 5)], 422, "unknown class 'horse'"),
    ([box("cat", 1, 1, 5, 5), box(999_999, 1, 1, 5, 5)], 422, "box 2 (999999): unknown class"),
    ([box(True, 1, 1, 5, 5)], 422, "boxes.0.class"),
    ([box(1.5, 1, 1, 5, 5)], 422, "boxes.0.class"),
    ([box("cat", 5, 1, 5, 5)], 422, "box 1 (cat) (5,1)-(5,5) has no size"),
    ([box("cat", 6, 1, 5, 5)], 422, "x_max must be greater than x_min"),
    ([box("dog", 1, 9, 5, 2)], 422, "has no size"),
    ([box("cat", -1.5, 1, 5, 5)], 422, f"lies outside the {WIDTH}x{HEIGHT} image"),
    ([box("cat", 1, 1, WIDTH + 1, 5)], 422, f"lies outside the {WIDTH}x{HEIGHT} image"),
    ([box("cat", 1, 1, 5, HEIGHT + 3)], 422, "box 1 (cat) (1,1)-(5,33) lies outside"),
    ([box("cat", WIDTH + 0.2, 1, WIDTH + 0.8, 5)], 422, "lies outside"),  # nothing left inside
    ([box("cat", 1, 1, 5, 5)] * (box_labeling.MAX_BOXES + 1), 422, "at most 1000 boxes"),
    ([{"class": "cat", "x_min": 1, "y_min": 1, "x_max": 5}], 422, "boxes.0.y_max: Field required"),
    ([{"class": "cat", "x_min": "left", "y_min": 1, "x_max": 5, "y_max": 5}], 422, "x_min"),
    ([{"class": None, "x_min": 1, "y_min": 1, "x_max": 5, "y_max": 5}], 422, "boxes.0.class"),
]


@pytest.mark.parametrize(("boxes", "status", "message"), BAD_BOXES)
def test_bad_boxes_are_refused_and_nothing_is_stored(
    client: TestClient, db: Database, boxes: list[Any], status: int, message: str
) -> None:
    project = detection_project(client, db, n_images=1)
    pid, item = project["id"], project["items"][0]
    # a current label first, so that a refused change must leave it as it was
    client.put(f"/api/projects/{pid}/items/{item}/boxes", json={"boxes": [box("cat", 1, 1, 2, 2)]})
    response = client.put(f"/api/projects/{pid}/items/{item}/boxes", json={"boxes": boxes})
    assert response.status_code == status, response.text
    assert message in response.json()["detail"], response.json()["detail"]
    assert stored(db, item) == (1, 1, 1)
    current = client.get(f"/api/projects/{pid}/items/{item}/boxes").json()["current"]
    assert corners(current["boxes"]) == [("cat", 1, 1, 2, 2)]


def test_a_coordinate_that_is_not_a_number_is_refused(client: TestClient, db: Database) -> None:
    project = detection_project(client, db, n_images=1)
    pid, item = project["id"], project["items"][0]
    url = f"/api/projects/{pid}/items/{item}/boxes"
    # JSON has no NaN, but Python's encoder writes one and a lenient parser reads it
    body = '{"boxes": [{"class": "cat", "x_min": NaN, "y_min": 1, "x_max": 5, "y_max": 5}]}'
    response = client.put(url, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "box 1 (cat) has a coordinate that is not a finite number" in response.json()["detail"]
    assert stored(db, item) == (0, 0, 0)


def test_wrong_project_item_or_kind_is_a_clear_4xx(
    client: TestClient, db: Database, make_user: Any
) -> None:
    project = detection_project(client, db, n_images=2)
    pid, item = project["id"], project["items"][0]
    body = {"boxes": [box("cat", 1, 1, 5, 5)]}
    text = client.post("/api/projects", json={"name": "texts", "classes": ["a", "b"]}).json()
    (text_item,) = add_items(db, text["id"], 1)

    missing = client.put(f"/api/projects/{pid}/items/999999/boxes", json=body)
    assert missing.status_code == 404 and "item 999999 does not exist" in missing.json()["detail"]
    elsewhere = client.put(f"/api/projects/{pid}/items/{text_item}/boxes", json=body)
    assert elsewhere.status_code == 404, elsewhere.text
    wrong_kind = client.put(f"/api/projects/{text['id']}/items/{text_item}/boxes", json=body)
    assert wrong_kind.status_code == 422
    assert "text classification project" in wrong_kind.json()["detail"]
    assert "object-detection" in wrong_kind.json()["detail"]
    for path in (f"/api/projects/{text['id']}/items/{text_item}/boxes",):
        assert client.get(path).status_code == 422
    bad_score = client.get(f"/api/projects/{pid}/items/{item}/boxes", params={"min_score": 2})
    assert bad_score.status_code == 422 and "min_score" in bad_score.json()["detail"]

    # an annotator boxes only the images served to them
    annotator = make_user("annotator", pid)
    served = annotator.get(f"/api/projects/{pid}/next", params={"n": 1}).json()["items"][0]
    (other,) = [i for i in project["items"] if i != served["item_id"]]
    not_served = annotator.put(f"/api/projects/{pid}/items/{other}/boxes", json=body)
    assert not_served.status_code == 403 and "change_labels" in not_served.json()["detail"]
    assert annotator.get(f"/api/projects/{pid}/items/{other}/boxes").status_code == 403
    mine = annotator.put(f"/api/projects/{pid}/items/{served['item_id']}/boxes", json=body)
    assert mine.status_code == 200 and mine.json()["label"]["annotator"] == annotator.username
    assert annotator.get(f"/api/projects/{pid}/items/{served['item_id']}/boxes").status_code == 200

    # an item without a recorded image size (not imported as an image) cannot take boxes
    (no_image,) = add_items(db, pid, 1, prefix="no image")
    refused = client.put(f"/api/projects/{pid}/items/{no_image}/boxes", json=body)
    assert refused.status_code == 409 and "no recorded image size" in refused.json()["detail"]
    for item_id in (other, no_image):
        assert stored(db, item_id) == (0, 0, 0)


def test_overlapped_images_are_refused_not_half_recorded(client: TestClient, db: Database) -> None:
    # Overlap can no longer be set on a detection project; one made before that rule keeps it.
    project = detection_project(client, db, n_images=1)
    pid, item = project["id"], project["items"][0]
    with db.transaction() as session:
        session.get(Project, pid).overlap = 2  # type: ignore[union-attr]
    response = client.put(
        f"/api/projects/{pid}/items/{item}/boxes", json={"boxes": [box("cat", 1, 1, 5, 5)]}
    )
    assert response.status_code == 409 and "overlap" in response.json()["detail"]
    assert stored(db, item) == (0, 0, 0)


def plant_detector(db: Database, project: dict[str, Any], boxes: dict[int, list[Any]]) -> int:
    """A detector's model version whose predictions hold ``boxes`` (item id -> stored boxes)."""
    cat, dog = project["class_ids"]["cat"], project["class_ids"]["dog"]
    with db.transaction() as session:
        model = ModelVersion(
            project_id=project["id"],
            version=1,
            head="fcos",
            encoder="efficientnet-lite0",
            n_labels=4,
            metrics={"class_ids": [cat, dog]},
            artifact_path="",
        )
        session.add(model)
        session.flush()
        for item_id, item_boxes in boxes.items():
            classes = sorted({b["class_id"] for b in item_boxes if b["score"] >= 0.3})
            session.add(
                Prediction(
                    item_id=item_id,
                    project_id=project["id"],
                    model_version_id=model.id,
                    probs=[0.9, 0.4],
                    predicted=classes,
                    confidence=0.6,
                    boxes=item_boxes,
                )
            )
        return int(model.id)


def test_prelabels_come_from_the_detector_in_next_and_boxes(
    client: TestClient, db: Database
) -> None:
    project = detection_project(client, db, n_images=2)
    pid, (first, second) = project["id"], project["items"]
    cat, dog = project["class_ids"]["cat"], project["class_ids"]["dog"]
    planted = [
        {"class_id": dog, "x_min": 2.0, "y_min": 3.0, "x_max": 12.5, "y_max": 20.0, "score": 0.55},
        {"class_id": cat, "x_min": 1.0, "y_min": 1.0, "x_max": 30.0, "y_max": 25.0, "score": 0.91},
        {"class_id": cat, "x_min": 5.0, "y_min": 5.0, "x_max": 6.0, "y_max": 6.0, "score": 0.05},
        {"class_id": 424242, "x_min": 5.0, "y_min": 5.0, "x_max": 6.0, "y_max": 6.0, "score": 0.9},
        {"class_id": dog, "x_min": 5.0, "score": 0.9},  # malformed: skipped, not a 500
    ]
    plant_detector(db, project, {first: planted, second: []})
    expected = [("cat", 1.0, 1.0, 30.0, 25.0), ("dog", 2.0, 3.0, 12.5, 20.0)]

    read = client.get(f"/api/projects/{pid}/items/{first}/boxes").json()
    assert read["prelabel"]["model_version"] == 1 and read["prelabel"]["min_score"] == 0.3
    assert corners(read["prelabel"]["boxes"]) == expected  # best first, the floor applied
    assert [b["score"] for b in read["prelabel"]["boxes"]] == [0.91, 0.55]
    assert read["current"] is None
    low = client.get(f"/api/projects/{pid}/items/{first}/boxes", params={"min_score": 0}).json()
    assert len(low["prelabel"]["boxes"]) == 3  # the deleted class's box stays out

    batch = client.get(f"/api/projects/{pid}/next", params={"n": 2}).json()["items"]
    by_id = {entry["item_id"]: entry for entry in batch}
    assert by_id[first]["meta"]["width"] == WIDTH and by_id[first]["meta"]["height"] == HEIGHT
    assert corners(by_id[first]["prediction"]["boxes"]) == expected
    assert by_id[second]["prediction"]["boxes"] == []  # the detector saw nothing there
    # classification predictions carry no boxes
    history = client.get(f"/api/projects/{pid}/items/{first}").json()
    assert corners(history["prediction"]["boxes"]) == expected

    # accepting the prelabels as they are makes them a human label (no score on human boxes)
    accepted = client.put(
        f"/api/projects/{pid}/items/{first}/boxes",
        json={
            "boxes": [
                box(b["class_id"], b["x_min"], b["y_min"], b["x_max"], b["y_max"])
                for b in read["prelabel"]["boxes"]
            ]
        },
    )
    assert accepted.status_code == 200, accepted.text
    assert corners(accepted.json()["boxes"]) == expected
    assert all(b["score"] is None for b in accepted.json()["boxes"])
    with db.reader() as session:
        status = session.scalar(select(Item.status).where(Item.id == first))
    assert status == "labeled"


def test_a_detection_project_refuses_overlap_at_creation_and_later(
    client: TestClient, db: Database
) -> None:
    refused = client.post(
        "/api/projects",
        json={
            "name": "overlapped",
            "kind": "object_detection",
            "classes": ["cat", "dog"],
            "overlap": 2,
        },
    )
    assert refused.status_code == 422
    assert "overlap" in refused.json()["detail"] and "object-detection" in refused.json()["detail"]
    assert all(p["name"] != "overlapped" for p in client.get("/api/projects").json())

    project = detection_project(client, db, n_images=1)
    patched = client.patch(f"/api/projects/{project['id']}", json={"overlap": 3})
    assert patched.status_code == 422 and "object-detection" in patched.json()["detail"]
    assert client.get(f"/api/projects/{project['id']}").json()["overlap"] == 1


def test_review_cannot_replace_boxes_with_classes(client: TestClient, db: Database) -> None:
    project = detection_project(client, db, n_images=1, review_sample_share=1.0)
    pid, item = project["id"], project["items"][0]
    url = f"/api/projects/{pid}/items/{item}/boxes"
    assert client.put(url, json={"boxes": [box("cat", 1, 2, 10, 12)]}).status_code == 200
    flags = client.get(f"/api/projects/{pid}/review").json()["flags"]
    assert [f["kind"] for f in flags] == ["work_sample"]
    before = stored(db, item)

    changed = client.post(
        f"/api/projects/{pid}/review/{flags[0]['id']}",
        json={"action": "change", "classes": ["dog"]},
    )

    assert changed.status_code == 409
    assert "box editor" in changed.json()["detail"]
    assert stored(db, item) == before
    assert corners(client.get(url).json()["current"]["boxes"]) == [("cat", 1, 2, 10, 12)]
    approved = client.post(
        f"/api/projects/{pid}/review/{flags[0]['id']}", json={"action": "approve"}
    )
    assert approved.status_code == 200, approved.text
