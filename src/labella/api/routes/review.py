"""Review routes: the reviewer's queue (suspect labels, disagreements, work samples) and their
decision on an entry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from labella.api.deps import DbDep, PathId
from labella.api.policy import Review
from labella.api.schemas import ReviewFlagOut, ReviewIn, ReviewQueueOut
from labella.services import review as service

router = APIRouter(prefix="/api/projects/{project_id}/review", tags=["review"])


@router.get("", response_model=ReviewQueueOut)
def review_queue(
    project_id: PathId,
    db: DbDep,
    member: Review,
    kind: Annotated[
        list[str] | None,
        Query(description="suspect_label, disagreement or work_sample (repeat for several)"),
    ] = None,
    status: Annotated[str, Query(description="open, resolved or all")] = "open",
    annotator: Annotated[
        str | None, Query(max_length=200, description="Entries about this annotator's work")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_REVIEW_PAGE)] = 50,
) -> ReviewQueueOut:
    """Review entries: open ones most pressing first (suspicion, or how split the answers are;
    work samples last), resolved ones newest first; with the open count of each kind."""
    flags = service.review_queue(
        db, project_id, kinds=kind, status=status, annotator=annotator or None, limit=limit
    )
    return ReviewQueueOut(
        project_id=project_id,
        counts=service.queue_counts(db, project_id),
        flags=[ReviewFlagOut.model_validate(f) for f in flags],
    )


@router.get("/items/{item_id}", response_model=list[ReviewFlagOut])
def item_flags(
    project_id: PathId, item_id: PathId, db: DbDep, member: Review
) -> list[ReviewFlagOut]:
    """Every entry an item ever had (open or resolved), newest first."""
    return [ReviewFlagOut.model_validate(f) for f in service.item_flags(db, project_id, item_id)]


@router.post("/{flag_id}", response_model=ReviewFlagOut)
def resolve_flag(
    project_id: PathId, flag_id: PathId, body: ReviewIn, db: DbDep, member: Review
) -> ReviewFlagOut:
    """Approve the label in question, or change it (a new label by the reviewer; both stay in
    the item's history). A disagreement without a majority needs the classes."""
    flag = service.resolve_flag(
        db,
        project_id,
        flag_id,
        action=body.action,
        classes=body.classes,
        reviewer=member.username,
    )
    return ReviewFlagOut.model_validate(flag)
