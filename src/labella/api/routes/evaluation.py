"""Evaluation routes: the random evaluation sample and the stopping signal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from labella.api.deps import DbDep, PathId, SettingsDep
from labella.api.policy import Autolabel, ManageProject, ViewProject
from labella.api.schemas import AutolabelAuditIn, AutolabelAuditOut, EvalSampleOut, StoppingOut
from labella.services import autolabel_audit
from labella.services import evaluation as service

router = APIRouter(prefix="/api/projects/{project_id}", tags=["evaluation"])


@router.get("/evaluation-sample", response_model=EvalSampleOut)
def eval_sample(project_id: PathId, db: DbDep, member: ViewProject) -> EvalSampleOut:
    """How large the random evaluation sample is and how much of it is labeled."""
    return EvalSampleOut.model_validate(service.eval_sample_status(db, project_id))


@router.post("/evaluation-sample", response_model=EvalSampleOut)
def draw_eval_sample(
    project_id: PathId,
    db: DbDep,
    settings: SettingsDep,
    member: ManageProject,
    size: Annotated[
        int | None, Query(ge=0, le=100_000, description="Sample size; the setting when unset")
    ] = None,
) -> EvalSampleOut:
    """Top the evaluation sample up to ``size`` random unlabeled items now (training does it
    too); re-posting is safe."""
    drawn = service.draw_eval_sample(
        db,
        settings,
        project_id,
        size=settings.eval_sample_size if size is None else size,
        actor=member.username,
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
def stopping(project_id: PathId, db: DbDep, member: ViewProject) -> StoppingOut:
    """Whether more labels are still worth it: the learning curve's slope and the newest
    model's prediction stability."""
    return StoppingOut.model_validate(service.stopping_signal(db, project_id))


@router.get("/autolabel/audit", response_model=AutolabelAuditOut)
def autolabel_audit_report(project_id: PathId, db: DbDep, member: ViewProject) -> AutolabelAuditOut:
    """The audit of the auto-labels: how many humans checked and the measured precision."""
    return AutolabelAuditOut.model_validate(autolabel_audit.audit_report(db, project_id))


@router.post("/autolabel/audit", response_model=AutolabelAuditOut)
def queue_autolabel_audit(
    project_id: PathId,
    body: AutolabelAuditIn,
    db: DbDep,
    settings: SettingsDep,
    member: Autolabel,
) -> AutolabelAuditOut:
    """Queue a random sample of the auto-labeled items for humans (served ahead of the rest of
    the queue); re-posting the same size adds nothing."""
    return AutolabelAuditOut.model_validate(
        autolabel_audit.queue_audit(db, settings, project_id, size=body.size, actor=member.username)
    )
