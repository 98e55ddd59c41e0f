"""Model routes: train on demand, list model versions (the learning curve), re-rank the queue.

Training and ranking never run inside a request: the routes queue a job and answer 202."""

from __future__ import annotations

from fastapi import APIRouter, status

from labella.api.deps import DbDep, PathId, SettingsDep, WorkerDep
from labella.api.policy import ManageProject, Train, ViewProject
from labella.api.schemas import FinetuneRequest, JobOut, ModelVersionOut
from labella.services import finetuning, ranking, training

router = APIRouter(prefix="/api/projects", tags=["models"])


@router.post(
    "/{project_id}/train",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={409: {"description": "Not enough labels yet; the message says what is missing"}},
)
def train(project_id: PathId, db: DbDep, worker: WorkerDep, member: Train) -> JobOut:
    job = training.request_training(db, project_id, actor=member.username)
    if worker is not None:
        worker.wake()
    return JobOut.model_validate(job)


@router.post(
    "/{project_id}/finetune",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={
        409: {"description": "Not enough labels yet; the message gives the counts per class"},
        422: {
            "description": "Not a single-label text or image classification project, or a bad "
            "setting"
        },
    },
)
def finetune(
    project_id: PathId,
    db: DbDep,
    settings: SettingsDep,
    worker: WorkerDep,
    member: Train,
    body: FinetuneRequest | None = None,
) -> JobOut:
    """Fine-tune the project's encoder on its labels in a background job (text: end to end as a
    classifier, or SetFit; images: EfficientNet-Lite0 end to end), switch the project to it and
    retrain; minutes on a CPU for text, tens of minutes for a few hundred images."""
    job = finetuning.request_finetune(
        db,
        settings,
        project_id,
        params=body.model_dump(exclude_none=True) if body is not None else None,
        actor=member.username,
    )
    if worker is not None:
        worker.wake()
    return JobOut.model_validate(job)


@router.get("/{project_id}/models", response_model=list[ModelVersionOut])
def list_models(project_id: PathId, db: DbDep, member: ViewProject) -> list[ModelVersionOut]:
    return [ModelVersionOut.model_validate(m) for m in training.list_model_versions(db, project_id)]


@router.post("/{project_id}/rank", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def rank(project_id: PathId, db: DbDep, worker: WorkerDep, member: ManageProject) -> JobOut:
    job = ranking.request_ranking(db, project_id, actor=member.username)
    if worker is not None:
        worker.wake()
    return JobOut.model_validate(job)
