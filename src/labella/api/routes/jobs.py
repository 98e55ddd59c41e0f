"""Job routes: poll and cancel background jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from labella.api.deps import DbDep, PathId
from labella.api.policy import Action, Member, ViewProject, require_for_job
from labella.api.schemas import JobOut
from labella.jobs import queue
from labella.services import audit
from labella.storage import repositories as repo
from labella.storage.models import Job

router = APIRouter(tags=["jobs"])


@router.get("/api/jobs/{job_id}", response_model=JobOut)
def get_job(
    job_id: PathId,
    db: DbDep,
    member: Annotated[Member, Depends(require_for_job(Action.VIEW_PROJECT))],
) -> JobOut:
    with db.reader() as session:
        return JobOut.model_validate(queue.get_job(session, job_id))


@router.post("/api/jobs/{job_id}/cancel", response_model=JobOut)
def cancel_job(
    job_id: PathId,
    db: DbDep,
    member: Annotated[Member, Depends(require_for_job(Action.MANAGE_PROJECT))],
) -> JobOut:
    with db.transaction() as session:
        job = queue.cancel(session, job_id)
        audit.record(
            session,
            actor=member.username,
            action="job.cancel",
            project_id=job.project_id,
            detail={"job_id": job.id, "kind": job.kind},
        )
        return JobOut.model_validate(job)


@router.get("/api/projects/{project_id}/jobs", response_model=list[JobOut])
def list_jobs(
    project_id: PathId,
    db: DbDep,
    member: ViewProject,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    kind: Annotated[str | None, Query(max_length=40, description="Only jobs of this kind")] = None,
    exclude_kind: Annotated[
        str | None, Query(max_length=40, description="Leave out jobs of this kind")
    ] = None,
) -> list[JobOut]:
    """The project's newest jobs first; ``exclude_kind=online_update`` hides the per-label online
    updates."""
    query = select(Job).where(Job.project_id == project_id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if exclude_kind is not None:
        query = query.where(Job.kind != exclude_kind)
    with db.reader() as session:
        repo.get_project(session, project_id)
        jobs = session.scalars(query.order_by(Job.id.desc()).limit(limit))
        return [JobOut.model_validate(j) for j in jobs]
