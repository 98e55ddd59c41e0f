"""Serving speed: ``labeling.next_batch(n=10)`` on a project of 100,000 items, against naive
implementations in the same run on the same database.

A fresh database (SQLite by default) gets one project whose items are written directly with Core
(this measures serving, not import): every item embedded and predicted, a planted ranking on
``--ranked`` of them (the queue a training writes), random keys on all. Then three phases of
``--calls`` timed calls each, every call by one of ten annotators in turn:

* ``ranked``: after each call the served items are labeled (untimed), so the queue drains through
  the ranked items, as annotators working through a ranking do;
* ``unranked``: the ranking is used up and the queue is walked in ``random_key`` order;
* ``contended``: every call is a new annotator who leases 10 items and labels none, so the
  leases of all earlier callers pile up ahead in the queue (up to calls x 10 live leases).

Baselines, timed on the same state before each sampled call and rolled back:

* ``single ORDER BY``: one query ``ORDER BY priority DESC NULLS LAST, random_key LIMIT 10`` over
  the same indexed table (the obvious SQL), then the same lease UPDATE;
* ``load in Python``: load every unlabeled item's (id, priority, random_key, lease) and sort and
  filter in Python, then the same lease UPDATE.

    python benchmarks/next_batch.py --items 100000 --calls 200
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select, text, update

from labella.config import Settings
from labella.services import labeling
from labella.services import projects as project_service
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database
from labella.storage.models import Item, ModelVersion, Prediction, utcnow

TARGET_MS = 50.0
CLASSES = ("business", "entertainment", "politics", "sport", "tech")
ANNOTATORS = [f"annotator {k}" for k in range(10)]


def build(db: Database, *, n_items: int, n_ranked: int, seed: int) -> int:
    """A project with ``n_items`` embedded, predicted items, ``n_ranked`` of them ranked."""
    project = project_service.create_project(
        db,
        project_service.ProjectSpec(
            name="bench", classes=[project_service.ClassSpec(name=c) for c in CLASSES]
        ),
    )
    class_ids = [c.id for c in project.classes]
    rng = np.random.default_rng(seed)
    random_keys = rng.random(n_items)
    ranked = set(rng.choice(n_items, size=n_ranked, replace=False).tolist())
    priority_of = {i: float(n_ranked - rank) for rank, i in enumerate(sorted(ranked))}
    probs = rng.dirichlet(np.ones(len(class_ids)), size=n_items)
    with db.transaction() as session:
        model = ModelVersion(
            project_id=project.id,
            version=1,
            head="linear",
            encoder="planted",
            n_labels=100,
            metrics={"class_ids": class_ids},
            artifact_path="planted",
        )
        session.add(model)
        session.flush()
        model_id = model.id
    chunk = 10_000
    for start in range(0, n_items, chunk):
        rows = [
            {
                "project_id": project.id,
                "text": f"news article {i}: " + "lorem ipsum dolor sit amet " * 10,
                "external_id": f"article-{i}",
                "content_hash": f"{i:064x}",
                "status": "unlabeled",
                "priority": priority_of.get(i),
                "priority_reason": f"margin {0.001 * (i % 500):.3f}" if i in ranked else None,
                "random_key": float(random_keys[i]),
                "embedded": True,
            }
            for i in range(start, min(start + chunk, n_items))
        ]
        with db.transaction() as session:
            ids = session.scalars(
                insert(Item).returning(Item.id, sort_by_parameter_order=True), rows
            ).all()
            session.execute(
                insert(Prediction),
                [
                    {
                        "item_id": item_id,
                        "project_id": project.id,
                        "model_version_id": model_id,
                        "probs": [round(float(p), 6) for p in probs[start + k]],
                        "predicted": [class_ids[int(np.argmax(probs[start + k]))]],
                        "confidence": float(probs[start + k].max()),
                    }
                    for k, item_id in enumerate(ids)
                ],
            )
    if db.is_sqlite:
        with db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")  # as a long-lived database would have
    else:
        with db.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE"
            )
    return project.id


# -- baselines: the same answer (ranked by priority, then random_key, leases respected) ------------
def single_order_by(db: Database, project_id: int, annotator: str, lease_seconds: int) -> list[int]:
    now = utcnow()
    with db.engine.connect() as connection:
        transaction = connection.begin()
        ids = [
            row[0]
            for row in connection.execute(
                text(
                    "SELECT id FROM item WHERE project_id = :p AND status = 'unlabeled' "
                    "AND (lease_until IS NULL OR lease_until <= :now OR leased_by = :me) "
                    "ORDER BY priority DESC NULLS LAST, random_key LIMIT 10"
                ),
                {"p": project_id, "now": _bind_time(db, now), "me": annotator},
            )
        ]
        _lease(connection, ids, annotator, now + timedelta(seconds=lease_seconds))
        transaction.rollback()
    return ids


def load_in_python(db: Database, project_id: int, annotator: str, lease_seconds: int) -> list[int]:
    now = utcnow()
    with db.engine.connect() as connection:
        transaction = connection.begin()
        rows = connection.execute(
            select(Item.id, Item.priority, Item.random_key, Item.lease_until, Item.leased_by).where(
                Item.project_id == project_id, Item.status == "unlabeled"
            )
        ).all()
        naive_now = now.replace(tzinfo=None)

        def free(row: Any) -> bool:
            if row.lease_until is None or row.leased_by == annotator:
                return True
            until = row.lease_until.replace(tzinfo=None)
            return bool(until <= naive_now)

        candidates = sorted(
            (row for row in rows if free(row)),
            key=lambda row: (row.priority is None, -(row.priority or 0.0), row.random_key),
        )
        ids = [row.id for row in candidates[:10]]
        _lease(connection, ids, annotator, now + timedelta(seconds=lease_seconds))
        transaction.rollback()
    return ids


def _lease(connection: Any, ids: list[int], annotator: str, until: Any) -> None:
    if ids:
        connection.execute(
            update(Item).where(Item.id.in_(ids)).values(lease_until=until, leased_by=annotator)
        )


def _bind_time(db: Database, moment: Any) -> Any:
    # the raw-SQL baseline binds the timestamp the way the ORM column would store it
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if db.is_sqlite else moment


# -- phases ----------------------------------------------------------------------------------------
def label_served(db: Database, ids: list[int]) -> None:
    with db.transaction() as session:
        session.execute(
            update(Item)
            .where(Item.id.in_(ids))
            .values(status="labeled", lease_until=None, leased_by=None)
        )


def run_phase(
    name: str,
    db: Database,
    settings: Settings,
    project_id: int,
    *,
    calls: int,
    baseline_every: int,
    annotator_for: Callable[[int], str],
    label_after: bool,
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"labella": [], "single ORDER BY": [], "load in Python": []}
    baselines = {"single ORDER BY": single_order_by, "load in Python": load_in_python}
    for call in range(calls):
        annotator = annotator_for(call)
        expected: list[int] | None = None
        if call % baseline_every == 0:
            for label, baseline in baselines.items():
                started = time.perf_counter()
                ids = baseline(db, project_id, annotator, settings.lease_seconds)
                times[label].append((time.perf_counter() - started) * 1000)
                expected = expected if expected is not None else ids
        started = time.perf_counter()
        batch = labeling.next_batch(db, settings, project_id, n=10, annotator=annotator)
        times["labella"].append((time.perf_counter() - started) * 1000)
        served = [item.item_id for item in batch]
        if len(served) != 10:
            raise SystemExit(f"{name}: call {call} served {len(served)} items, expected 10")
        if expected is not None and sorted(expected) != sorted(served):
            raise SystemExit(f"{name}: call {call}: baseline and labella disagree on the batch")
        if label_after:
            label_served(db, served)
    return times


def summarise(name: str, times: dict[str, list[float]]) -> None:
    ours = statistics.median(times["labella"])
    print(f"\n{name}")
    print(
        f"  {'implementation':<18} {'calls':>5} {'median ms':>10} {'p95 ms':>8} {'vs labella':>11}"
    )
    for label, values in times.items():
        median = statistics.median(values)
        p95 = float(np.percentile(values, 95))
        ratio = "" if label == "labella" else f"{median / ours:>10.2f}x"
        print(f"  {label:<18} {len(values):>5} {median:>10.2f} {p95:>8.2f} {ratio:>11}")
    p95 = float(np.percentile(times["labella"], 95))
    verdict = "meets" if p95 < TARGET_MS else "MISSES"
    print(
        f"  labella p95 {p95:.2f} ms {verdict} the {TARGET_MS:.0f} ms target "
        f"({TARGET_MS / p95:.0f}x headroom)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--ranked", type=int, default=2_000, help="Items with a planted priority")
    parser.add_argument("--calls", type=int, default=200, help="Timed calls per phase")
    parser.add_argument(
        "--baseline-every", type=int, default=4, help="Time baselines every k-th call"
    )
    parser.add_argument("--database-url", default=None, help="Default: SQLite in a temp dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            database_url=args.database_url,
            run_worker=False,
            _env_file=None,  # type: ignore[call-arg]
        )
        settings.ensure_dirs()
        db = Database.from_settings(settings)
        upgrade_database(db.engine)
        started = time.perf_counter()
        project_id = build(db, n_items=args.items, n_ranked=args.ranked, seed=args.seed)
        print(
            f"next_batch(n=10) on {args.items:,} items ({args.ranked:,} ranked), "
            f"{db.engine.dialect.name}; built in {time.perf_counter() - started:.1f} s"
        )
        print(
            f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
            f"{platform.machine()}, {os.cpu_count()} cpus"
        )

        rotate = lambda call: ANNOTATORS[call % len(ANNOTATORS)]  # noqa: E731
        common = {"calls": args.calls, "baseline_every": args.baseline_every}
        ranked = run_phase(
            "ranked", db, settings, project_id, annotator_for=rotate, label_after=True, **common
        )
        summarise("ranked queue (served items labeled after each call)", ranked)
        with db.transaction() as session:  # the ranking is used up
            session.execute(update(Item).where(Item.project_id == project_id).values(priority=None))
        unranked = run_phase(
            "unranked", db, settings, project_id, annotator_for=rotate, label_after=True, **common
        )
        summarise("unranked queue (random_key order)", unranked)
        contended = run_phase(
            "contended",
            db,
            settings,
            project_id,
            annotator_for=lambda call: f"visitor {call}",
            label_after=False,
            **common,
        )
        summarise(f"contended (up to {args.calls * 10:,} live leases of others ahead)", contended)
        db.dispose()


if __name__ == "__main__":
    sys.exit(main())
