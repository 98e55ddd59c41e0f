"""Job routes: poll and cancel background jobs."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from labella.api.deps import DbDep
from labella.api.schemas import JobOut
from labella.jobs import queue
from labella.storage import repositories as repo
from labella.storage.models import Job

router = APIRouter(tags=["jobs"])


@router.get("/api/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: int, db: DbDep) -> JobOut:
    with db.reader() as session:
        return JobOut.model_validate(queue.get_job(session, job_id))


@router.post("/api/jobs/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: int, db: DbDep) -> JobOut:
    with db.transaction() as session:
        return JobOut.model_validate(queue.cancel(session, job_id))


@router.get("/api/projects/{project_id}/jobs", response_model=list[JobOut])
def list_jobs(project_id: int, db: DbDep, limit: int = 50) -> list[JobOut]:
    with db.reader() as session:
        repo.get_project(session, project_id)
        jobs = session.scalars(
            select(Job).where(Job.project_id == project_id).order_by(Job.id.desc()).limit(limit)
        )
        return [JobOut.model_validate(j) for j in jobs]
