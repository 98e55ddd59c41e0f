"""What an executor gets to run a job: its id and parameters, a database handle to open its own
units of work, and a way to report progress (which also tells it when it was cancelled)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labella.config import Settings
from labella.jobs import queue
from labella.storage.db import Database
from labella.storage.models import Job, JobStatus


class JobCancelled(Exception):
    """Raised inside an executor when its job was cancelled; the worker stops it quietly."""


@dataclass
class JobContext:
    job_id: int
    project_id: int | None
    params: dict[str, Any]
    db: Database
    settings: Settings
    min_report_interval: float = 0.5
    _last_report: float = field(default=0.0, repr=False)

    def progress(
        self, done: int, total: int, message: str | None = None, *, force: bool = False
    ) -> None:
        """Record progress (throttled) and stop the job if it was cancelled meanwhile."""
        now = time.monotonic()
        if not force and done < total and now - self._last_report < self.min_report_interval:
            return
        self._last_report = now
        with self.db.transaction() as session:
            job = session.get(Job, self.job_id)
            if job is None or job.status == JobStatus.CANCELLED:
                raise JobCancelled()
            queue.set_progress(session, self.job_id, done, total, message)


Executor = Callable[[JobContext], dict[str, Any] | None]

_EXECUTORS: dict[str, Executor] = {}


def executor(kind: str) -> Callable[[Executor], Executor]:
    """Register the function that runs jobs of ``kind``."""

    def register(func: Executor) -> Executor:
        _EXECUTORS[kind] = func
        return func

    return register


def get_executor(kind: str) -> Executor | None:
    return _EXECUTORS.get(kind)


def registered_kinds() -> list[str]:
    return sorted(_EXECUTORS)
