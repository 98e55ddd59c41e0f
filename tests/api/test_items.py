"""The data browser's API: the paged, filtered items table and the queue preview.

Paging is by key (after_id): pages follow each other without gaps or repeats whatever the
filter. Totals are exact when an index can count them and capped otherwise."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from labella.services import autolabel, browse, labeling
from labella.storage.db import Database
from tests.services.labeling_data import add_items, plant_model

# item index -> (p_negative, p_positive): what the planted model predicts
PROBS = [
    (0.97, 0.03),  # 0: auto-labeled negative (0.97)
    (0.05, 0.95),  # 1: auto-labeled positive (0.95)
    (0.40, 0.60),  # 2: unlabeled, predicted positive (0.60)
    (0.01, 0.99),  # 3: labeled negative by alice (the model says positive 0.99)
    (0.92, 0.08),  # 4: skipped by bob
    (0.55, 0.45),  # 5: unlabeled, predicted negative (0.55)
    (0.20, 0.80),  # 6: labeled positive by bob, then changed to negative by alice
]
N_ITEMS = len(PROBS) + 2  # 7 and 8: no prediction, unlabeled


@pytest.fixture
def planted(client: TestClient, db: Database) -> dict[str, Any]:
    response = client.post("/api/projects", json={"name": "p", "classes": ["negative", "positive"]})
    assert response.status_code == 201, response.text
    project = response.json()
    pid = project["id"]
    ids = add_items(db, pid, N_ITEMS)
    labeling.submit_label(db, pid, ids[3], classes=["negative"], annotator="alice")
    labeling.skip_item(db, pid, ids[4], annotator="bob")
    labeling.submit_label(db, pid, ids[6], classes=["positive"], annotator="bob")
    labeling.submit_label(db, pid, ids[6], classes=["negative"], annotator="alice")
    model = plant_model(db, pid, {ids[i]: p for i, p in enumerate(PROBS)})
    # auto-label items 0 and 1 only (2 and 5 are under the threshold)
    assert autolabel.apply(db, pid, threshold=0.9).labeled == 2
    classes = {c["name"]: c["id"] for c in project["classes"]}
    return {"pid": pid, "ids": ids, "classes": classes, "model": model}


def get_page(client: TestClient, pid: int, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/projects/{pid}/items", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def all_pages(client: TestClient, pid: int, **params: Any) -> list[list[int]]:
    pages: list[list[int]] = []
    after: int | None = None
    while True:
        query = dict(params) if after is None else {**params, "after_id": after}
        body = get_page(client, pid, **query)
        pages.append([row["id"] for row in body["items"]])
        after = body["next_after_id"]
        if after is None:
            return pages
        assert after == pages[-1][-1]


def test_keyset_pages_cover_every_item_once(client: TestClient, planted: dict[str, Any]) -> None:
    ids = planted["ids"]
    pages = all_pages(client, planted["pid"], limit=4)
    assert pages == [ids[0:4], ids[4:8], ids[8:9]]
    first = get_page(client, planted["pid"], limit=4)
    assert first["total"] == N_ITEMS and first["total_exact"] is True and first["limit"] == 4
    # a page that ends exactly at the last item says there is no next page
    assert get_page(client, planted["pid"], limit=N_ITEMS)["next_after_id"] is None


def test_rows_carry_label_source_confidence_and_prediction(
    client: TestClient, planted: dict[str, Any]
) -> None:
    ids = planted["ids"]
    rows = {row["id"]: row for row in get_page(client, planted["pid"])["items"]}
    auto = rows[ids[0]]
    assert auto["status"] == "auto" and auto["source"] == "model" and auto["annotator"] is None
    assert [c["name"] for c in auto["classes"]] == ["negative"]
    assert auto["label_confidence"] == pytest.approx(0.97) and auto["label_model_version"] == 1
    assert auto["confidence"] == pytest.approx(0.97) and auto["model_version"] == 1
    human = rows[ids[3]]
    assert human["status"] == "labeled" and human["source"] == "human"
    assert human["annotator"] == "alice" and [c["name"] for c in human["classes"]] == ["negative"]
    # a human label has no confidence of its own: the model's prediction is shown beside it
    assert human["label_confidence"] is None and human["label_model_version"] is None
    assert [c["name"] for c in human["predicted"]] == ["positive"]
    assert human["confidence"] == pytest.approx(0.99) and human["labeled_at"] is not None
    changed = rows[ids[6]]
    assert changed["annotator"] == "alice" and [c["name"] for c in changed["classes"]] == [
        "negative"
    ]
    skipped = rows[ids[4]]
    assert skipped["status"] == "skipped" and skipped["classes"] == []
    bare = rows[ids[7]]
    assert bare["status"] == "unlabeled" and bare["source"] is None and bare["classes"] == []
    assert bare["confidence"] is None and bare["predicted"] == [] and bare["model_version"] is None
    assert bare["text"] == "text 7" and bare["text_truncated"] is False


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "unlabeled"}, [2, 5, 7, 8]),
        ({"status": "auto"}, [0, 1]),
        ({"status": "skipped"}, [4]),
        ({"source": "human"}, [3, 6]),
        ({"source": "model"}, [0, 1]),
        ({"source": "model", "status": "labeled"}, []),
        ({"label": "negative"}, [0, 3, 6]),
        ({"label": "positive", "source": "model"}, [1]),
        ({"min_confidence": 0.9}, [0, 1, 3, 4]),
        ({"max_confidence": 0.6}, [2, 5]),
        ({"min_confidence": 0.5, "max_confidence": 0.8, "status": "unlabeled"}, [2, 5]),
        ({"min_confidence": 0.96, "source": "model"}, [0]),
    ],
)
def test_filters(
    client: TestClient, planted: dict[str, Any], params: dict[str, Any], expected: list[int]
) -> None:
    ids = planted["ids"]
    body = get_page(client, planted["pid"], **params)
    assert [row["id"] for row in body["items"]] == [ids[i] for i in expected]
    assert body["total"] == len(expected) and body["total_exact"] is True
    # the same filter, two rows a page, gives the same items
    paged = [i for page in all_pages(client, planted["pid"], limit=2, **params) for i in page]
    assert paged == [ids[i] for i in expected]


def test_label_filter_takes_a_class_id(client: TestClient, planted: dict[str, Any]) -> None:
    ids = planted["ids"]
    by_id = get_page(client, planted["pid"], label=str(planted["classes"]["positive"]))
    assert [row["id"] for row in by_id["items"]] == [ids[1]]


def test_filtered_totals_are_capped(
    client: TestClient, planted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browse, "COUNT_CAP", 2)
    capped = get_page(client, planted["pid"], label="negative", min_confidence=0.5)
    assert capped["total"] == 2 and capped["total_exact"] is False
    assert len(capped["items"]) == 3  # the page itself is complete
    # one filter is counted exactly by its own index, past the cap
    for params, total in (({"status": "unlabeled"}, 4), ({"label": "negative"}, 3), ({}, N_ITEMS)):
        exact = get_page(client, planted["pid"], **params)
        assert exact["total"] == total and exact["total_exact"] is True


def test_small_and_large_filter_sets_give_the_same_pages(
    client: TestClient, planted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever way a filter is applied (driving the walk, or tested per row), the pages match."""
    params = {"label": "negative", "min_confidence": 0.5, "status": "labeled"}
    driven = all_pages(client, planted["pid"], limit=1, **params)
    monkeypatch.setattr(browse, "DRIVING_SET", 0)
    per_row = all_pages(client, planted["pid"], limit=1, **params)
    assert driven == per_row == [[planted["ids"][3]], [planted["ids"][6]]]


def test_long_texts_are_cut_in_the_table(
    client: TestClient, db: Database, planted: dict[str, Any]
) -> None:
    pid = planted["pid"]
    long_text = "word " * 200
    response = client.post(
        f"/api/projects/{pid}/imports",
        files={"file": ("long.txt", long_text.encode())},
    )
    assert response.status_code == 201, response.text
    row = get_page(client, pid, after_id=planted["ids"][-1])["items"][0]
    assert row["text_truncated"] is True and len(row["text"]) == browse.TEXT_PREVIEW_CHARS
    full = client.get(f"/api/projects/{pid}/items/{row['id']}").json()["item"]["text"]
    assert full.startswith(row["text"]) and len(full) > browse.TEXT_PREVIEW_CHARS


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "done"}, "unknown status 'done'"),
        ({"source": "robot"}, "unknown label source 'robot'"),
        ({"label": "maybe"}, "unknown class 'maybe'"),
        ({"min_confidence": 0.9, "max_confidence": 0.1}, "must not be above max_confidence"),
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"limit": 0}, "limit"),
        ({"limit": browse.MAX_PAGE + 1}, "limit"),
        ({"after_id": -1}, "after_id"),
    ],
)
def test_bad_filters_are_422_with_the_reason(
    client: TestClient, planted: dict[str, Any], params: dict[str, Any], message: str
) -> None:
    response = client.get(f"/api/projects/{planted['pid']}/items", params=params)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_unknown_project_is_404(client: TestClient) -> None:
    response = client.get("/api/projects/999/items")
    assert response.status_code == 404
    assert "project 999 does not exist" in response.json()["detail"]
    assert client.get("/api/projects/999/queue").status_code == 404


def test_queue_preview_follows_serving_order_without_leasing(
    client: TestClient, db: Database
) -> None:
    pid = client.post("/api/projects", json={"name": "q", "classes": ["a", "b"]}).json()["id"]
    ids = add_items(db, pid, 5, priorities=[None, 5.0, None, 9.0, None])
    preview = client.get(f"/api/projects/{pid}/queue", params={"n": 4}).json()
    assert [row["item_id"] for row in preview][:2] == [ids[3], ids[1]]
    assert [row["reason"] for row in preview][:2] == ["planted 9.0", "planted 5.0"]
    assert preview[0]["priority"] == 9.0 and preview[2]["priority"] is None
    assert all(row["leased_by"] is None for row in preview)

    # previewing leased nothing: the first annotator still gets the same items, in that order
    served = client.get(f"/api/projects/{pid}/next", params={"n": 4})
    assert [i["item_id"] for i in served.json()["items"]] == [row["item_id"] for row in preview]
    after = client.get(f"/api/projects/{pid}/queue", params={"n": 5}).json()
    assert {row["leased_by"] for row in after[:4]} == {"admin"}
    assert after[4]["leased_by"] is None and after[0]["lease_until"] is not None

    # labeled items leave the queue
    client.post(f"/api/projects/{pid}/items/{ids[3]}/label", json={"classes": ["a"]})
    assert ids[3] not in [row["item_id"] for row in client.get(f"/api/projects/{pid}/queue").json()]
    assert client.get(f"/api/projects/{pid}/queue", params={"n": 0}).status_code == 422
