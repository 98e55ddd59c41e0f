"""Evaluation routes: the random evaluation sample and the stopping signal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from labella.api.deps import DbDep, SettingsDep
from labella.api.schemas import EvalSampleOut, StoppingOut
from labella.services import evaluation as service

router = APIRouter(prefix="/api/projects/{project_id}", tags=["evaluation"])


@router.get("/evaluation-sample", response_model=EvalSampleOut)
def eval_sample(project_id: int, db: DbDep) -> EvalSampleOut:
    """How large the random evaluation sample is and how much of it is labeled."""
    return EvalSampleOut.model_validate(service.eval_sample_status(db, project_id))


@router.post("/evaluation-sample", response_model=EvalSampleOut)
def draw_eval_sample(
    project_id: int,
    db: DbDep,
    settings: SettingsDep,
    size: Annotated[
        int | None, Query(ge=0, le=100_000, description="Sample size; the setting when unset")
    ] = None,
) -> EvalSampleOut:
    """Top the evaluation sample up to ``size`` random unlabeled items now (training does it
    too); re-posting is safe."""
    drawn = service.draw_eval_sample(
        db, settings, project_id, size=settings.eval_sample_size if size is None else size
    )
    status = service.eval_sample_status(db, project_id)
    return EvalSampleOut(
        project_id=status.project_id,
        size=status.size,
        labeled=status.labeled,
        unlabeled=status.unlabeled,
        drawn=drawn,
    )


@router.get("/stopping", response_model=StoppingOut)
def stopping(project_id: int, db: DbDep) -> StoppingOut:
    """Whether more labels are still worth it: the learning curve's slope and the newest
    model's prediction stability."""
    return StoppingOut.model_validate(service.stopping_signal(db, project_id))
