"""The review screen and the annotator section of the dashboard in a real headless Chromium:
three annotators answer two overlapped items through the API, a reviewer settles both with the
keyboard only, and each annotator sees only their own numbers."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

if not os.environ.get("LABELLA_REQUIRE_BROWSER"):  # `make test` requires it; elsewhere: skip
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Page, expect

from tests.web.conftest import LiveServer, sign_in

PASSWORD = "annotator test password"


def add_annotator(server: LiveServer, project_id: int, username: str) -> httpx.Client:
    """A new annotator of the project, and an API client signed in as them."""
    with server.client() as http:
        made = http.post("/api/users", json={"username": username, "password": PASSWORD})
        assert made.status_code == 201, made.text
        member = http.post(
            f"/api/projects/{project_id}/members", json={"username": username, "role": "annotator"}
        )
        assert member.status_code == 201, member.text
    session = httpx.Client(base_url=server.url, timeout=60)
    signed_in = session.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    session.headers["X-CSRF-Token"] = signed_in.json()["csrf_token"]
    return session


def test_a_reviewer_settles_disagreements_by_keyboard(
    page: Page, live_server: LiveServer, tmp_path: Path
) -> None:
    project = live_server.create_project("Review screen", ["negative", "positive"])
    pid = project["id"]
    with live_server.client() as http:
        assert http.patch(f"/api/projects/{pid}", json={"overlap": 3}).status_code == 200
    live_server.import_texts(pid, ["the film was dull", "an odd but lovely film"], tmp_path)
    answers = {
        "alice": ["negative", "negative"],
        "bob": ["negative", "positive"],
        "carol": ["positive", None],  # carol skips the second item
    }
    clients = {name: add_annotator(live_server, pid, name) for name in answers}
    items: list[int] = []
    for name, given in answers.items():
        served = clients[name].get(f"/api/projects/{pid}/next", params={"n": 5}).json()["items"]
        served_ids = sorted(i["item_id"] for i in served)
        items = items or served_ids
        assert served_ids == items
        for item_id, cls in zip(items, given, strict=True):
            path = f"/api/projects/{pid}/items/{item_id}"
            done = (
                clients[name].post(f"{path}/skip", json={})
                if cls is None
                else clients[name].post(f"{path}/label", json={"classes": [cls]})
            )
            assert done.status_code == 201, done.text

    page.goto(f"{live_server.url}/projects/{pid}")
    page.get_by_role("link", name="Review", exact=True).click()
    kinds = page.locator("#kind-tabs")
    expect(kinds.locator('[data-count="disagreement"]')).to_have_text("2")
    # the three-way split comes first (negative, positive, skip: no majority, no label yet)
    expect(page.locator("#entry-title")).to_contain_text(f"item #{items[1]}")
    expect(page.locator("#entry-facts")).to_contain_text("no majority")
    expect(page.locator("#entry-answers tbody tr")).to_have_count(3)
    page.keyboard.press("Enter")
    expect(page.locator("#entry-hint")).to_contain_text("no majority")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    # then the two-against-one item, its majority label preselected: Enter approves it
    expect(page.locator("#entry-title")).to_contain_text(f"item #{items[0]}")
    expect(page.locator("#entry-facts")).to_contain_text("decided by the majority")
    page.keyboard.press("Enter")
    expect(page.locator("#review-empty")).to_be_visible()
    expect(kinds.locator('[data-count=""]')).to_have_text("0")

    with live_server.client() as http:
        settled = http.get(f"/api/projects/{pid}/items/{items[1]}").json()["current_label"]
        approved = http.get(f"/api/projects/{pid}/items/{items[0]}").json()["current_label"]
    assert settled["decided_by"] == "reviewer" and settled["classes"][0]["name"] == "positive"
    assert approved["decided_by"] == "majority" and approved["classes"][0]["name"] == "negative"

    # the owner's dashboard: every annotator, the agreement line, the overlap settings
    page.goto(f"{live_server.url}/projects/{pid}")
    stats = page.locator("#annotator-stats tbody tr")
    expect(stats).to_have_count(4)  # alice, bob, carol and the owner, who decided an item
    expect(page.locator("#agreement-line")).to_contain_text("Agreement on 2 items")
    expect(page.locator("#o-overlap")).to_have_value("3")
    # alice sees herself only, and no settings
    alice_page = page.context.browser.new_context().new_page()  # type: ignore[union-attr]
    sign_in(alice_page, live_server.url, "alice", PASSWORD)
    alice_page.goto(f"{live_server.url}/projects/{pid}")
    alice_rows = alice_page.locator("#annotator-stats tbody tr")
    expect(alice_rows).to_have_count(1)
    # alice agreed with the reviewer on item 1 (negative) but not on item 2 (positive)
    expect(alice_rows.first).to_contain_text("alice")
    expect(alice_rows.first).to_contain_text("50% (2)")
    expect(alice_page.locator("#overlap-form")).to_be_hidden()
    expect(alice_page.get_by_role("link", name="Review", exact=True)).to_have_count(0)
    alice_page.context.close()
    for client in clients.values():
        client.close()
