"""Label QA routes: the review queue of suspect labels, and a reviewer's decision on one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from labella.api.deps import DbDep
from labella.api.schemas import ReviewFlagOut, ReviewIn, ReviewQueueOut
from labella.services import label_qa as service

router = APIRouter(prefix="/api/projects/{project_id}/review", tags=["review"])


@router.get("", response_model=ReviewQueueOut)
def review_queue(
    project_id: int,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_REVIEW_PAGE)] = 50,
) -> ReviewQueueOut:
    """Open flags: human labels the latest model confidently disagrees with, most suspicious
    first."""
    flags = service.review_queue(db, project_id, limit=limit)
    return ReviewQueueOut(
        project_id=project_id, flags=[ReviewFlagOut.model_validate(f) for f in flags]
    )


@router.get("/items/{item_id}", response_model=list[ReviewFlagOut])
def item_flags(project_id: int, item_id: int, db: DbDep) -> list[ReviewFlagOut]:
    """Every flag an item ever had (open or resolved), newest first."""
    return [ReviewFlagOut.model_validate(f) for f in service.item_flags(db, project_id, item_id)]


@router.post("/{flag_id}", response_model=ReviewFlagOut)
def resolve_flag(project_id: int, flag_id: int, body: ReviewIn, db: DbDep) -> ReviewFlagOut:
    """Keep the flagged label, or change it (a new label by the reviewer; both stay in the
    item's history)."""
    flag = service.resolve_flag(
        db,
        project_id,
        flag_id,
        action=body.action,
        classes=body.classes,
        reviewer=body.reviewer,
    )
    return ReviewFlagOut.model_validate(flag)
