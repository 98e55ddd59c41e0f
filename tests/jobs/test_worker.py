"""The worker and the durable queue: progress, cancellation, failures, orphan recovery."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from labella.config import Settings
from labella.errors import Busy, InvalidInput
from labella.jobs import queue
from labella.jobs.runtime import JobContext, executor, registered_kinds
from labella.jobs.worker import Worker
from labella.services import encoding
from labella.services.importing import content_hash
from labella.storage.db import Database
from labella.storage.models import Item, Job, JobStatus, utcnow


@executor("test-steps")
def _steps(context: JobContext) -> dict[str, Any]:
    """Five reported steps; cancels its own job after the second when asked to."""
    for step in range(1, 6):
        context.progress(step, 5, f"step {step}", force=True)
        if step == 2 and context.params.get("cancel_at_2"):
            with context.db.transaction() as session:
                queue.cancel(session, context.job_id)
    return {"message": "all five steps"}


@executor("test-refuses")
def _refuses(context: JobContext) -> None:
    raise InvalidInput("this job cannot run: the input is wrong")


@executor("test-busy")
def _busy(context: JobContext) -> dict[str, Any]:
    """Finds the store busy (another writer held SQLite's lock too long) on its first
    ``busy_attempts`` attempts, then runs."""
    with context.db.reader() as session:
        job = session.get(Job, context.job_id)
        assert job is not None
        attempts = job.attempts
    if attempts <= context.params["busy_attempts"]:
        raise Busy("the database is busy with another write", retry_after=5)
    return {"message": f"ran on attempt {attempts}"}


@executor("test-crashes")
def _crashes(context: JobContext) -> None:
    raise ZeroDivisionError("division by zero")


def add_job(db: Database, **values: Any) -> int:
    with db.transaction() as session:
        job = Job(**{"kind": "encode", "status": JobStatus.QUEUED, **values})
        session.add(job)
        session.flush()
        return job.id


def job_state(db: Database, job_id: int) -> dict[str, Any]:
    with db.reader() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return {
            c: getattr(job, c)
            for c in (
                "status",
                "message",
                "error",
                "result",
                "attempts",
                "worker",
                "progress_done",
                "progress_total",
                "finished_at",
            )
        }


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_app_job_kinds_are_registered(worker: Worker) -> None:
    assert {"encode", "train", "rank"} <= set(registered_kinds())


def test_progress_is_recorded_and_the_result_kept(db: Database, worker: Worker) -> None:
    job_id = add_job(db, kind="test-steps")
    assert worker.run_until_idle() == 1
    state = job_state(db, job_id)
    assert state["status"] == JobStatus.SUCCEEDED
    assert (state["progress_done"], state["progress_total"]) == (5, 5)
    assert state["message"] == "all five steps"
    assert state["result"] == {"message": "all five steps"}
    assert state["attempts"] == 1 and state["finished_at"] is not None


def test_a_running_job_stops_at_its_next_progress_report_when_cancelled(
    db: Database, worker: Worker
) -> None:
    job_id = add_job(db, kind="test-steps", params={"cancel_at_2": True})
    worker.run_until_idle()
    state = job_state(db, job_id)
    assert state["status"] == JobStatus.CANCELLED
    assert state["progress_done"] == 2  # step 3 was never recorded
    assert state["result"] is None


def test_failures_keep_a_readable_reason(db: Database, worker: Worker) -> None:
    refused = add_job(db, kind="test-refuses")
    crashed = add_job(db, kind="test-crashes")
    unknown = add_job(db, kind="no-such-kind")
    worker.run_until_idle()
    assert job_state(db, refused)["error"] == "this job cannot run: the input is wrong"
    assert job_state(db, crashed)["error"] == "ZeroDivisionError: division by zero"
    assert job_state(db, unknown)["error"] == "no executor for job kind 'no-such-kind'"
    assert {job_state(db, j)["status"] for j in (refused, crashed, unknown)} == {JobStatus.FAILED}


def test_a_job_that_finds_the_store_busy_is_retried_then_failed(
    db: Database, worker: Worker, settings: Settings
) -> None:
    attempts = settings.job_max_attempts
    recovers = add_job(db, kind="test-busy", params={"busy_attempts": 1})
    never = add_job(db, kind="test-busy", params={"busy_attempts": attempts})
    worker.run_until_idle()
    state = job_state(db, recovers)
    assert (state["status"], state["attempts"]) == (JobStatus.SUCCEEDED, 2)
    assert state["message"] == "ran on attempt 2"
    state = job_state(db, never)
    assert (state["status"], state["attempts"]) == (JobStatus.FAILED, attempts)
    assert state["error"] == (
        f"the database stayed busy with another write during attempt {attempts}; not retried "
        f"again after {attempts} attempts"
    )


def test_enqueue_dedupes_queued_jobs_but_not_running_ones(db: Database) -> None:
    with db.transaction() as session:
        first = queue.enqueue(session, kind="rank", project_id=None)
        assert queue.enqueue(session, kind="rank", project_id=None).id == first.id
        first.status = JobStatus.RUNNING
        session.flush()
        assert queue.enqueue(session, kind="rank", project_id=None).id != first.id


def test_recover_orphans_fails_a_job_after_max_attempts_with_the_reason(
    db: Database, settings: Settings
) -> None:
    stale = utcnow() - timedelta(seconds=settings.job_stale_seconds + 30)
    job_id = add_job(
        db,
        status=JobStatus.RUNNING,
        attempts=settings.job_max_attempts,
        worker="another-host:4242",
        heartbeat_at=stale,
    )
    with db.transaction() as session:
        recovered = queue.recover_orphans(
            session,
            stale_seconds=settings.job_stale_seconds,
            max_attempts=settings.job_max_attempts,
        )
        assert [job.id for job in recovered] == [job_id]
    state = job_state(db, job_id)
    assert state["status"] == JobStatus.FAILED
    attempts = settings.job_max_attempts
    assert state["error"] == (
        f"the server stopped during attempt {attempts}; not retried again after {attempts} attempts"
    )
    assert state["message"] == state["error"]
    assert state["worker"] is None and state["finished_at"] is not None


def test_a_job_of_a_dead_process_is_requeued_at_once(db: Database, settings: Settings) -> None:
    # heartbeat fresh, but its process is gone: no need to wait job_stale_seconds
    job_id = add_job(
        db,
        status=JobStatus.RUNNING,
        attempts=1,
        worker=f"{socket.gethostname()}:{dead_pid()}",
        heartbeat_at=utcnow(),
    )
    assert Worker(db, settings).recover() == [job_id]
    state = job_state(db, job_id)
    assert state["status"] == JobStatus.QUEUED
    assert state["message"] == "re-queued: the server stopped during attempt 1"
    assert state["worker"] is None


def test_live_jobs_are_left_alone(db: Database, settings: Settings) -> None:
    fresh = utcnow()
    this_process = add_job(
        db, status=JobStatus.RUNNING, attempts=1, worker=queue.this_worker_id(), heartbeat_at=fresh
    )
    parent_process = add_job(
        db,
        status=JobStatus.RUNNING,
        attempts=1,
        worker=f"{socket.gethostname()}:{os.getppid()}",
        heartbeat_at=fresh,
    )
    other_host = add_job(
        db, status=JobStatus.RUNNING, attempts=1, worker="another-host:1", heartbeat_at=fresh
    )
    silent_other_host = add_job(
        db,
        status=JobStatus.RUNNING,
        attempts=1,
        worker="another-host:2",
        heartbeat_at=fresh - timedelta(seconds=settings.job_stale_seconds + 1),
    )
    assert Worker(db, settings).recover() == [silent_other_host]
    for job_id in (this_process, parent_process, other_host):
        assert job_state(db, job_id)["status"] == JobStatus.RUNNING


def test_a_requeued_encode_job_resumes_and_says_so(
    db: Database, settings: Settings, worker: Worker, make_project: Callable[..., Any]
) -> None:
    project = make_project(("sports", "cooking"))
    texts = ["The striker scored twice.", "Whisk the eggs with sugar.", "The keeper saved it."]
    with db.transaction() as session:
        session.add_all(
            Item(project_id=project.id, text=t, content_hash=content_hash(t), random_key=0.5)
            for t in texts
        )
    # the first attempt got as far as one chunk before its process died
    settings.encode_chunk = 1

    def die_after_first_chunk(
        done: int, total: int, message: str | None = None, *, force: bool = False
    ) -> None:
        if message and message.startswith("embedded"):
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        encoding.encode_project(db, settings, project.id, progress=die_after_first_chunk)
    job_id = add_job(
        db,
        project_id=project.id,
        status=JobStatus.RUNNING,
        attempts=1,
        worker=f"{socket.gethostname()}:{dead_pid()}",
        heartbeat_at=utcnow(),
        progress_done=1,
        progress_total=3,
    )
    assert worker.recover() == [job_id]
    worker.run_until_idle()
    state = job_state(db, job_id)
    assert state["status"] == JobStatus.SUCCEEDED, state["error"]
    assert state["attempts"] == 2
    assert state["message"].startswith("resumed after a restart (attempt 2): embedded 3 of 3")
    # only the two items left were walked
    assert state["result"]["encoded"] + state["result"]["reused"] == 2
    assert (state["progress_done"], state["progress_total"]) == (3, 3)
