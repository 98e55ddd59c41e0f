"""The durable job queue: jobs are rows in the ``job`` table, so they survive a restart.

These functions take a session and never commit; the caller's unit of work does.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labella.errors import NotFound
from labella.storage.models import Job, JobStatus, utcnow

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def enqueue(
    session: Session,
    *,
    kind: str,
    project_id: int | None = None,
    params: dict[str, Any] | None = None,
    dedupe: bool = True,
) -> Job:
    """Add a job. With ``dedupe``, a queued job of the same kind for the same project is returned
    instead of a second one (asking twice to train does not train twice)."""
    if dedupe:
        existing = session.scalar(
            select(Job)
            .where(Job.kind == kind, Job.project_id == project_id, Job.status == JobStatus.QUEUED)
            .order_by(Job.id)
            .limit(1)
        )
        if existing is not None:
            return existing
    job = Job(kind=kind, project_id=project_id, params=dict(params or {}), status=JobStatus.QUEUED)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def claim_next(
    session: Session,
    worker_id: str,
    kinds: Sequence[str] | None = None,
    *,
    exclude_kinds: Sequence[str] = (),
) -> Job | None:
    """Mark the oldest queued job running for this worker and return it (None if idle); only
    jobs of ``kinds`` when given, never of ``exclude_kinds``.

    On PostgreSQL concurrent workers skip each other's rows (FOR UPDATE SKIP LOCKED); on SQLite the
    write transaction (BEGIN IMMEDIATE) already serialises claimers.
    """
    query = select(Job).where(Job.status == JobStatus.QUEUED).order_by(Job.id).limit(1)
    if kinds:
        query = query.where(Job.kind.in_(list(kinds)))
    if exclude_kinds:
        query = query.where(Job.kind.not_in(list(exclude_kinds)))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    job = session.scalar(query)
    if job is None:
        return None
    now = utcnow()
    job.status = JobStatus.RUNNING
    job.worker = worker_id
    job.attempts += 1
    job.started_at = now
    job.heartbeat_at = now
    job.error = None
    session.flush()
    return job


def heartbeat(session: Session, job_id: int) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))


def set_progress(session: Session, job_id: int, done: int, total: int, message: str | None) -> None:
    values: dict[str, Any] = {
        "progress_done": done,
        "progress_total": total,
        "heartbeat_at": utcnow(),
    }
    if message is not None:
        values["message"] = message
    session.execute(update(Job).where(Job.id == job_id).values(**values))


def finish(session: Session, job_id: int, *, result: dict[str, Any] | None, message: str) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(status=JobStatus.SUCCEEDED, result=result, message=message, finished_at=utcnow())
    )


def fail(session: Session, job_id: int, *, error: str) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(status=JobStatus.FAILED, error=error, message=error, finished_at=utcnow())
    )


def cancel(session: Session, job_id: int) -> Job:
    """Cancel a queued job at once; a running one stops at its next progress report."""
    job = get_job(session, job_id)
    if job.status in ACTIVE:
        job.status = JobStatus.CANCELLED
        job.finished_at = utcnow()
        job.message = "cancelled"
    return job


def this_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _worker_is_dead(worker_id: str | None) -> bool:
    """A worker on this host whose process no longer exists cannot finish its job."""
    if not worker_id or ":" not in worker_id:
        return True
    host, _, pid_text = worker_id.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover_orphans(session: Session, *, stale_seconds: float, max_attempts: int) -> list[Job]:
    """Jobs left ``running`` by a worker that died (its process is gone, or it stopped sending
    heartbeats) are queued again, or failed with the reason once they have used their attempts."""
    cutoff = utcnow() - timedelta(seconds=stale_seconds)
    recovered = []
    for job in session.scalars(select(Job).where(Job.status == JobStatus.RUNNING)):
        heartbeat_at = job.heartbeat_at
        if heartbeat_at is not None and heartbeat_at.tzinfo is None:
            heartbeat_at = heartbeat_at.replace(tzinfo=cutoff.tzinfo)
        stale = heartbeat_at is None or heartbeat_at < cutoff
        if not (stale or _worker_is_dead(job.worker)):
            continue
        retry_or_fail(
            job,
            reason=f"the server stopped during attempt {job.attempts}",
            max_attempts=max_attempts,
        )
        recovered.append(job)
    session.flush()
    return recovered


def retry_or_fail(job: Job, *, reason: str, max_attempts: int) -> None:
    """Queue a job that was stopped by ``reason`` again (jobs are safe to re-run), or fail it
    with the reason once it has used its ``max_attempts``."""
    if job.attempts >= max_attempts:
        job.status = JobStatus.FAILED
        job.error = f"{reason}; not retried again after {job.attempts} attempts"
        job.message = job.error
        job.finished_at = utcnow()
    else:
        job.status = JobStatus.QUEUED
        job.message = f"re-queued: {reason}"
    job.worker = None
