"""The dashboard's "Trust the model" panel in a real headless Chromium against `labella serve`:
it reports the evaluation sample and the stopping signal, shows the server's reason when an
auto-label to a target precision or an audit cannot run yet, and saves the loop settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if not os.environ.get("LABELLA_REQUIRE_BROWSER"):  # `make test` requires it; elsewhere: skip
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Page, expect

from tests.web.conftest import LiveServer


def test_trust_panel_reports_and_saves_the_loop_settings(
    page: Page, live_server: LiveServer, tmp_path: Path
) -> None:
    project = live_server.create_project("Trust panel", ["yes", "no"])
    live_server.import_texts(project["id"], [f"sentence number {i}" for i in range(12)], tmp_path)
    page.goto(f"{live_server.url}/projects/{project['id']}")

    expect(page.locator("#eval-line")).to_contain_text("No model yet")
    expect(page.locator("#eval-line")).to_contain_text("evaluation items labeled")
    expect(page.locator("#stop-line")).to_contain_text("Keep labeling")
    expect(page.locator("#audit-line")).to_contain_text("No auto-labels yet")

    # nothing to audit and no model to calibrate: the server's reasons are shown, nothing stored
    page.get_by_role("button", name="Queue audit").click()
    expect(page.locator("#audit-error")).to_contain_text("no item carries an auto-label")
    page.locator("#precision-form").get_by_role("button", name="Preview").click()
    expect(page.locator("#precision-error")).to_be_visible()
    expect(page.locator("#precision-preview")).to_be_hidden()

    page.locator("#l-online").fill("5")
    page.locator("#l-cost").fill("0.25")
    page.locator("#loop-form").get_by_role("button", name="Save").click()
    expect(page.locator("#loop-status")).to_contain_text("every 5 labels")
    expect(page.locator("#loop-status")).to_contain_text("0.25 per label")
    with live_server.client() as http:
        stored = http.get(f"/api/projects/{project['id']}").json()
    assert (stored["online_update_every"], stored["cost_per_label"]) == (5, 0.25)
