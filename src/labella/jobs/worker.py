"""The worker: threads (inside the server process by default) that claim queued jobs and run
them one at a time each, with a heartbeat so that a job orphaned by a killed server is noticed.

Three lanes by default: the main lane runs everything but the quick jobs and the encoder
fine-tunings; the fast lane runs only the quick ones (online model updates, :data:`FAST_KINDS`),
so that a label's online update is never stuck behind a minutes-long training or encoding job;
and the fine-tuning lane runs only encoder fine-tunings (:data:`FINETUNE_KINDS`), which take
minutes to an hour on a CPU, so that every project's imports, encodings and trainings go on
meanwhile (the fine-tunings themselves wait for one another).
"""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass
from typing import Any

from labella.config import Settings
from labella.errors import Busy, LabellaError
from labella.jobs import queue
from labella.jobs.runtime import JobCancelled, JobContext, get_executor
from labella.storage.db import Database
from labella.storage.models import Job, JobStatus

log = logging.getLogger(__name__)

FAST_KINDS = ("online_update",)
"""Job kinds of the fast lane (services.online): each takes well under a second."""
FINETUNE_KINDS = ("finetune_encoder",)
"""Job kinds of the fine-tuning lane (services.finetuning.FINETUNE_JOB; not imported, so that
the worker does not load the services)."""


@dataclass(frozen=True)
class Lane:
    """One worker thread and the job kinds it claims (None: any kind not excluded)."""

    name: str
    kinds: tuple[str, ...] | None = None
    exclude_kinds: tuple[str, ...] = ()


MAIN_LANE = Lane("labella-worker", exclude_kinds=FAST_KINDS + FINETUNE_KINDS)
FAST_LANE = Lane("labella-fast-lane", kinds=FAST_KINDS)
FINETUNE_LANE = Lane("labella-finetune-lane", kinds=FINETUNE_KINDS)
DEFAULT_LANES = (MAIN_LANE, FAST_LANE, FINETUNE_LANE)


class Worker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        worker_id: str | None = None,
        lanes: tuple[Lane, ...] = DEFAULT_LANES,
    ) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = worker_id or queue.this_worker_id()
        self.lanes = lanes
        self._stop = threading.Event()
        # one wake event per lane: a shared one could be cleared by one lane before another saw it
        self._wakes = [threading.Event() for _ in lanes]
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        self.recover()
        for lane, wake in zip(self.lanes, self._wakes, strict=True):
            thread = threading.Thread(
                target=self._loop, args=(lane, wake), name=lane.name, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for wake in self._wakes:
            wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        for wake in self._wakes:
            wake.set()

    def recover(self) -> list[int]:
        with self.db.transaction() as session:
            jobs = queue.recover_orphans(
                session,
                stale_seconds=self.settings.job_stale_seconds,
                max_attempts=self.settings.job_max_attempts,
            )
            return [job.id for job in jobs]

    # -- running ---------------------------------------------------------------------------
    def _loop(self, lane: Lane, wake: threading.Event) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once(lane)
            except Exception:  # the loop must survive a broken database connection
                log.exception("worker loop error")
                ran = False
            if not ran:
                wake.wait(self.settings.worker_poll_seconds)
                wake.clear()

    def run_once(self, lane: Lane | None = None) -> bool:
        """Claim and run one job (of the lane's kinds; any kind without one); False when there
        was none."""
        with self.db.transaction() as session:
            job = queue.claim_next(
                session,
                self.worker_id,
                lane.kinds if lane is not None else None,
                exclude_kinds=lane.exclude_kinds if lane is not None else (),
            )
            if job is None:
                return False
            context = JobContext(
                job_id=job.id,
                project_id=job.project_id,
                params=dict(job.params or {}),
                db=self.db,
                settings=self.settings,
            )
            kind = job.kind
        self._run(kind, context)
        return True

    def run_until_idle(self, max_jobs: int = 1000) -> int:
        """Run queued jobs in this thread until none is left (CLI and tests)."""
        count = 0
        while count < max_jobs and self.run_once():
            count += 1
        return count

    def _run(self, kind: str, context: JobContext) -> None:
        executor = get_executor(kind)
        if executor is None:
            self._fail(context.job_id, f"no executor for job kind {kind!r}")
            return
        beat = _Heartbeat(self.db, context.job_id, self.settings.job_heartbeat_seconds)
        beat.start()
        try:
            result = executor(context)
        except JobCancelled:
            log.info("job %s cancelled", context.job_id)
            return
        except Busy as exc:
            log.warning("job %s: %s", context.job_id, exc.message)
            self._retry_or_fail(context.job_id, "the database stayed busy with another write")
            return
        except LabellaError as exc:
            self._fail(context.job_id, exc.message)
            return
        except Exception as exc:
            log.error("job %s failed:\n%s", context.job_id, traceback.format_exc())
            self._fail(context.job_id, f"{type(exc).__name__}: {exc}")
            return
        finally:
            beat.stop()
        with self.db.transaction() as session:
            current = session.get(Job, context.job_id)
            if current is not None and current.status == JobStatus.RUNNING:
                message = (result or {}).get("message", "done")
                queue.finish(session, context.job_id, result=result, message=str(message))

    def _retry_or_fail(self, job_id: int, reason: str) -> None:
        with self.db.transaction() as session:
            job = session.get(Job, job_id)
            if job is not None and job.status == JobStatus.RUNNING:
                queue.retry_or_fail(
                    job,
                    reason=f"{reason} during attempt {job.attempts}",
                    max_attempts=self.settings.job_max_attempts,
                )

    def _fail(self, job_id: int, error: str) -> None:
        with self.db.transaction() as session:
            queue.fail(session, job_id, error=error)


class _Heartbeat:
    def __init__(self, db: Database, job_id: int, interval: float) -> None:
        self.db = db
        self.job_id = job_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.db.transaction() as session:
                    queue.heartbeat(session, self.job_id)
            except Exception:  # a missed beat only delays orphan detection
                log.debug("heartbeat failed", exc_info=True)


def job_summary(job: Job) -> dict[str, Any]:
    return {"id": job.id, "kind": job.kind, "status": job.status}
