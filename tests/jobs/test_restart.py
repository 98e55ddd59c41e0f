"""A real `labella serve` killed with SIGKILL in the middle of an encode job: after a restart the
job is re-queued, resumes and completes, and no label submitted before the kill is lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

N_TEXTS = 96
CHUNK = 4

SUBJECTS = ["The striker", "A chef", "The bank", "Our neighbour", "The orchestra", "A pilot"]
VERBS = ["praised", "questioned", "ignored", "celebrated", "described", "rejected"]
OBJECTS = [
    "the new stadium",
    "a spicy curry recipe",
    "the interest rate decision",
    "the broken garden fence",
    "the summer concert programme",
    "the delayed morning flight",
    "an old mystery novel",
]


def texts() -> list[str]:
    """N_TEXTS distinct short sentences, so the encoder has real work to do."""
    out = []
    for i in range(N_TEXTS):
        subject = SUBJECTS[i % len(SUBJECTS)]
        verb = VERBS[(i // len(SUBJECTS)) % len(VERBS)]
        obj = OBJECTS[(i // (len(SUBJECTS) * len(VERBS))) % len(OBJECTS)]
        out.append(f"{subject} {verb} {obj} on day {i + 1}.")
    assert len(set(out)) == N_TEXTS
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def labella_command() -> list[str]:
    script = Path(sys.executable).with_name("labella")
    if script.is_file():
        return [str(script)]
    found = shutil.which("labella")
    return [found] if found else [sys.executable, "-m", "labella.cli.main"]


def wait_for(
    condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Server:
    """`labella serve` in a subprocess, on its own data directory and a free port."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "server.log"
        self.cwd = tmp_path  # no stray .env file from the repository is read
        self.env = {
            **os.environ,
            "LABELLA_DATA_DIR": str(tmp_path / "data"),
            "LABELLA_DATABASE_URL": database_url,
            "LABELLA_ENCODE_CHUNK": str(CHUNK),
            "LABELLA_ENCODE_BATCH_SIZE": str(CHUNK),
            "LABELLA_WORKER_POLL_SECONDS": "0.1",
            "LABELLA_JOB_HEARTBEAT_SECONDS": "1",
            "HF_HUB_OFFLINE": "1",
            # the site owner the first start creates; requests go with an API token of theirs
            "LABELLA_OWNER_USERNAME": "owner",
            "LABELLA_OWNER_PASSWORD": "restart test password",
        }
        self.token = ""
        # A private embedding cache: the texts must really be encoded while we watch.
        self.env.pop("LABELLA_EMBEDDING_CACHE_DIR", None)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*labella_command(), "serve", "--port", str(self.port)],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, timeout=120, what=f"the server to answer (log: {self.log})")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited: {self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/openapi.json", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def _auth(self) -> dict[str, str]:
        if not self.token:  # made once; it lives in the database, so it survives restarts
            with httpx.Client(base_url=self.url, timeout=60) as http:
                signed_in = http.post(
                    "/api/auth/login",
                    json={"username": "owner", "password": "restart test password"},
                )
                assert signed_in.status_code == 200, signed_in.text
                made = http.post(
                    "/api/auth/tokens",
                    json={"name": "restart test"},
                    headers={"X-CSRF-Token": signed_in.json()["csrf_token"]},
                )
                assert made.status_code == 201, made.text
                self.token = made.json()["secret"]
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=30, headers=self._auth())
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, expected: int, **kwargs: Any) -> Any:
        response = httpx.post(f"{self.url}{path}", timeout=60, headers=self._auth(), **kwargs)
        assert response.status_code == expected, response.text
        return response.json()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    running = Server(tmp_path, database_url)
    yield running
    running.stop()


def test_killed_server_resumes_the_encode_job_and_keeps_labels(server: Server) -> None:
    server.start()
    project = server.post(
        "/api/projects", 201, json={"name": "restart", "classes": ["news", "other"]}
    )
    pid = project["id"]
    lines = "\n".join(json.dumps({"text": t}) for t in texts()).encode()
    report = server.post(
        f"/api/projects/{pid}/imports", 201, files={"file": ("texts.jsonl", lines)}
    )
    assert report["items_created"] == N_TEXTS
    job_id = report["encode_job_id"]

    # label a few items while the encoder is still loading
    batch = server.get(f"/api/projects/{pid}/next?n=3&annotator=ann")["items"]
    labeled = {
        batch[0]["item_id"]: "news",
        batch[1]["item_id"]: "other",
        batch[2]["item_id"]: "news",
    }
    for item_id, name in labeled.items():
        server.post(
            f"/api/projects/{pid}/items/{item_id}/label",
            201,
            json={"classes": [name], "annotator": "ann"},
        )

    def mid_run() -> dict[str, Any] | None:
        job = server.get(f"/api/jobs/{job_id}")
        assert job["status"] in ("queued", "running"), job
        # past the first chunk: that one is committed (flagged embedded), the rest is not done
        if job["status"] == "running" and CHUNK < job["progress_done"] < job["progress_total"]:
            return job
        return None

    before = wait_for(mid_run, timeout=180, what="the encode job to report partial progress")
    server.kill()
    assert before["progress_total"] == N_TEXTS

    server.start()
    first_seen = server.get(f"/api/jobs/{job_id}")
    assert first_seen["attempts"] >= 1
    assert (
        first_seen["message"].startswith("re-queued: the server stopped during attempt 1")
        or "resumed after a restart (attempt 2)" in first_seen["message"]
    ), first_seen

    def finished() -> dict[str, Any] | None:
        job = server.get(f"/api/jobs/{job_id}")
        return job if job["status"] not in ("queued", "running") else None

    done = wait_for(finished, timeout=300, what="the re-queued encode job to finish", every=0.2)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert done["message"].startswith(f"resumed after a restart (attempt 2): embedded {N_TEXTS}")
    assert (done["progress_done"], done["progress_total"]) == (N_TEXTS, N_TEXTS)
    # the second attempt walked only the chunks the first had not committed
    committed = (before["progress_done"] - 1) // CHUNK * CHUNK
    assert committed >= CHUNK
    assert done["result"]["encoded"] + done["result"]["reused"] <= N_TEXTS - committed

    status = server.get(f"/api/projects/{pid}/status")
    assert status["encoding"] == {"embedded": N_TEXTS, "total": N_TEXTS, "fraction": 1.0}
    assert status["counts"]["labeled"] == len(labeled)
    for item_id, name in labeled.items():
        history = server.get(f"/api/projects/{pid}/items/{item_id}")
        assert [c["name"] for c in history["current_label"]["classes"]] == [name], history
