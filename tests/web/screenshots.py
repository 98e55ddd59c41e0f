"""The README's screenshots, made the way the browser tests run the app: a real `labella serve`
on a temporary data dir, the sentences of ``sentences.csv`` imported, 30 of them labeled with their
true topics (three trainings, so the learning curve has three points), then the labeling screen
and the dashboard photographed at 1280×800 in Debian's Chromium.

    python -m tests.web.screenshots docs
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.web.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    LiveServer,
    load_sentences,
    sign_in,
    start_server,
    stop_server,
)

ROUNDS = 3  # of 10 labels each; the project retrains after every 10


def wait_for_jobs(http: httpx.Client, project_id: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while http.get(f"/api/projects/{project_id}/status").json()["active_jobs"]:
        if time.monotonic() > deadline:
            raise TimeoutError("the background jobs did not finish")
        time.sleep(0.5)


def prepare(server: LiveServer, workdir: Path) -> int:
    sentences = load_sentences()
    truth = {s.text: s.topic for s in sentences}
    project = server.create_project(
        "News sentences",
        ["sport", "food", "weather"],
        retrain_every=10,
        description="Short sentences by topic",
    )
    pid = int(project["id"])
    server.import_texts(pid, [s.text for s in sentences], workdir)
    with server.client() as http:
        wait_for_jobs(http, pid)
        for _ in range(ROUNDS):
            batch = http.get(f"/api/projects/{pid}/next", params={"n": 10, "annotator": "maria"})
            for item in batch.json()["items"]:
                http.post(
                    f"/api/projects/{pid}/items/{item['item_id']}/label",
                    json={"classes": [truth[item["text"]]], "annotator": "maria"},
                ).raise_for_status()
            wait_for_jobs(http, pid)
    return pid


def photograph(server: LiveServer, project_id: int, folder: Path) -> None:
    from playwright.sync_api import sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
        sign_in(page, server.url)
        page.goto(f"{server.url}/projects/{project_id}/label")
        page.locator("#prediction").filter(has_text="suggests").wait_for()
        page.screenshot(path=str(folder / "labeling.png"))
        page.goto(f"{server.url}/projects/{project_id}")
        page.locator("#curve svg circle").first.wait_for()
        page.locator("#queue tbody tr").first.wait_for()
        page.screenshot(path=str(folder / "dashboard.png"), full_page=True)
        browser.close()


def main(folder: str) -> None:
    with tempfile.TemporaryDirectory(prefix="labella-shots-") as tmp:
        server = start_server(Path(tmp), Path(tmp) / "embeddings")
        try:
            pid = prepare(server, Path(tmp))
            photograph(server, pid, Path(folder))
        finally:
            stop_server(server)
    print(f"wrote {folder}/labeling.png and {folder}/dashboard.png")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs")
