"""Project members: adding, re-roling and removing them, and the rules about owners."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient


def new_project(client: TestClient, name: str = "team") -> int:
    response = client.post("/api/projects", json={"name": name, "classes": ["a", "b"]})
    assert response.status_code == 201, response.text
    pid: int = response.json()["id"]
    return pid


def test_the_creator_owns_a_new_project(client: TestClient) -> None:
    pid = new_project(client)
    members = client.get(f"/api/projects/{pid}/members").json()
    assert [(m["username"], m["role"]) for m in members] == [("admin", "owner")]


def test_members_are_added_re_roled_and_removed(
    client: TestClient, make_user: Callable[..., Any]
) -> None:
    pid = new_project(client)
    make_user(username="ines")
    base = f"/api/projects/{pid}/members"
    added = client.post(base, json={"username": "ines", "role": "annotator"})
    assert added.status_code == 201 and added.json()["role"] == "annotator"
    again = client.post(base, json={"username": "ines", "role": "reviewer"})
    assert again.status_code == 409 and "already a member" in again.json()["detail"]
    changed = client.patch(f"{base}/ines", json={"role": "Reviewer"})
    assert changed.status_code == 200 and changed.json()["role"] == "reviewer"
    assert client.delete(f"{base}/ines").status_code == 204
    assert [m["username"] for m in client.get(base).json()] == ["admin"]

    for method, path, body, code, message in (
        ("post", base, {"username": "nobody", "role": "annotator"}, 404, "no user named 'nobody'"),
        ("post", base, {"username": "ines", "role": "boss"}, 422, "unknown role 'boss'"),
        ("patch", f"{base}/ines", {"role": "manager"}, 404, "'ines' is not a member"),
        ("delete", f"{base}/ines", None, 404, "'ines' is not a member"),
    ):
        response = client.request(method, path, json=body)
        assert response.status_code == code, (method, path, response.text)
        assert message in response.json()["detail"]


def test_managers_cannot_touch_owners(client: TestClient, make_user: Callable[..., Any]) -> None:
    pid = new_project(client)
    base = f"/api/projects/{pid}/members"
    manager = make_user("manager", pid, username="mona")
    make_user(username="newcomer")
    make_user("owner", pid, username="olga")
    make_user("annotator", pid, username="ann")
    for response in (
        manager.post(base, json={"username": "newcomer", "role": "owner"}),
        manager.patch(f"{base}/olga", json={"role": "annotator"}),
        manager.patch(f"{base}/ann", json={"role": "owner"}),
        manager.delete(f"{base}/olga"),
    ):
        assert response.status_code == 403, response.text
        assert "owner" in response.json()["detail"]
    # what managers may do
    assert manager.post(base, json={"username": "newcomer", "role": "reviewer"}).status_code == 201
    assert manager.patch(f"{base}/ann", json={"role": "manager"}).status_code == 200
    assert manager.delete(f"{base}/newcomer").status_code == 204
    roles = {m["username"]: m["role"] for m in client.get(base).json()}
    assert roles == {"admin": "owner", "mona": "manager", "olga": "owner", "ann": "manager"}


def test_a_project_keeps_at_least_one_owner(
    client: TestClient, make_user: Callable[..., Any]
) -> None:
    pid = new_project(client)
    base = f"/api/projects/{pid}/members"
    demoted = client.patch(f"{base}/admin", json={"role": "manager"})
    assert demoted.status_code == 409 and "last owner" in demoted.json()["detail"]
    removed = client.delete(f"{base}/admin")
    assert removed.status_code == 409 and "last owner" in removed.json()["detail"]
    owner = make_user("owner", pid)
    # with a second owner, the first may step down
    assert owner.patch(f"{base}/admin", json={"role": "manager"}).status_code == 200


def test_a_removed_member_loses_access_at_once(
    client: TestClient, make_user: Callable[..., Any]
) -> None:
    pid = new_project(client)
    member = make_user("reviewer", pid, username="rita")
    assert member.get(f"/api/projects/{pid}").status_code == 200
    client.delete(f"/api/projects/{pid}/members/rita")
    assert member.get(f"/api/projects/{pid}").status_code == 404
    assert member.get("/api/projects").json() == []


def test_an_annotator_labels_only_what_was_served_to_them(
    client: TestClient, make_user: Callable[..., Any]
) -> None:
    from tests.services.labeling_data import add_items

    pid = new_project(client)
    db = client.app.state.db
    first, second = add_items(db, pid, 2, priorities=[2.0, 1.0])
    annotator = make_user("annotator", pid)
    base = f"/api/projects/{pid}/items"
    refused = annotator.post(f"{base}/{second}/label", json={"classes": ["a"]})
    assert refused.status_code == 403 and "change_labels" in refused.json()["detail"]
    assert annotator.get(f"{base}/{second}").status_code == 403
    assert annotator.get(f"{base}/999999").status_code == 404
    served = annotator.get(f"/api/projects/{pid}/next", params={"n": 1}).json()["items"]
    assert [i["item_id"] for i in served] == [first]
    assert annotator.post(f"{base}/{first}/label", json={"classes": ["a"]}).status_code == 201
    # their own work stays theirs to correct and to see
    assert annotator.post(f"{base}/{first}/label", json={"classes": ["b"]}).status_code == 201
    assert annotator.get(f"{base}/{first}").json()["current_label"]["annotator"] == (
        annotator.username
    )
    # a reviewer changes any label
    reviewer = make_user("reviewer", pid)
    assert reviewer.post(f"{base}/{second}/label", json={"classes": ["b"]}).status_code == 201
