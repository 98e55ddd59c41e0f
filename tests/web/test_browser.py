"""The browser UI in a real headless Chromium against a real `labella serve`: create a project,
upload a file, label 20 items with the keyboard only (one of them changed with Z), see the
learning curve after training, auto-label, export, browse the data; a bad upload shows the
server's error; labels given without a connection are kept and sent when it returns."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

if not os.environ.get("LABELLA_REQUIRE_BROWSER"):  # `make test` requires it; elsewhere: skip
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Page, expect

from tests.web.conftest import LiveServer, Sentence, load_sentences

TRAINING_TIMEOUT_MS = 150_000  # encoding ~100 texts and training, on a possibly loaded machine
TOPICS = ["sport", "food", "weather"]


@pytest.fixture(scope="module")
def sentences() -> list[Sentence]:
    return load_sentences()


def truth_of(sentences: list[Sentence]) -> dict[str, str]:
    return {s.text: s.topic for s in sentences}


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """Save the screenshots the README shows, when asked to (LABELLA_SCREENSHOT_DIR=docs)."""
    folder = os.environ.get("LABELLA_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=full_page)


def item_on_screen(page: Page) -> tuple[int, str]:
    text = page.locator("#item-text")
    expect(text).to_be_visible()
    expect(text).to_have_attribute("data-item-id", re.compile(r"^\d+$"))
    return int(text.get_attribute("data-item-id") or 0), text.inner_text()


def label_current(page: Page, key: str, class_id: int) -> int:
    """Press a class key and Enter; returns the labeled item's id once the next item is shown."""
    item_id, _ = item_on_screen(page)
    page.keyboard.press(key)
    expect(page.locator(f".class-button[data-class-id='{class_id}']")).to_have_attribute(
        "aria-pressed", "true"
    )
    page.keyboard.press("Enter")
    expect(page.locator("#item-text")).not_to_have_attribute("data-item-id", str(item_id))
    return item_id


def fill_new_project(page: Page, name: str, classes: list[str]) -> None:
    """Name the project and its classes in the projects page's form (two class rows to start)."""
    page.get_by_label("Name", exact=True).fill(name)
    names = page.locator("#class-rows .class-name")
    for index, class_name in enumerate(classes):
        if index >= names.count():
            page.get_by_role("button", name="Add a class").click()
        names.nth(index).fill(class_name)


def created_project(page: Page, live_server: LiveServer) -> dict[str, Any]:
    """The project the form just created, as the API returns it, once its dashboard opened."""
    page.wait_for_url(re.compile(r"/projects/\d+"))
    project_id = int(re.search(r"/projects/(\d+)", page.url).group(1))  # type: ignore[union-attr]
    with live_server.client() as http:
        project: dict[str, Any] = http.get(f"/api/projects/{project_id}").json()
    return project


def wait_until_sent(page: Page) -> None:
    expect(page.locator("#conn")).to_have_attribute("data-pending", "0")
    expect(page.locator("#conn")).to_have_attribute("data-state", "ok")


def history(server: LiveServer, project_id: int, item_id: int) -> dict[str, Any]:
    with server.client() as http:
        response = http.get(f"/api/projects/{project_id}/items/{item_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def test_create_upload_label_train_autolabel_export(
    page: Page, live_server: LiveServer, sentences: list[Sentence], tmp_path: Path
) -> None:
    truth = truth_of(sentences)

    # -- create the project in the form ------------------------------------------------------------
    page.goto(f"{live_server.url}/")
    fill_new_project(page, "Topics", TOPICS)
    page.locator("#p-retrain").fill("10")
    # the product's default strategy is preselected; this test drives plain margin
    expect(page.locator("#p-strategy")).to_have_value("cluster_margin")
    page.locator("#p-strategy").select_option("margin")
    page.locator("#p-finetune").fill("300")
    page.get_by_role("button", name="Create project").click()
    project = created_project(page, live_server)
    project_id = project["id"]
    assert [c["name"] for c in project["classes"]] == TOPICS
    assert project["retrain_every"] == 10 and project["strategy"] == "margin"
    assert project["auto_finetune_at"] == 300
    class_ids = {c["name"]: c["id"] for c in project["classes"]}
    keys = {c["name"]: c["shortcut"] for c in project["classes"]}
    assert keys == {"sport": "1", "food": "2", "weather": "3"}

    # -- upload a file (texts only; the topics are the oracle) -------------------------------------
    upload = tmp_path / "sentences.csv"
    with upload.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([s.text] for s in sentences)
    page.locator("#import-file").set_input_files(str(upload))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#import-result")).to_contain_text(f"{len(sentences)} new items")
    expect(page.locator("#import-error")).to_be_hidden()
    expect(page.locator("#count-unlabeled")).to_have_text(str(len(sentences)))
    # with every text embedded, the labels below retrain the model every 10 (retrain_every)
    expect(page.locator("#encoding-line")).to_contain_text(
        "embedded (100%)", timeout=TRAINING_TIMEOUT_MS
    )

    # -- label 20 items with the keyboard only -----------------------------------------------------
    page.goto(f"{live_server.url}/projects/{project_id}/label")
    labeled: list[int] = []
    changed: int | None = None
    while len(labeled) < 20:
        item_id, text = item_on_screen(page)
        topic = truth[text]
        if len(labeled) == 3 and changed is None:
            # answer wrong, then go back with Z and change it
            wrong = next(t for t in TOPICS if t != topic)
            label_current(page, keys[wrong], class_ids[wrong])
            wait_until_sent(page)  # so that the change supersedes a stored label
            page.keyboard.press("z")
            expect(page.locator("#item-text")).to_have_attribute("data-item-id", str(item_id))
            expect(page.locator("#revisit")).to_contain_text(f"it was: {wrong}")
            changed = item_id
        labeled.append(label_current(page, keys[topic], class_ids[topic]))
        expect(page.locator("#stat-labeled")).to_have_text(str(len(labeled)))
    wait_until_sent(page)

    assert changed is not None
    changed_history = history(live_server, project_id, changed)
    assert len(changed_history["labels"]) == 2
    right = truth[changed_history["item"]["text"]]
    assert [c["name"] for c in changed_history["current_label"]["classes"]] == [right]
    for item_id in labeled:
        item = history(live_server, project_id, item_id)
        assert [c["name"] for c in item["current_label"]["classes"]] == [
            truth[item["item"]["text"]]
        ]

    # -- dashboard: train and see the learning curve -----------------------------------------------
    page.goto(f"{live_server.url}/projects/{project_id}")
    expect(page.locator("#count-labeled")).to_have_text("20")
    page.get_by_role("button", name="Train now").click()
    expect(page.locator("#action-status")).to_contain_text("Training started")
    expect(page.locator("#jobs .job.running, #jobs .job.queued")).to_have_count(
        0, timeout=TRAINING_TIMEOUT_MS
    )
    points = page.locator("#curve svg [data-series='accuracy'] circle title")
    expect(points.filter(has_text="with 20 labels").first).to_be_attached()
    # the automatic training after the first 10 labels is on the curve too
    expect(points.filter(has_text="with 10 labels").first).to_be_attached()
    with live_server.client() as http:
        models = http.get(f"/api/projects/{project_id}/models").json()
    expect(page.locator("#curve-table tbody tr")).to_have_count(len(models))
    expect(points).to_have_count(sum(m["metrics"]["accuracy"] is not None for m in models))
    expect(page.locator("#class-scores tbody tr")).to_have_count(3)
    expect(page.locator("#scores-caption")).to_contain_text("20 labels")
    # a new single-label project self-trains, and the caption says on how many pseudo-labels
    newest = max(models, key=lambda m: m["version"])["metrics"]["self_training"]
    expect(page.locator("#scores-caption")).to_contain_text(
        f"Self-trained on {newest['pseudo_labels']:,} pseudo-labels"
    )
    queue_reasons = page.locator("#queue tbody td:nth-child(4)")
    expect(queue_reasons.first).to_contain_text("margin")
    page.get_by_role("button", name="Send batch").click()
    expect(page.locator("#action-status")).to_contain_text("Ranking the next batch started")
    page.locator("#s-strategy").select_option("exploration_mix")
    page.locator("#s-params [name='p']").fill("0.8")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#settings-status")).to_contain_text("Saved: exploration_mix")
    with live_server.client() as http:
        saved = http.get(f"/api/projects/{project_id}").json()
    assert saved["strategy"] == "exploration_mix" and saved["strategy_params"] == {"p": 0.8}
    page.locator("#s-strategy").select_option("margin")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#settings-status")).to_contain_text("Saved: margin")
    expect(page.locator("#jobs .job.running, #jobs .job.queued")).to_have_count(
        0, timeout=TRAINING_TIMEOUT_MS
    )
    screenshot(page, "dashboard.png", full_page=True)

    # the labeling screen now shows the model's prediction, preselected, and the reason
    page.goto(f"{live_server.url}/projects/{project_id}/label")
    item_on_screen(page)
    expect(page.locator("#prediction")).to_contain_text(re.compile(r"Model v\d+ suggests"))
    expect(page.locator("#reason")).to_contain_text("margin")
    expect(page.locator(".class-button[aria-pressed='true']")).to_have_count(1)
    screenshot(page, "labeling.png")
    page.goto(f"{live_server.url}/projects/{project_id}")

    # -- auto-label: the preview's count, then confirm ---------------------------------------------
    page.locator("#threshold").fill("0.34")  # above 1/3: every prediction of 3 classes clears it
    page.locator("#autolabel-form").get_by_role("button", name="Preview").click()
    summary = page.locator("#autolabel-summary")
    expect(summary).to_contain_text("would label")
    would = int(re.search(r"would label (\d+) item", summary.inner_text()).group(1))  # type: ignore[union-attr]
    unlabeled = len(sentences) - 20
    assert 0 < would <= unlabeled
    page.get_by_role("button", name=re.compile(rf"Auto-label {would} item")).click()
    expect(page.locator("#action-status")).to_contain_text(f"Auto-labeled {would} items")
    expect(page.locator("#count-auto")).to_have_text(str(would))

    # -- export ------------------------------------------------------------------------------------
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export").click()
    exported = Path(download_info.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(exported)))
    sources = [row["source"] for row in rows]
    assert sources.count("human") == 20 and sources.count("model") == would, rows[:3]

    # -- data browser: filter by source, open an item ----------------------------------------------
    page.goto(f"{live_server.url}/projects/{project_id}/items")
    expect(page.locator("#summary")).to_contain_text(f"of {len(sentences)} items")
    page.locator("#f-source").select_option("model")
    expect(page.locator("#summary")).to_contain_text(f"of {would} items")
    expect(page.locator("#items-table tbody tr")).to_have_count(min(would, 50))
    badges = page.locator("#items-table tbody td:nth-child(5) .badge")
    assert set(badges.all_inner_texts()) == {"model"}
    page.locator("#f-source").select_option("human")
    expect(page.locator("#summary")).to_contain_text("of 20 items")
    page.get_by_role("button", name=f"Open item {changed}").click()
    dialog = page.locator("#item-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("table.history tbody tr")).to_have_count(2)
    expect(dialog.locator("table.history tbody tr").first).to_contain_text("current")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_the_create_form_defaults_follow_the_label_mode_and_bad_values_are_named(
    page: Page, live_server: LiveServer
) -> None:
    page.goto(f"{live_server.url}/")
    strategy = page.locator("#p-strategy")
    finetune_at = page.locator("#p-finetune")
    self_training = page.locator("#p-selftrain")
    expect(strategy).to_have_value("cluster_margin")
    expect(finetune_at).to_have_attribute("placeholder", "250")
    expect(self_training).to_be_checked()
    page.get_by_label("Any number (multi-label)").check()
    expect(strategy).to_have_value("ml_margin")
    expect(finetune_at).to_have_attribute("placeholder", "0")
    expect(self_training).to_be_disabled()
    expect(self_training).not_to_be_checked()
    page.get_by_label("One (single-label)").check()
    expect(strategy).to_have_value("cluster_margin")
    expect(finetune_at).to_have_attribute("placeholder", "250")
    expect(self_training).to_be_enabled()
    expect(self_training).to_be_checked()
    # fine-tuning and self-training are off by default for images; self-training may be ticked
    page.locator("#p-kind").select_option("image_classification")
    expect(finetune_at).to_have_attribute("placeholder", "0")
    expect(self_training).to_be_enabled()
    expect(self_training).not_to_be_checked()
    page.locator("#p-kind").select_option("text_classification")
    expect(finetune_at).to_have_attribute("placeholder", "250")
    expect(self_training).to_be_checked()

    # multi-label projects cannot fine-tune their encoder: the server's 422 is shown, nothing made
    page.get_by_label("Any number (multi-label)").check()
    fill_new_project(page, "Ticket tags", ["urgent", "billing"])
    page.locator("#p-finetune").fill("100")
    page.get_by_role("button", name="Create project").click()
    error = page.locator("#create-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("auto_finetune_at")
    with live_server.client() as http:
        assert "Ticket tags" not in [p["name"] for p in http.get("/api/projects").json()]

    # left blank: the kind's default (off for multi-label), with the multi-label default strategy
    page.locator("#p-finetune").fill("")
    page.get_by_role("button", name="Create project").click()
    project = created_project(page, live_server)
    assert project["multi_label"] is True and project["strategy"] == "ml_margin"
    assert project["auto_finetune_at"] == 0
    assert project["self_training"] is False


def test_the_dashboard_saves_self_training_and_hides_it_where_it_cannot_apply(
    page: Page, live_server: LiveServer
) -> None:
    project = live_server.create_project("Self-taught", ["yes", "no"])
    assert project["self_training"] is True
    page.goto(f"{live_server.url}/projects/{project['id']}")
    box = page.get_by_label("Self-training: also learn from the model's confident predictions")
    expect(box).to_be_checked()
    box.uncheck()
    expect(page.locator("#selftrain-status")).to_contain_text("human labels only")
    with live_server.client() as http:
        assert http.get(f"/api/projects/{project['id']}").json()["self_training"] is False
    page.reload()
    expect(page.locator("#f-selftrain")).not_to_be_checked()

    tags = live_server.create_project("Tags without self-training", ["urgent"], multi_label=True)
    page.goto(f"{live_server.url}/projects/{tags['id']}")
    expect(page.locator("#settings-form")).to_be_visible()
    expect(page.locator("#f-selftrain")).to_have_count(0)


def test_bad_upload_shows_the_servers_error(page: Page, live_server: LiveServer) -> None:
    project = live_server.create_project("Bad uploads", ["yes", "no"])
    page.goto(f"{live_server.url}/projects/{project['id']}")
    page.locator("#import-file").set_input_files(
        files=[
            {
                "name": "broken.jsonl",
                "mimeType": "application/x-ndjson",
                "buffer": b'{"text": "fine"}\n{not json}\n{"text": "also fine"}\n',
            }
        ]
    )
    page.get_by_role("button", name="Upload").click()
    error = page.locator("#import-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("line 2 is not valid JSON")
    expect(page.locator("#import-result")).to_be_empty()
    with live_server.client() as http:
        status = http.get(f"/api/projects/{project['id']}/status").json()
    assert status["total_items"] == 0  # nothing of the bad file was stored


def test_labels_given_offline_are_kept_and_sent_later(
    page: Page, live_server: LiveServer, sentences: list[Sentence], tmp_path: Path
) -> None:
    truth = truth_of(sentences)
    project = live_server.create_project("Offline", TOPICS, retrain_every=1000)
    pid = project["id"]
    class_ids = {c["name"]: c["id"] for c in project["classes"]}
    keys = {c["name"]: c["shortcut"] for c in project["classes"]}
    live_server.import_texts(pid, [s.text for s in sentences[:40]], tmp_path)
    page.goto(f"{live_server.url}/projects/{pid}/label")
    item_on_screen(page)
    expect(page.locator("#stat-queue")).not_to_have_text("0")  # the next items are prefetched

    # the connection drops: answers go on from the prefetched queue and wait in the outbox
    page.context.set_offline(True)
    offline_ids = []
    for _ in range(3):
        _, text = item_on_screen(page)
        offline_ids.append(label_current(page, keys[truth[text]], class_ids[truth[text]]))
    conn = page.locator("#conn")
    expect(conn).to_have_attribute("data-state", "offline")
    expect(conn).to_have_attribute("data-pending", "3")
    stored = json.loads(page.evaluate(f"localStorage.getItem('labella.outbox.{pid}')"))
    assert [entry["item_id"] for entry in stored] == offline_ids
    for item_id in offline_ids:
        assert history(live_server, pid, item_id)["labels"] == []

    page.context.set_offline(False)
    wait_until_sent(page)
    for item_id in offline_ids:
        item = history(live_server, pid, item_id)
        assert [c["name"] for c in item["current_label"]["classes"]] == [
            truth[item["item"]["text"]]
        ]

    # the server is out of reach and the tab is reloaded: the unsent answers survive the reload
    def refuse(route: Any) -> None:
        route.abort("connectionrefused")

    page.route(re.compile(r"/items/\d+/(label|skip)$"), refuse)
    _, text = item_on_screen(page)
    kept = [label_current(page, keys[truth[text]], class_ids[truth[text]])]
    kept_skip, _ = item_on_screen(page)
    page.keyboard.press("s")
    expect(page.locator("#item-text")).not_to_have_attribute("data-item-id", str(kept_skip))
    expect(conn).to_have_attribute("data-pending", "2")
    page.reload()
    expect(conn).to_have_attribute("data-pending", "2")
    page.unroute(re.compile(r"/items/\d+/(label|skip)$"), refuse)
    wait_until_sent(page)
    assert history(live_server, pid, kept[0])["item"]["status"] == "labeled"
    assert history(live_server, pid, kept_skip)["item"]["status"] == "skipped"
    # items answered before the reload are not served again
    shown, _ = item_on_screen(page)
    assert shown not in {*offline_ids, *kept, kept_skip}


def test_multi_label_keys_toggle_and_the_keys_list(
    page: Page, live_server: LiveServer, sentences: list[Sentence], tmp_path: Path
) -> None:
    project = live_server.create_project(
        "Tags", ["outdoor", "competition", "cooking"], multi_label=True
    )
    pid = project["id"]
    outdoor, competition, cooking = (c["id"] for c in project["classes"])
    live_server.import_texts(pid, [s.text for s in sentences[:5]], tmp_path)
    page.goto(f"{live_server.url}/projects/{pid}/label")
    item_id, _ = item_on_screen(page)
    button = {
        cid: page.locator(f".class-button[data-class-id='{cid}']")
        for cid in (outdoor, competition, cooking)
    }
    page.keyboard.press("1")
    page.keyboard.press("2")
    page.keyboard.press("3")
    page.keyboard.press("3")  # toggles cooking off again
    for cid, pressed in ((outdoor, "true"), (competition, "true"), (cooking, "false")):
        expect(button[cid]).to_have_attribute("aria-pressed", pressed)

    page.keyboard.press("?")
    dialog = page.locator("#keys-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Toggle competition")
    page.keyboard.press("3")  # keys do not reach the screen behind the dialog
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(button[cooking]).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#item-text")).to_have_attribute("data-item-id", str(item_id))

    page.keyboard.press("Enter")
    expect(page.locator("#item-text")).not_to_have_attribute("data-item-id", str(item_id))
    wait_until_sent(page)
    label = history(live_server, pid, item_id)["current_label"]
    assert sorted(c["name"] for c in label["classes"]) == ["competition", "outdoor"]


def test_pages_of_a_missing_project_say_so(page: Page, live_server: LiveServer) -> None:
    for path in ("/projects/9999", "/projects/9999/label", "/projects/9999/items"):
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.status == 404
        expect(page.locator("main")).to_contain_text("project 9999 does not exist")


ETA_CHECK = """
async () => {
  const { JobBoard } = await import("/static/jobs.js");
  const box = document.createElement("div");
  document.body.append(box);
  const board = new JobBoard(box);
  const job = { id: 1, kind: "encode", status: "running", progress_total: 100, progress_done: 10,
                message: "", error: null, finished_at: null };
  board.render([job]);
  const first = performance.now();
  await new Promise((done) => setTimeout(done, 300));
  const second = performance.now();
  board.render([{ ...job, progress_done: 20 }]);
  const rate = 10 / ((second - first) / 1000);
  return { expected: 80 / rate, eta: board.eta({ ...job, progress_done: 20 }),
           state: box.querySelector(".job-state").textContent,
           value: box.querySelector("progress").value };
}
"""


def test_job_progress_shows_an_eta_from_the_rate(page: Page, live_server: LiveServer) -> None:
    page.goto(f"{live_server.url}/")
    result = page.evaluate(ETA_CHECK)
    # the ETA is what is left at the rate progress moved between two polls
    assert result["eta"] == pytest.approx(result["expected"], rel=0.2)
    assert result["value"] == 20
    assert re.fullmatch(r"20% · about \d+ s left", result["state"]), result["state"]
