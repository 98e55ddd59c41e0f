"""Load test: simulated annotators label concurrently through the HTTP API of a real server, on
SQLite and on PostgreSQL, and every answer is accounted for afterwards.

For each backend a fresh database gets one project of ``--items`` embedded items (``--ranked`` of
them with a planted ranking, the rest served in random order, an evaluation sample of 100
interleaved), overlap on a share of the items (``--overlap`` annotators on ``--overlap-share`` of
them; the rest are labeled once), one user per annotator with an API token, and a server
(uvicorn in a subprocess, loopback only, no job worker) on it. PostgreSQL is a throwaway server
started the way the tests start it (``tests/pg_server.py``).

Phases, each bounded in time:

* ``baseline``: one annotator alone for ``--baseline-seconds`` (the unloaded latency);
* ``load``: ``--annotators`` annotators at once for ``--seconds``, each in a loop: GET /next
  (n=5), then answer every item served (a label, or a skip 3% of the time); 5% of the answers are
  sent twice with the same request id, as a client does after a lost response. ``--think-ms``
  is the time an annotator looks at an item before answering (uniform in 0.5-1.5 times it); 0, the
  default, is the worst case: the server saturated, latency then mostly queueing
  (``annotators / throughput``), not a realistic pace.

Backends: ``sqlite``, ``postgres``, and the baseline ``sqlite-busy-wait``: SQLite without the
process's write queue (``storage.db.Database.transaction``), its writers waiting in SQLite's own
busy handler as before that queue existed.

Checks (from the client's log and the database):

* lost labels: an answer acknowledged (201) whose request id is not in the database;
* duplicated labels: a request id stored twice, a retry answered with another label id, or an item
  with more human labels (or answers) than it may have;
* double assignments: an item labeled once served to two annotators (leases outlast the run), an
  overlapped item served to more than ``--overlap`` annotators, or an item served again to an
  annotator who had already answered it.

    .venv/bin/python benchmarks/labeling_load.py --backends sqlite postgres --seconds 120
    .venv/bin/python benchmarks/labeling_load.py --backends sqlite postgres --think-ms 1000
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import insert, select

from labella.config import Settings
from labella.services import accounts, assignment, evaluation
from labella.services import projects as project_service
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database
from labella.storage.models import Item, Label, LabelSource

CLASSES = ("business", "entertainment", "politics", "sport", "tech")
BATCH = 5
SKIP_SHARE = 0.03
RETRY_SHARE = 0.05
PASSWORD_HASH_OF = "load test password"
SERVER_START_SECONDS = 60


@dataclass
class Log:
    """What the simulated annotators saw, merged over threads under a lock."""

    next_ms: list[float] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)
    served: list[tuple[str, int, float]] = field(default_factory=list)  # annotator, item, time
    acked: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # rid -> who, item, label
    answered_at: dict[tuple[str, int], float] = field(default_factory=dict)
    retries: int = 0
    retry_mismatches: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    empty_batches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


# -- set-up ----------------------------------------------------------------------------------------
def build(
    db: Database, settings: Settings, args: argparse.Namespace
) -> tuple[int, list[tuple[str, str]]]:
    """The project, its items and the annotators; (project id, [(name, API token)])."""
    project = project_service.create_project(
        db,
        project_service.ProjectSpec(
            name="load", classes=[project_service.ClassSpec(name=c) for c in CLASSES]
        ),
    )
    project_service.update_project(
        db, project.id, overlap=args.overlap, overlap_share=args.overlap_share
    )
    rng = np.random.default_rng(args.seed)
    ranked = set(rng.choice(args.items, size=args.ranked, replace=False).tolist())
    keys = rng.random(args.items)
    rows = [
        {
            "project_id": project.id,
            "text": f"load test item {i}",
            "content_hash": f"load-{i}",
            "status": "unlabeled",
            "priority": float(rng.random()) if i in ranked else None,
            "priority_reason": "planted" if i in ranked else None,
            "random_key": float(keys[i]),
            # as after the encode job; no model is trained (the server runs no worker), so the
            # first training a label asks for stays queued, as it would while a training runs
            "embedded": True,
        }
        for i in range(args.items)
    ]
    with db.transaction() as session:
        for start in range(0, len(rows), 5000):
            session.execute(insert(Item), rows[start : start + 5000])
    evaluation.draw_eval_sample(db, settings, project.id, size=100)
    password_hash = accounts.hash_password(PASSWORD_HASH_OF)
    tokens = []
    for k in range(args.annotators + 1):
        name = f"annotator{k:02d}"
        accounts.create_user(db, name, password_hash=password_hash, actor="load test")
        accounts.add_member(db, project.id, name, "annotator", actor="load test")
        secret = accounts.create_token(db, name, name="load", actor="load test").secret
        tokens.append((name, secret))
    return project.id, tokens


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The baseline server: the same app, but each Database without its SQLite write queue.
BUSY_WAIT_SERVER = """
import sys, uvicorn
from labella.storage import db
_init = db.Database.__init__
def init(self, engine):
    _init(self, engine)
    self._write_queue = None
db.Database.__init__ = init
from labella.api.app import create_app
uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def start_server(
    database_url: str, data_dir: Path, *, busy_wait: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "LABELLA_DATA_DIR": str(data_dir),
        "LABELLA_DATABASE_URL": database_url,
        "LABELLA_RUN_WORKER": "false",
        "HF_HUB_OFFLINE": "1",
    }
    log = (data_dir / "server.log").open("wb")
    uvicorn = [
        *("-m", "uvicorn", "labella.api.app:create_app", "--factory", "--host", "127.0.0.1"),
        *("--port", str(port), "--log-level", "warning"),
    ]
    process = subprocess.Popen(
        [sys.executable, *(["-c", BUSY_WAIT_SERVER, str(port)] if busy_wait else uvicorn)],
        cwd=data_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((data_dir / "server.log").read_text()[-3000:])
        try:
            httpx.get(f"{url}/login", timeout=2)
            return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start in time")


# -- the simulated annotators ----------------------------------------------------------------------
def annotate(
    url: str,
    project_id: int,
    who: tuple[str, str],
    deadline: float,
    log: Log,
    seed: int,
    think_ms: float,
) -> None:
    try:
        _annotate(url, project_id, who, deadline, log, seed, think_ms)
    except Exception as exc:  # a crashed client is a failed run, not a quiet one
        with log.lock:
            log.errors[f"client crashed: {exc!r}"] += 1


def _annotate(
    url: str,
    project_id: int,
    who: tuple[str, str],
    deadline: float,
    log: Log,
    seed: int,
    think_ms: float,
) -> None:
    rng = random.Random(seed)
    name, token = who
    base = f"/api/projects/{project_id}"
    with httpx.Client(
        base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = http.get(f"{base}/next", params={"n": BATCH})
            took = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                with log.lock:
                    log.errors[f"GET /next {response.status_code}: {response.text[:120]}"] += 1
                continue
            items = [i["item_id"] for i in response.json()["items"]]
            now = time.monotonic()
            with log.lock:
                log.next_ms.append(took)
                log.served.extend((name, item_id, now) for item_id in items)
                if not items:
                    log.empty_batches += 1
            if not items:
                time.sleep(0.1)
                continue
            for item_id in items:
                if think_ms > 0:
                    time.sleep(think_ms * rng.uniform(0.5, 1.5) / 1000)
                if time.monotonic() >= deadline:
                    break
                answer(http, base, name, item_id, rng, log)


def answer(
    http: httpx.Client, base: str, name: str, item_id: int, rng: random.Random, log: Log
) -> None:
    rid = uuid.uuid4().hex
    skip = rng.random() < SKIP_SHARE
    path = f"{base}/items/{item_id}/{'skip' if skip else 'label'}"
    body: dict[str, Any] = {"request_id": rid}
    if not skip:
        body["classes"] = [rng.choice(CLASSES)]
    started = time.perf_counter()
    response = http.post(path, json=body)
    took = (time.perf_counter() - started) * 1000
    if response.status_code != 201:
        with log.lock:
            log.errors[
                f"POST {path.rsplit('/', 1)[1]} {response.status_code}: {response.text[:120]}"
            ] += 1
        return
    label_id = int(response.json()["label"]["id"])
    with log.lock:
        log.answer_ms.append(took)
        log.acked[rid] = (name, item_id, label_id)
        log.answered_at[(name, item_id)] = time.monotonic()
    if rng.random() < RETRY_SHARE:
        again = http.post(path, json=body)
        with log.lock:
            log.retries += 1
            if again.status_code != 201 or int(again.json()["label"]["id"]) != label_id:
                log.retry_mismatches += 1


def run_phase(
    url: str,
    project_id: int,
    tokens: list[tuple[str, str]],
    seconds: float,
    log: Log,
    *,
    think_ms: float = 0.0,
) -> float:
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(
            target=annotate,
            args=(url, project_id, token, deadline, log, k, think_ms),
            daemon=True,
        )
        for k, token in enumerate(tokens)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    return time.monotonic() - started


# -- checks ----------------------------------------------------------------------------------------
def check(db: Database, project_id: int, log: Log, k: int, share: float) -> dict[str, int]:
    with db.reader() as session:
        rows = session.execute(
            select(Label.id, Label.item_id, Label.annotator, Label.request_id, Label.kind).where(
                Label.project_id == project_id,
                Label.source == LabelSource.HUMAN.value,
                Label.annotator.is_not(None),
            )
        ).all()
        eval_items = set(
            session.scalars(
                select(Item.id).where(Item.project_id == project_id, Item.eval_sample.is_(True))
            )
        )
    stored = Counter(row.request_id for row in rows)
    by_rid = {row.request_id: row for row in rows}

    def overlapped(item_id: int) -> bool:
        return k > 1 and item_id not in eval_items and assignment.drawn_for_overlap(item_id, share)

    lost = sum(1 for rid in log.acked if rid not in stored)
    wrong = sum(
        1
        for rid, (name, item_id, label_id) in log.acked.items()
        if rid in by_rid
        and (
            by_rid[rid].id != label_id
            or by_rid[rid].item_id != item_id
            or by_rid[rid].annotator != name
        )
    )
    duplicated = sum(n - 1 for n in stored.values() if n > 1) + log.retry_mismatches
    per_item = Counter(row.item_id for row in rows)
    too_many = sum(1 for item_id, n in per_item.items() if n > (k if overlapped(item_id) else 1))
    served_to: dict[int, set[str]] = defaultdict(set)
    served_after_answer = 0
    for name, item_id, at in log.served:
        served_to[item_id].add(name)
        answered = log.answered_at.get((name, item_id))
        if answered is not None and at > answered:
            served_after_answer += 1
    double_single = sum(
        1 for item_id, names in served_to.items() if not overlapped(item_id) and len(names) > 1
    )
    over_k = sum(
        1 for item_id, names in served_to.items() if overlapped(item_id) and len(names) > k
    )
    return {
        "answers acknowledged": len(log.acked),
        "label rows stored": len(rows),
        "lost": lost,
        "stored differently than acknowledged": wrong,
        "duplicated": duplicated,
        "items with more labels than allowed": too_many,
        "single items served to 2+ annotators": double_single,
        f"overlapped items served to more than {k}": over_k,
        "served again after answering": served_after_answer,
        "overlapped items served": sum(1 for i in served_to if overlapped(i)),
        "items served": len(served_to),
    }


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# -- one backend -----------------------------------------------------------------------------------
def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"labella-load-{backend}-"))
    pg = None
    try:
        if backend == "postgres":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.pg_server import create_database, start_postgres

            pg = start_postgres()
            url = create_database(pg, "load")
        else:
            url = f"sqlite:///{root / 'labella.db'}"  # sqlite, sqlite-busy-wait
        settings = Settings(data_dir=root, database_url=url, run_worker=False, _env_file=None)  # type: ignore[call-arg]
        settings.ensure_dirs()
        db = Database.from_settings(settings)
        upgrade_database(db.engine)
        project_id, tokens = build(db, settings, args)
        process, server_url = start_server(url, root, busy_wait=backend == "sqlite-busy-wait")
        try:
            baseline = Log()
            run_phase(server_url, project_id, tokens[-1:], args.baseline_seconds, baseline)
            load = Log()
            seconds = run_phase(
                server_url,
                project_id,
                tokens[: args.annotators],
                args.seconds,
                load,
                think_ms=args.think_ms,
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
        checks = check(db, project_id, load, args.overlap, args.overlap_share)
        base_checks = check(db, project_id, baseline, args.overlap, args.overlap_share)
        db.dispose()
        return {
            "backend": backend,
            "seconds": seconds,
            "baseline_next_p95": pct(baseline.next_ms, 95),
            "baseline_next_p50": pct(baseline.next_ms, 50),
            "next_p50": pct(load.next_ms, 50),
            "next_p95": pct(load.next_ms, 95),
            "next_p99": pct(load.next_ms, 99),
            "answer_p95": pct(load.answer_ms, 95),
            "answers_per_s": len(load.acked) / seconds,
            "next_calls": len(load.next_ms),
            "retries": load.retries,
            "empty_batches": load.empty_batches,
            "errors": dict(load.errors) | dict(baseline.errors),
            "checks": checks,
            "baseline_violations": {k: v for k, v in base_checks.items() if k not in _COUNTS and v},
        }
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


_COUNTS = {
    "answers acknowledged",
    "label rows stored",
    "overlapped items served",
    "items served",
}


def _fatal(error: str) -> bool:
    """A server error or a crashed client fails the run; a 4xx is reported only."""
    return error.startswith("client crashed") or error.split(" ")[2].startswith("5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["sqlite", "postgres"],
        choices=["sqlite", "sqlite-busy-wait", "postgres"],
    )
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--ranked", type=int, default=2_000)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--overlap-share", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--think-ms", type=float, default=0.0)
    args = parser.parse_args()
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {load_avg:.1f} at the start; "
        f"{args.annotators} annotators x {args.seconds:.0f} s, batches of {BATCH}, "
        f"{args.items} items, overlap {args.overlap} on {args.overlap_share:.0%}, "
        f"think time {args.think_ms:.0f} ms per item"
    )
    failed = False
    for backend in args.backends:
        result = run_backend(backend, args)
        checks = result["checks"]
        violations = {k: v for k, v in checks.items() if k not in _COUNTS and v}
        violations |= result["baseline_violations"]
        if not checks["answers acknowledged"]:
            violations["no answer was acknowledged"] = 1
        violations |= {key: n for key, n in result["errors"].items() if _fatal(key)}
        failed |= bool(violations)
        print(f"\n## {backend}")
        print(
            f"GET /next p50 {result['next_p50']:.1f} ms, p95 {result['next_p95']:.1f} ms, "
            f"p99 {result['next_p99']:.1f} ms over {result['next_calls']} calls "
            f"(one annotator alone: p50 {result['baseline_next_p50']:.1f} ms, "
            f"p95 {result['baseline_next_p95']:.1f} ms; loaded/alone p95 "
            f"{result['next_p95'] / result['baseline_next_p95']:.1f}x)"
        )
        print(
            f"answers: {result['answers_per_s']:.0f}/s, POST p95 {result['answer_p95']:.1f} ms, "
            f"{result['retries']} retried, {result['empty_batches']} empty batches"
        )
        for key, value in checks.items():
            print(f"  {key}: {value}")
        print(f"  errors: {result['errors'] or 'none'}")
        print("  RESULT: " + ("FAIL " + str(violations) if violations else "ok"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
