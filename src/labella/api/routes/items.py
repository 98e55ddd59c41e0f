"""Data-browser routes: the paged, filtered items table and a read-only queue preview."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from labella.api.deps import MAX_ID, DbDep, PathId
from labella.api.policy import BrowseItems
from labella.api.schemas import ItemPageOut, QueuePreviewOut
from labella.services import browse
from labella.services import projects as project_service

router = APIRouter(prefix="/api/projects/{project_id}", tags=["items"])


@router.get("/items", response_model=ItemPageOut)
def list_items(
    project_id: PathId,
    db: DbDep,
    member: BrowseItems,
    status: Annotated[
        str | None, Query(description="unlabeled, labeled (by a human), auto or skipped")
    ] = None,
    label: Annotated[
        str | None, Query(description="A class name (or id): the current label includes it")
    ] = None,
    source: Annotated[
        str | None, Query(description="human or model: who gave the current label")
    ] = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    max_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    after_id: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="Give the previous page's next_after_id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=browse.MAX_PAGE)] = browse.DEFAULT_PAGE,
) -> ItemPageOut:
    """Items in import order, a page at a time (keyset paging: every page is equally fast)."""
    project = project_service.get_project(db, project_id)
    flt = browse.parse_filter(
        project,
        status=status,
        label=label,
        source=source,
        min_confidence=min_confidence,
        max_confidence=max_confidence,
    )
    page = browse.list_items(db, project_id, flt=flt, after_id=after_id, limit=limit)
    return ItemPageOut.model_validate(page)


@router.get("/queue", response_model=list[QueuePreviewOut])
def queue_preview(
    project_id: PathId,
    db: DbDep,
    member: BrowseItems,
    n: Annotated[int, Query(ge=1, le=browse.MAX_QUEUE_PREVIEW)] = 10,
) -> list[QueuePreviewOut]:
    """The next items of the labeling queue with their scores, without leasing them."""
    return [
        QueuePreviewOut.model_validate(row) for row in browse.preview_queue(db, project_id, n=n)
    ]
