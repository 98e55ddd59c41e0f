from __future__ import annotations

from fastapi.testclient import TestClient


def create(client: TestClient, **body: object) -> dict:
    payload = {"name": "reviews", "classes": ["negative", "positive"], **body}
    response = client.post("/api/projects", json=payload)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_and_list_projects(client: TestClient) -> None:
    project = create(client, description="movie reviews")
    assert [c["name"] for c in project["classes"]] == ["negative", "positive"]
    assert [c["shortcut"] for c in project["classes"]] == ["1", "2"]
    assert project["kind"] == "text_classification"
    listed = client.get("/api/projects").json()
    assert [p["name"] for p in listed] == ["reviews"]
    assert client.get(f"/api/projects/{project['id']}").json()["name"] == "reviews"


def test_duplicate_project_name_is_a_conflict(client: TestClient) -> None:
    create(client)
    response = client.post("/api/projects", json={"name": "reviews", "classes": ["a", "b"]})
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


def test_bad_project_specs_are_rejected_with_the_reason(client: TestClient) -> None:
    cases = [
        ({"name": "x", "classes": ["only"]}, "at least 2 classes"),
        ({"name": "x", "classes": ["a", "a"]}, "repeated: a"),
        ({"name": "x", "classes": ["a", "b"], "strategy": "psychic"}, "unknown query strategy"),
        ({"name": "x", "classes": ["a", "b"], "kind": "audio"}, "unknown project kind"),
        ({"name": "", "classes": ["a", "b"]}, "name"),
        ({"classes": ["a", "b"]}, "name"),
    ]
    for body, message in cases:
        response = client.post("/api/projects", json=body)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert message in response.json()["detail"], (body, response.json())
    assert client.get("/api/projects").json() == []


def test_multi_label_project_may_have_one_class(client: TestClient) -> None:
    project = create(client, name="tags", classes=["urgent"], multi_label=True)
    assert project["multi_label"] is True


def test_rename_and_add_class(client: TestClient) -> None:
    project = create(client)
    pid = project["id"]
    neg = project["classes"][0]["id"]
    renamed = client.patch(f"/api/projects/{pid}/classes/{neg}", json={"name": "bad"}).json()
    assert [c["name"] for c in renamed["classes"]] == ["bad", "positive"]
    added = client.post(f"/api/projects/{pid}/classes", json={"name": "neutral"})
    assert added.status_code == 201
    assert [c["name"] for c in added.json()["classes"]] == ["bad", "positive", "neutral"]
    clash = client.patch(f"/api/projects/{pid}/classes/{neg}", json={"name": "positive"})
    assert clash.status_code == 409


def test_delete_unused_class_but_refuse_a_class_in_use(client: TestClient, db) -> None:
    from labella.storage.models import Item, Label, LabelValue

    project = create(client, classes=["a", "b", "c"])
    pid = project["id"]
    a, _b, c = (cls["id"] for cls in project["classes"])
    with db.transaction() as session:
        item = Item(project_id=pid, text="hello", content_hash="h1", random_key=0.5)
        session.add(item)
        session.flush()
        label = Label(project_id=pid, item_id=item.id, source="human")
        label.values.append(LabelValue(class_id=a))
        session.add(label)
    refused = client.delete(f"/api/projects/{pid}/classes/{a}")
    assert refused.status_code == 409
    assert "used by labels" in refused.json()["detail"]
    ok = client.delete(f"/api/projects/{pid}/classes/{c}")
    assert ok.status_code == 200
    assert [cls["name"] for cls in ok.json()["classes"]] == ["a", "b"]


def test_unknown_project_is_404(client: TestClient) -> None:
    response = client.get("/api/projects/999")
    assert response.status_code == 404
    assert "project 999 does not exist" in response.json()["detail"]


def test_status_reports_counts_and_encoding(client: TestClient) -> None:
    project = create(client)
    status = client.get(f"/api/projects/{project['id']}/status").json()
    assert status["counts"]["unlabeled"] == 0
    assert status["encoding"] == {"embedded": 0, "total": 0, "fraction": 1.0}
    assert status["model"] is None


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    assert "/api/projects" in client.get("/openapi.json").json()["paths"]


def test_new_projects_default_to_cluster_margin_and_learn_online(client: TestClient) -> None:
    single = client.post("/api/projects", json={"name": "s", "classes": ["a", "b"]}).json()
    multi = client.post(
        "/api/projects", json={"name": "m", "classes": ["a", "b"], "multi_label": True}
    ).json()
    assert (single["strategy"], multi["strategy"]) == ("cluster_margin", "ml_margin")
    assert (single["online_update_every"], single["cost_per_label"]) == (1, 0.0)


def test_loop_settings_are_validated_and_kept(client: TestClient) -> None:
    project = client.post("/api/projects", json={"name": "loop", "classes": ["a", "b"]}).json()
    url = f"/api/projects/{project['id']}"
    changed = client.patch(url, json={"online_update_every": 0, "cost_per_label": 0.12})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["online_update_every"], changed.json()["cost_per_label"]) == (0, 0.12)
    for body, field in (
        ({"online_update_every": -1}, "online_update_every"),
        ({"online_update_every": 10_001}, "online_update_every"),
        ({"cost_per_label": -0.5}, "cost_per_label"),
    ):
        response = client.patch(url, json=body)
        assert response.status_code == 422 and field in response.json()["detail"]
    kept = client.get(url).json()
    assert (kept["online_update_every"], kept["cost_per_label"]) == (0, 0.12)


def test_overlap_can_be_set_when_the_project_is_created(client: TestClient) -> None:
    body = {"name": "team", "classes": ["a", "b"], "overlap": 3, "overlap_share": 0.2}
    created = client.post("/api/projects", json={**body, "review_sample_share": 0.05})
    assert created.status_code == 201, created.text
    project = created.json()
    assert (project["overlap"], project["overlap_share"]) == (3, 0.2)
    bad = client.post("/api/projects", json={**body, "name": "bad", "overlap": 0})
    assert bad.status_code == 422 and "overlap" in bad.json()["detail"]
    assert all(p["name"] != "bad" for p in client.get("/api/projects").json())


def test_self_training_defaults_by_kind_toggles_and_is_refused_with_its_name(
    client: TestClient,
) -> None:
    project = create(client)
    assert project["self_training"] is True
    pid = project["id"]
    patched = client.patch(f"/api/projects/{pid}", json={"self_training": False})
    assert patched.status_code == 200 and patched.json()["self_training"] is False
    assert client.get(f"/api/projects/{pid}").json()["self_training"] is False
    assert create(client, name="chosen", self_training=False)["self_training"] is False

    tags = create(client, name="tags", classes=["urgent", "spam"], multi_label=True)
    assert tags["self_training"] is False
    refused = client.patch(f"/api/projects/{tags['id']}", json={"self_training": True})
    assert 400 <= refused.status_code < 500, refused.text
    assert "self_training" in refused.json()["detail"]
    assert "single-label classification" in refused.json()["detail"]
    assert client.get(f"/api/projects/{tags['id']}").json()["self_training"] is False

    boxes = client.post(
        "/api/projects",
        json={
            "name": "boxes",
            "classes": ["car", "person"],
            "kind": "object_detection",
            "self_training": True,
        },
    )
    assert 400 <= boxes.status_code < 500, boxes.text
    assert "self_training" in boxes.json()["detail"]
    assert "boxes" not in [p["name"] for p in client.get("/api/projects").json()]
    bad = client.patch(f"/api/projects/{pid}", json={"self_training": "sometimes"})
    assert bad.status_code == 422 and "self_training" in bad.text


def test_class_fields_longer_than_their_columns_are_refused_by_name(client: TestClient) -> None:
    project = create(client)
    pid, neg = project["id"], project["classes"][0]["id"]
    cases = [
        ("post", f"/api/projects/{pid}/classes", {"name": "n", "color": "#" * 21}, "color"),
        ("post", f"/api/projects/{pid}/classes", {"name": "n", "shortcut": "k" * 11}, "shortcut"),
        ("patch", f"/api/projects/{pid}/classes/{neg}", {"name": "x" * 201}, "name"),
        ("patch", f"/api/projects/{pid}/classes/{neg}", {"color": "c" * 21}, "color"),
    ]
    for method, url, body, field in cases:
        refused = client.request(method, url, json=body)
        assert 400 <= refused.status_code < 500, (body, refused.text)
        assert field in refused.json()["detail"], (body, refused.json())
    again = client.get(f"/api/projects/{pid}").json()
    assert [(c["name"], c["color"], c["shortcut"]) for c in again["classes"]] == [
        (c["name"], c["color"], c["shortcut"]) for c in project["classes"]
    ]
