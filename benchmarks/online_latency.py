"""Online learning latency: from a submitted label to the re-ranked queue, at 100,000 items, with
the annotator's next item served meanwhile.

A fresh database (SQLite by default; ``--database-url`` for PostgreSQL) gets one project of
``--items`` items whose 384-d embeddings are planted in the real embedding cache (a mixture of
4 classes x 10 sub-clusters, L2-normalised: this measures the loop's machinery, so the vectors need
not come from MiniLM, which would take half an hour to encode 100,000 texts on 2 cores). 200 items
get human labels and a full training makes model v1 (timed: the **baseline**, what each label
would cost if the model could only learn by retraining). Then the real worker starts (all
lanes), and ``--labels`` labels are submitted one at a time through the labeling service, each
followed by ``worker.wake()`` as the HTTP route does, ``--gap`` seconds apart. For each label the
benchmark records:

* **label → re-ranked**: from the label's commit to the end of the online update that learned it
  (the job's ``finished_at``): partial_fit, re-ranking of the whole pool with the project's
  strategy (cluster-margin by default), the queue's top 500 places and their prelabels
  rewritten;
* **next item while updating**: a second annotator calls ``next_batch(n=1)`` in a loop during the
  whole run; its latencies are compared with the same calls made before the worker started
  (**idle baseline**).

    python benchmarks/online_latency.py --items 100000 --labels 30
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select

from labella.config import Settings
from labella.jobs import (
    executors,  # noqa: F401  (registers the job kinds)
    queue,
)
from labella.jobs.worker import Worker
from labella.learners.cache import EmbeddingCache
from labella.services import labeling, training
from labella.services import projects as project_service
from labella.services.online import ONLINE_JOB
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database
from labella.storage.models import Item, Job, JobStatus, Label

CLASSES = ("world", "sports", "business", "sci/tech")
DIM = 384
TARGET_SECONDS = 1.0
TARGET_NEXT_MS = 50.0


def planted_embeddings(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of a 4-class mixture (10 sub-clusters per class) and their classes."""
    centres = rng.normal(size=(len(CLASSES), 10, DIM)).astype(np.float32)
    classes = rng.integers(0, len(CLASSES), size=n)
    sub = rng.integers(0, 10, size=n)
    noise = rng.normal(scale=2.5, size=(n, DIM)).astype(np.float32)
    vectors = centres[classes, sub] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), classes


def build(db: Database, settings: Settings, n_items: int, seed: int) -> tuple[int, np.ndarray]:
    project = project_service.create_project(
        db,
        project_service.ProjectSpec(
            name="online",
            classes=[project_service.ClassSpec(name=c) for c in CLASSES],
            # no automatic encoder fine-tuning (services.finetuning) at the 200 seed labels: a
            # fine-tuning run on the main lane is another workload, and it re-encodes the
            # planted vectors with the real encoder
            auto_finetune_at=0,
        ),
    )
    rng = np.random.default_rng(seed)
    vectors, classes = planted_embeddings(n_items, rng)
    hashes = [hashlib.sha256(f"item {i}".encode()).hexdigest() for i in range(n_items)]
    cache = EmbeddingCache(settings.embeddings_dir, project.encoder, DIM)
    try:
        for start in range(0, n_items, 20_000):
            cache.put_many(hashes[start : start + 20_000], vectors[start : start + 20_000])
    finally:
        cache.close()
    keys = rng.random(n_items)
    with db.transaction() as session:
        for start in range(0, n_items, 20_000):
            session.execute(
                insert(Item),
                [
                    {
                        "project_id": project.id,
                        "text": f"item {i}",
                        "content_hash": hashes[i],
                        "random_key": float(keys[i]),
                        "embedded": True,
                    }
                    for i in range(start, min(n_items, start + 20_000))
                ],
            )
    return project.id, classes


def item_classes(db: Database, project_id: int, classes: np.ndarray) -> dict[int, str]:
    with db.reader() as session:
        ids = session.scalars(
            select(Item.id).where(Item.project_id == project_id).order_by(Item.id)
        )
        return {int(item_id): CLASSES[int(c)] for item_id, c in zip(ids, classes, strict=True)}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class NextItemProbe(threading.Thread):
    """An annotator asking for its next item in a loop, timing each call."""

    def __init__(self, db: Database, settings: Settings, project_id: int) -> None:
        super().__init__(daemon=True)
        self.db, self.settings, self.project_id = db, settings, project_id
        self.latencies_ms: list[float] = []
        self.stop = threading.Event()

    def call(self) -> float:
        started = time.perf_counter()
        labeling.next_batch(self.db, self.settings, self.project_id, n=1, annotator="probe")
        return (time.perf_counter() - started) * 1000

    def run(self) -> None:
        while not self.stop.is_set():
            self.latencies_ms.append(self.call())
            time.sleep(0.02)


def online_job_finished_after(
    db: Database, project_id: int, label_id: int, timeout: float
) -> tuple[float, float]:
    """Seconds from the label's commit to the end of the online update that learned it, and the
    seconds that update itself took (the rest is the job's wait for the fast lane)."""
    deadline = time.monotonic() + timeout
    with db.reader() as session:
        created = session.scalar(select(Label.created_at).where(Label.id == label_id))
    while time.monotonic() < deadline:
        with db.reader() as session:
            jobs = session.execute(
                select(Job.finished_at, Job.result).where(
                    Job.project_id == project_id,
                    Job.kind == ONLINE_JOB,
                    Job.status == JobStatus.SUCCEEDED,
                )
            ).all()
        for finished_at, result in jobs:
            if (result or {}).get("applied") and finished_at >= created:
                # the update that finished first after the label, and learned something
                done, took = min(
                    (f, float(r["seconds"]))
                    for f, r in jobs
                    if (r or {}).get("applied") and f >= created
                )
                return (done - created).total_seconds(), took
        # the timestamps measure; this poll only notices, so it need not be tight (a 5 ms poll
        # took a share of the 2 cores from the very update it waits for)
        time.sleep(0.05)
    raise TimeoutError(f"no online update learned label {label_id} within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=30)
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between two labels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="start a throwaway PostgreSQL the way the tests do (tests/pg_server.py)",
    )
    args = parser.parse_args()
    pg = None
    if args.postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.pg_server import create_database, start_postgres

        pg = start_postgres()
        args.database_url = create_database(pg, "online")
    try:
        return run(args)
    finally:
        if pg is not None:
            pg.stop()


def run(args: argparse.Namespace) -> int:

    with tempfile.TemporaryDirectory(prefix="labella-online-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            database_url=args.database_url,
            run_worker=False,
            _env_file=None,  # type: ignore[call-arg]
        )
        settings.ensure_dirs()
        db = Database.from_settings(settings)
        upgrade_database(db.engine)
        print(f"building {args.items} items ...", flush=True)
        project_id, classes = build(db, settings, args.items, args.seed)
        truth = item_classes(db, project_id, classes)
        rng = np.random.default_rng(args.seed)
        for item_id in rng.choice(sorted(truth), size=200, replace=False).tolist():
            labeling.submit_label(
                db, project_id, item_id, classes=[truth[item_id]], annotator="seed"
            )
        started = time.perf_counter()
        trained = training.train_project(db, settings, project_id)
        full_seconds = time.perf_counter() - started
        # the seed labels queued a training that v1 has just done: left queued, the main lane
        # would retrain during the first half of the measured labels (a second full training
        # on the same 2 cores, and a new version mid-run)
        with db.transaction() as session:
            for job_id in session.scalars(
                select(Job.id).where(
                    Job.project_id == project_id,
                    Job.kind == training.TRAIN_JOB,
                    Job.status == JobStatus.QUEUED,
                )
            ).all():
                queue.cancel(session, job_id)
        print(
            f"full training (baseline): {full_seconds:.2f} s for v{trained.version} "
            f"({trained.n_predicted} predicted, {trained.n_ranked} ranked)",
            flush=True,
        )

        probe = NextItemProbe(db, settings, project_id)
        idle_ms = [probe.call() for _ in range(50)]
        worker = Worker(db, settings)
        worker.start()
        probe.start()
        delays: list[float] = []
        job_seconds: list[float] = []
        try:
            # the first update loads the vectors into memory: warm it up untimed
            attempt = 0
            while attempt <= args.labels:
                (item,) = labeling.next_batch(db, settings, project_id, n=1, annotator="annotator")
                if item.reason == labeling.EVAL_REASON:
                    # the evaluation sample's labels never train: label it, nothing to time
                    labeling.submit_label(
                        db, project_id, item.item_id, classes=[truth[item.item_id]], annotator="a"
                    )
                    continue
                result = labeling.submit_label(
                    db,
                    project_id,
                    item.item_id,
                    classes=[truth[item.item_id]],
                    annotator="annotator",
                )
                worker.wake()
                delay, took = online_job_finished_after(db, project_id, result.label.id, timeout=60)
                if attempt > 0:
                    delays.append(delay)
                    job_seconds.append(took)
                    print(
                        f"label {attempt}: re-ranked after {delay * 1000:.0f} ms "
                        f"(the update itself {took * 1000:.0f} ms)",
                        flush=True,
                    )
                attempt += 1
                time.sleep(args.gap)
        finally:
            probe.stop.set()
            probe.join()
            worker.stop()
        busy_ms = probe.latencies_ms
        db.dispose()

    p50, p95 = percentile(delays, 50), percentile(delays, 95)
    print()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {sys.platform}")
    print(f"backend: {'PostgreSQL' if args.database_url else 'SQLite'}; items: {args.items}")
    print("| measure | p50 | p95 | max | target |")
    print("|---|---|---|---|---|")
    print(
        f"| label → re-ranked queue (s) | {p50:.3f} | {p95:.3f} | {max(delays):.3f} "
        f"| < {TARGET_SECONDS:g} |"
    )
    print(
        f"| the online update job itself (s) | {percentile(job_seconds, 50):.3f} | "
        f"{percentile(job_seconds, 95):.3f} | {max(job_seconds):.3f} | |"
    )
    print(
        f"| full retrain, the baseline (s) | {full_seconds:.2f} | | | "
        f"online p95 = {p95 / full_seconds:.3f} × baseline |"
    )
    print(
        f"| next item, idle (ms) | {percentile(idle_ms, 50):.1f} | {percentile(idle_ms, 95):.1f} "
        f"| {max(idle_ms):.1f} | |"
    )
    print(
        f"| next item during online updates (ms) | {percentile(busy_ms, 50):.1f} | "
        f"{percentile(busy_ms, 95):.1f} | {max(busy_ms):.1f} | < {TARGET_NEXT_MS:g} "
        f"(p95 = {percentile(busy_ms, 95) / percentile(idle_ms, 95):.2f} × idle) |"
    )
    print(f"next-item calls during the run: {len(busy_ms)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
