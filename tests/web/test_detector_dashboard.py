"""The dashboard of an object-detection project shows its detector versions by mAP (learning
curve table and per-class AP), in headless Chromium against a real server. The detector version
is planted in the server's database (training one is tests/services/test_detection_training.py)."""

from __future__ import annotations

import os
from typing import Any

import pytest

if not os.environ.get("LABELLA_REQUIRE_BROWSER"):  # `make test` requires it; elsewhere: skip
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Page, expect

from labella.config import Settings
from labella.storage.db import Database
from labella.storage.models import ModelVersion
from tests.web.conftest import LiveServer


def _plant_detector_version(live_server: LiveServer, project: dict[str, Any]) -> None:
    settings = Settings(data_dir=live_server.data_dir, _env_file=None)  # type: ignore[call-arg]
    db = Database.from_settings(settings)
    try:
        with db.transaction() as session:
            session.add(
                ModelVersion(
                    project_id=project["id"],
                    version=1,
                    head="centernet",
                    encoder="planted by the test",  # the server's own jobs leave it alone
                    n_labels=40,
                    metrics={
                        "detector": "centernet-efficientnet-lite0",
                        "map50": 0.8125,
                        "map50_95": 0.5,
                        "n_eval": 12,
                        "evaluated_on": "evaluation sample",
                        "per_class": {
                            "cat": {
                                "ap50": 0.9,
                                "ap50_95": 0.6,
                                "n_ground_truth": 17,
                                "n_detections": 21,
                            },
                            "dog": {
                                "ap50": 0.75,
                                "ap50_95": 0.4,
                                "n_ground_truth": 9,
                                "n_detections": 30,
                            },
                        },
                    },
                    artifact_path="",
                )
            )
    finally:
        db.dispose()


def test_dashboard_shows_detector_versions_by_map(page: Page, live_server: LiveServer) -> None:
    project = live_server.create_project(
        "Detector dashboard",
        ["cat", "dog"],
        kind="object_detection",
        retrain_every=1000,
        online_update_every=0,
    )
    _plant_detector_version(live_server, project)
    page.goto(f"{live_server.url}/projects/{project['id']}")

    heads = page.locator("#curve-table thead th")
    expect(heads.nth(2)).to_have_text("mAP@0.5")
    expect(heads.nth(3)).to_have_text("mAP@0.5:0.95")
    expect(page.locator("#curve-table tbody tr")).to_have_count(1)
    expect(page.locator("#curve-table tbody")).to_contain_text("81.3%")
    caption = page.locator("#scores-caption")
    expect(caption).to_contain_text("Detector v1, 40 images: mAP@0.5 81.3%")
    expect(caption).to_contain_text("on 12 images, evaluation sample")
    expect(page.locator("#class-scores thead th").nth(1)).to_have_text("AP@0.5")
    rows = page.locator("#class-scores tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("0.90")
    expect(rows.nth(1)).to_contain_text("0.75")
