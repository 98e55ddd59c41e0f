"""Labeling-loop routes: the next batch, labels and skips, an item's history, auto-label."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from labella.api.deps import DbDep, SettingsDep, WorkerDep
from labella.api.schemas import (
    AutolabelIn,
    AutolabelOut,
    AutolabelPreviewOut,
    ItemHistoryOut,
    LabelIn,
    LabelResultOut,
    NextBatchOut,
    PrecisionPreviewOut,
    QueueItemOut,
    SkipIn,
)
from labella.errors import InvalidInput
from labella.services import autolabel
from labella.services import labeling as service

router = APIRouter(prefix="/api/projects/{project_id}", tags=["labeling"])


@router.get("/next", response_model=NextBatchOut)
def next_batch(
    project_id: int,
    db: DbDep,
    settings: SettingsDep,
    n: Annotated[int, Query(ge=1, le=service.MAX_BATCH, description="Batch size")] = 10,
    annotator: Annotated[
        str, Query(min_length=1, max_length=200, description="Who the items are leased to")
    ] = service.DEFAULT_ANNOTATOR,
) -> NextBatchOut:
    """Lease and return the next items to label, most informative first."""
    items = service.next_batch(db, settings, project_id, n=n, annotator=annotator)
    return NextBatchOut(
        project_id=project_id,
        annotator=service.clean_annotator(annotator),
        lease_seconds=settings.lease_seconds,
        items=[QueueItemOut.model_validate(item) for item in items],
    )


@router.post(
    "/items/{item_id}/label", status_code=status.HTTP_201_CREATED, response_model=LabelResultOut
)
def submit_label(
    project_id: int, item_id: int, body: LabelIn, db: DbDep, worker: WorkerDep
) -> LabelResultOut:
    """Label an item (or change its label: the previous one stays in the history)."""
    result = service.submit_label(
        db,
        project_id,
        item_id,
        classes=body.classes,
        annotator=body.annotator,
        request_id=body.request_id,
    )
    if result.training_job_id is not None and worker is not None:
        worker.wake()
    return LabelResultOut.model_validate(result)


@router.post(
    "/items/{item_id}/skip", status_code=status.HTTP_201_CREATED, response_model=LabelResultOut
)
def skip_item(
    project_id: int, item_id: int, db: DbDep, body: SkipIn | None = None
) -> LabelResultOut:
    """Set an item aside; it leaves the queue and the skip is kept in its history."""
    body = body or SkipIn()
    return LabelResultOut.model_validate(
        service.skip_item(
            db, project_id, item_id, annotator=body.annotator, request_id=body.request_id
        )
    )


@router.get("/items/{item_id}", response_model=ItemHistoryOut)
def item_history(project_id: int, item_id: int, db: DbDep) -> ItemHistoryOut:
    """An item with its current label, its full label history and the model's prediction."""
    return ItemHistoryOut.model_validate(service.item_history(db, project_id, item_id))


@router.get("/autolabel/preview", response_model=AutolabelPreviewOut | PrecisionPreviewOut)
def autolabel_preview(
    project_id: int,
    db: DbDep,
    threshold: Annotated[
        float | None, Query(description="Minimum predicted probability, in (0, 1]")
    ] = None,
    target_precision: Annotated[
        float | None,
        Query(description="Instead of a threshold: the precision wanted, in (0, 1)"),
    ] = None,
) -> AutolabelPreviewOut | PrecisionPreviewOut:
    """How many unlabeled items the latest model would label at this threshold, or for a target
    precision (with the estimated precision and its interval)."""
    if (threshold is None) == (target_precision is None):
        raise InvalidInput("give exactly one of threshold or target_precision")
    if target_precision is not None:
        return PrecisionPreviewOut.model_validate(
            autolabel.preview_precision(db, project_id, target_precision=target_precision)
        )
    assert threshold is not None
    return AutolabelPreviewOut.model_validate(
        autolabel.preview(db, project_id, threshold=threshold)
    )


@router.post("/autolabel", response_model=AutolabelOut)
def autolabel_apply(project_id: int, body: AutolabelIn, db: DbDep) -> AutolabelOut:
    """Label every unlabeled item whose prediction clears the threshold (as ``model`` labels)."""
    if body.target_precision is not None:
        return AutolabelOut.model_validate(
            autolabel.apply_precision(db, project_id, target_precision=body.target_precision)
        )
    assert body.threshold is not None  # the schema requires exactly one of the two
    return AutolabelOut.model_validate(autolabel.apply(db, project_id, threshold=body.threshold))
