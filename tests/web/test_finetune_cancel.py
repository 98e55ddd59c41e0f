"""The dashboard's controls of automatic fine-tuning in a real headless Chromium against a real
`labella serve`: the setting is shown and saved, and a running fine-tuning is cancelled from the
job list, leaving the project on its encoder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

if not os.environ.get("LABELLA_REQUIRE_BROWSER"):  # `make test` requires it; elsewhere: skip
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Page, expect

from tests.web.conftest import LiveServer

TIMEOUT_MS = 180_000  # encoding and model loading on a loaded CPU


def test_the_auto_setting_is_saved_and_a_running_fine_tuning_is_cancelled(
    page: Page, live_server: LiveServer, tmp_path: Path
) -> None:
    from tests.services.test_finetuning import COOKING, SPORT

    project = live_server.create_project("cancel flow", ["sport", "food"])
    assert project["auto_finetune_at"] == 250
    rows = [f'"{t}",sport' for t in SPORT] + [f'"{t}",food' for t in COOKING]
    data = tmp_path / "labeled.csv"
    data.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    base = f"/api/projects/{project['id']}"
    with live_server.client() as http:
        with data.open("rb") as handle:
            imported = http.post(f"{base}/imports", files={"file": (data.name, handle)})
        assert imported.status_code == 201, imported.text
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while http.get(f"{base}/status").json()["encoding"]["fraction"] < 1:
            assert time.monotonic() < deadline, "the items were not encoded in time"
            time.sleep(0.3)

    page.goto(f"{live_server.url}/projects/{project['id']}")
    auto = page.locator("#f-auto")
    expect(auto).to_have_value("250")
    auto.fill("300")
    page.locator("#autofinetune-form button[type=submit]").click()
    expect(page.locator("#autofinetune-status")).to_contain_text("fine-tunes itself at 300 labels")

    with live_server.client() as http:
        assert http.get(base).json()["auto_finetune_at"] == 300
        # 100 rounds of pairs: 4,000 pairs, minutes of training on this CPU if not cancelled
        queued = http.post(f"{base}/finetune", json={"n_iterations": 100, "max_pairs": 100_000})
        assert queued.status_code == 202, queued.text
    job_id = queued.json()["id"]
    job = page.locator(f'#jobs .job[data-job-id="{job_id}"]')
    expect(job).to_contain_text("Fine-tuning the encoder", timeout=TIMEOUT_MS)
    cancel = job.locator("button.job-cancel")
    expect(cancel).to_have_accessible_name(f"Cancel fine-tuning the encoder (job {job_id})")
    cancel.click()
    expect(page.locator("#action-status")).to_contain_text(
        f"Fine-tuning the encoder (job {job_id}) cancelled; the project keeps encoder "
        "all-MiniLM-L6-v2"
    )
    expect(job).to_have_attribute("data-status", "cancelled", timeout=TIMEOUT_MS)
    expect(job.locator("button.job-cancel")).to_have_count(0)
    expect(page.locator("#encoder-name")).to_have_text("all-MiniLM-L6-v2")
    with live_server.client() as http:
        assert http.get(f"/api/jobs/{job_id}").json()["status"] == "cancelled"
        assert http.get(base).json()["encoder"] == "all-MiniLM-L6-v2"
        # a training is never offered a Cancel button (only fine-tunings take that long)
        trained = http.post(f"{base}/train")
        assert trained.status_code == 202, trained.text
    expect(page.locator(f'#jobs .job[data-job-id="{trained.json()["id"]}"]')).to_be_visible(
        timeout=TIMEOUT_MS
    )
    expect(page.locator('#jobs .job[data-kind="train"] button.job-cancel')).to_have_count(0)
