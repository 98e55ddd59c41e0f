"""Model routes: train on demand, list model versions (the learning curve), re-rank the queue.

Training and ranking never run inside a request: the routes queue a job and answer 202."""

from __future__ import annotations

from fastapi import APIRouter, status

from labella.api.deps import DbDep, WorkerDep
from labella.api.policy import ManageProject, Train, ViewProject
from labella.api.schemas import JobOut, ModelVersionOut
from labella.services import ranking, training

router = APIRouter(prefix="/api/projects", tags=["models"])


@router.post(
    "/{project_id}/train",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={409: {"description": "Not enough labels yet; the message says what is missing"}},
)
def train(project_id: int, db: DbDep, worker: WorkerDep, member: Train) -> JobOut:
    job = training.request_training(db, project_id, actor=member.username)
    if worker is not None:
        worker.wake()
    return JobOut.model_validate(job)


@router.get("/{project_id}/models", response_model=list[ModelVersionOut])
def list_models(project_id: int, db: DbDep, member: ViewProject) -> list[ModelVersionOut]:
    return [ModelVersionOut.model_validate(m) for m in training.list_model_versions(db, project_id)]


@router.post("/{project_id}/rank", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def rank(project_id: int, db: DbDep, worker: WorkerDep, member: ManageProject) -> JobOut:
    job = ranking.request_ranking(db, project_id, actor=member.username)
    if worker is not None:
        worker.wake()
    return JobOut.model_validate(job)
