"""The dashboard's fine-tuning button in a real headless Chromium against a real `labella serve`:
it is there for single-label text and image projects only, says what it does, and shows the
server's reason when the labels are not enough yet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if not os.environ.get("LABELLA_REQUIRE_BROWSER"):  # `make test` requires it; elsewhere: skip
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Page, expect

from tests.web.conftest import LiveServer


def test_the_finetune_button_explains_itself_and_shows_why_it_cannot_run_yet(
    page: Page, live_server: LiveServer, tmp_path: Path
) -> None:
    project = live_server.create_project("finetune button", ["sport", "food"])
    live_server.import_texts(project["id"], ["A late goal.", "Bake the bread."], tmp_path)
    page.goto(f"{live_server.url}/projects/{project['id']}")
    expect(page.locator("#encoder-name")).to_have_text("all-MiniLM-L6-v2")
    expect(page.locator("#finetune-help")).to_contain_text("takes minutes on a CPU")
    page.locator("#finetune-now").click()
    expect(page.locator("#action-error")).to_contain_text(
        "fine-tuning the encoder needs at least 8 human labels"
    )
    expect(page.locator("#action-error")).to_contain_text("sport 0, food 0")

    # an image project has it too, with its own explanation and the same route
    images = live_server.create_project(
        "finetune images", ["red", "blue"], kind="image_classification"
    )
    page.goto(f"{live_server.url}/projects/{images['id']}")
    expect(page.locator("#encoder-name")).to_have_text("efficientnet-lite0")
    expect(page.locator("#finetune-help")).to_contain_text("EfficientNet-Lite0")
    expect(page.locator("#finetune-help")).to_contain_text("tens of minutes on a CPU")
    page.locator("#finetune-now").click()
    expect(page.locator("#action-error")).to_contain_text(
        "fine-tuning the encoder needs at least 8 human labels"
    )
    expect(page.locator("#action-error")).to_contain_text("red 0, blue 0")

    multi = live_server.create_project("finetune multi", ["a", "b"], multi_label=True)
    page.goto(f"{live_server.url}/projects/{multi['id']}")
    expect(page.locator("#train-now")).to_be_visible()
    expect(page.locator("#finetune-now")).to_have_count(0)
    multi_images = live_server.create_project(
        "finetune multi images", ["a", "b"], kind="image_classification", multi_label=True
    )
    page.goto(f"{live_server.url}/projects/{multi_images['id']}")
    expect(page.locator("#train-now")).to_be_visible()
    expect(page.locator("#finetune-now")).to_have_count(0)


FINETUNE_TIMEOUT_MS = 180_000  # encoding, two trainings and a tiny fine-tuning, on a loaded CPU


def test_the_dashboard_follows_a_fine_tuning_and_the_switch_back(
    page: Page, live_server: LiveServer, tmp_path: Path
) -> None:
    from tests.services.test_finetuning import COOKING, SPORT

    project = live_server.create_project("finetune flow", ["sport", "food"])
    rows = [f'"{t}",sport' for t in SPORT] + [f'"{t}",food' for t in COOKING]
    data = tmp_path / "labeled.csv"
    data.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    base = f"/api/projects/{project['id']}"
    with live_server.client() as http, data.open("rb") as handle:
        imported = http.post(f"{base}/imports", files={"file": (data.name, handle)})
        assert imported.status_code == 201, imported.text
    page.goto(f"{live_server.url}/projects/{project['id']}")
    # the import's labels train v1 on MiniLM once the items are encoded
    curve = page.locator("#curve-table tbody")
    expect(curve).to_contain_text("v1", timeout=FINETUNE_TIMEOUT_MS)
    with live_server.client() as http:
        # tiny settings: the button's defaults would take minutes here
        queued = http.post(f"{base}/finetune", json={"n_iterations": 1, "max_pairs": 32})
        assert queued.status_code == 202, queued.text
    encoder = page.locator("#encoder-name")
    expect(encoder).to_contain_text(
        f"finetuned-text:project-{project['id']}:v", timeout=FINETUNE_TIMEOUT_MS
    )
    expect(curve).to_contain_text("v2 (fine-tuned encoder)", timeout=FINETUNE_TIMEOUT_MS)

    with live_server.client() as http:
        back = http.patch(base, json={"encoder": "all-MiniLM-L6-v2"})
        assert back.status_code == 200, back.text
    expect(encoder).to_have_text("all-MiniLM-L6-v2", timeout=FINETUNE_TIMEOUT_MS)
    expect(curve).to_contain_text("v3", timeout=FINETUNE_TIMEOUT_MS)
    with live_server.client() as http:
        jobs = http.get(f"{base}/jobs", params={"limit": 50}).json()
    assert [j for j in jobs if j["status"] == "failed"] == []


def test_the_dashboard_follows_an_image_fine_tuning(
    page: Page, live_server: LiveServer, tmp_path: Path
) -> None:
    import io
    import zipfile

    from tests.services.test_image_finetuning import COLOURS, noisy_png

    project = live_server.create_project(
        "finetune images flow",
        list(COLOURS),
        kind="image_classification",
        encoder="efficientnet-lite0-plain",
    )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for c, (name, colour) in enumerate(COLOURS.items()):
            for i in range(9):
                zf.writestr(f"{name}/{name}{i}.png", noisy_png(colour, 100 * c + i))
    base = f"/api/projects/{project['id']}"
    with live_server.client() as http:
        uploaded = http.post(
            f"{base}/images",
            files=[("files", ("colours.zip", archive.getvalue(), "application/zip"))],
        )
        assert uploaded.status_code == 201, uploaded.text
    page.goto(f"{live_server.url}/projects/{project['id']}")
    curve = page.locator("#curve-table tbody")
    expect(curve).to_contain_text("v1", timeout=FINETUNE_TIMEOUT_MS)
    with live_server.client() as http:
        # tiny settings: the defaults (224 px, 15 epochs) would take many minutes here
        queued = http.post(f"{base}/finetune", json={"epochs": 1, "image_size": 32})
        assert queued.status_code == 202, queued.text
    expect(page.locator("#encoder-name")).to_contain_text(
        f"finetuned-image:project-{project['id']}:v", timeout=FINETUNE_TIMEOUT_MS
    )
    expect(curve).to_contain_text("v2 (fine-tuned encoder)", timeout=FINETUNE_TIMEOUT_MS)
    with live_server.client() as http:
        jobs = http.get(f"{base}/jobs", params={"limit": 50}).json()
    assert [j for j in jobs if j["status"] == "failed"] == []
