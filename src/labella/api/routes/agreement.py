"""Agreement routes: inter-annotator agreement of a project and the annotator dashboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from labella.api.deps import DbDep, PathId
from labella.api.policy import Action, Review, ViewOwnWork
from labella.api.schemas import AnnotatorDashboardOut, AnnotatorStatsOut, ProjectAgreementOut
from labella.services import agreement as service

router = APIRouter(prefix="/api/projects/{project_id}", tags=["agreement"])


@router.get("/agreement", response_model=ProjectAgreementOut)
def project_agreement(project_id: PathId, db: DbDep, member: Review) -> ProjectAgreementOut:
    """Agreement on the overlapped items: percent agreement, Fleiss' kappa and Krippendorff's
    alpha over all annotators, Cohen's kappa per pair, and how the labels were decided."""
    return ProjectAgreementOut.model_validate(service.project_agreement(db, project_id))


@router.get("/annotators", response_model=AnnotatorDashboardOut)
def annotator_dashboard(
    project_id: PathId,
    db: DbDep,
    member: ViewOwnWork,
    window_hours: Annotated[
        float,
        Query(gt=0, le=service.MAX_WINDOW_HOURS, description="How far back the pace looks"),
    ] = 24.0,
) -> AnnotatorDashboardOut:
    """Per annotator: labels in total and per hour of labeling lately, agreement with the others
    and with review outcomes. Annotators see their own row only; reviewers and up everyone's."""
    only = None if member.may(Action.REVIEW) else member.username
    stats = service.annotator_stats(db, project_id, window_hours=window_hours, only=only)
    return AnnotatorDashboardOut(
        project_id=project_id,
        window_hours=window_hours,
        annotators=[AnnotatorStatsOut.model_validate(s) for s in stats],
    )
