"""Browser-test fixtures: a real ``labella serve`` subprocess (SQLite in a temporary data dir, the
session's shared embedding cache) and Debian's Chromium driven headless by Playwright.

`make test` installs Chromium and sets LABELLA_REQUIRE_BROWSER=1, so a missing browser fails
there; elsewhere these tests are skipped with the reason."""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SENTENCES = Path(__file__).with_name("sentences.csv")
VIEWPORT = {"width": 1280, "height": 800}
# Generous: the machine may be loaded (2 cores shared with the encoder and other tests).
TIMEOUT_MS = 30_000
SERVER_START_SECONDS = 90
# The site owner `labella serve` creates on its first start (from these variables).
OWNER = "owner"
OWNER_PASSWORD = "web tests site password"


@dataclass(frozen=True)
class Sentence:
    text: str
    topic: str


def load_sentences() -> list[Sentence]:
    with SENTENCES.open(newline="", encoding="utf-8") as handle:
        return [Sentence(row["text"], row["topic"]) for row in csv.DictReader(handle)]


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    token: str = ""  # an API token of the site owner, made once the server answers

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, timeout=60, headers=headers)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def create_project(self, name: str, classes: list[str], **body: Any) -> dict[str, Any]:
        with self.client() as http:
            response = http.post("/api/projects", json={"name": name, "classes": classes, **body})
            assert response.status_code == 201, response.text
            project: dict[str, Any] = response.json()
            return project

    def import_texts(self, project_id: int, texts: list[str], tmp_path: Path) -> dict[str, Any]:
        path = tmp_path / f"texts-{project_id}.txt"
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
        with self.client() as http, path.open("rb") as handle:
            response = http.post(
                f"/api/projects/{project_id}/imports", files={"file": (path.name, handle)}
            )
        assert response.status_code == 201, response.text
        report: dict[str, Any] = response.json()
        return report


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _labella_command() -> list[str]:
    script = Path(sys.executable).with_name("labella")
    if script.exists():
        return [str(script)]
    found = shutil.which("labella")
    return [found] if found else [sys.executable, "-m", "labella.cli.main"]


def start_server(data_dir: Path, embedding_cache_dir: Path) -> LiveServer:
    port = _free_port()
    env = {
        **os.environ,
        "LABELLA_DATA_DIR": str(data_dir),
        "LABELLA_EMBEDDING_CACHE_DIR": str(embedding_cache_dir),
        "LABELLA_WORKER_POLL_SECONDS": "0.2",
        "HF_HUB_OFFLINE": "1",
        "LABELLA_OWNER_USERNAME": OWNER,
        "LABELLA_OWNER_PASSWORD": OWNER_PASSWORD,
    }
    env.pop("LABELLA_DATABASE_URL", None)
    log_path = data_dir / "server.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [*_labella_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=data_dir,  # no stray .env file of the developer's is read
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = LiveServer(f"http://127.0.0.1:{port}", data_dir, process, log_path)
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"labella serve exited with {process.returncode}:\n{server.log_tail()}"
            )
        try:
            if httpx.get(f"{server.url}/login", timeout=2).status_code == 200:
                server.token = _owner_token(server.url)
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(f"labella serve did not answer in time:\n{server.log_tail()}")
        time.sleep(0.2)


def _owner_token(url: str) -> str:
    with httpx.Client(base_url=url, timeout=60) as http:
        signed_in = http.post(
            "/api/auth/login", json={"username": OWNER, "password": OWNER_PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        made = http.post(
            "/api/auth/tokens",
            json={"name": "web tests"},
            headers={"X-CSRF-Token": signed_in.json()["csrf_token"]},
        )
        assert made.status_code == 201, made.text
        secret: str = made.json()["secret"]
        return secret


def sign_in(page: Page, url: str, username: str = OWNER, password: str = OWNER_PASSWORD) -> None:
    """Sign the page's browser context in (the session cookie), without a page load."""
    response = page.context.request.post(
        f"{url}/api/auth/login", data={"username": username, "password": password}
    )
    assert response.status == 200, response.text()


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, embedding_cache_dir: Path
) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("web-data"), embedding_cache_dir)
    yield server
    stop_server(server)


def _browser_required() -> bool:
    return bool(os.environ.get("LABELLA_REQUIRE_BROWSER"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if _browser_required():
            pytest.fail("playwright is required (pip install -e '.[dev]')")
        pytest.skip("playwright is not installed")
    if not CHROMIUM.exists():
        if _browser_required():
            pytest.fail(f"{CHROMIUM} is required: apt-get install chromium (make browser)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(
    browser: Browser, request: pytest.FixtureRequest, tmp_path: Path, live_server: LiveServer
) -> Iterator[Page]:
    """A browser tab signed in as the site owner (``anonymous_page`` is one that is not)."""
    tab = _new_tab(browser)
    sign_in(tab, live_server.url)
    yield from _watch(tab, request, tmp_path)


@pytest.fixture
def anonymous_page(
    browser: Browser, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Page]:
    tab = _new_tab(browser)
    yield from _watch(tab, request, tmp_path)


def _new_tab(browser: Browser) -> Page:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def _watch(tab: Page, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    context = tab.context
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        shot = tmp_path / "failure.png"
        tab.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failure: {shot}")
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
