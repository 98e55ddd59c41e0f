"""Labeling-loop routes: the next batch, labels and skips, an item's history, auto-label."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from labella.api.deps import DbDep, PathId, SettingsDep, WorkerDep
from labella.api.policy import Action, Autolabel, Label, Member, ViewOwnWork
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
from labella.errors import Forbidden, InvalidInput
from labella.services import accounts, autolabel
from labella.services import labeling as service

router = APIRouter(prefix="/api/projects/{project_id}", tags=["labeling"])


@router.get("/next", response_model=NextBatchOut)
def next_batch(
    project_id: PathId,
    db: DbDep,
    settings: SettingsDep,
    member: Label,
    n: Annotated[int, Query(ge=1, le=service.MAX_BATCH, description="Batch size")] = 10,
) -> NextBatchOut:
    """Lease the next items to label, most informative first, to the signed-in user."""
    annotator = member.username
    items = service.next_batch(db, settings, project_id, n=n, annotator=annotator)
    return NextBatchOut(
        project_id=project_id,
        annotator=annotator,
        lease_seconds=settings.lease_seconds,
        items=[QueueItemOut.model_validate(item) for item in items],
    )


@router.post(
    "/items/{item_id}/label", status_code=status.HTTP_201_CREATED, response_model=LabelResultOut
)
def submit_label(
    project_id: PathId, item_id: PathId, body: LabelIn, db: DbDep, worker: WorkerDep, member: Label
) -> LabelResultOut:
    """Label an item (or change its label: the previous one stays in the history). Annotators
    label the items served to them; reviewers, managers and owners any item."""
    check_may_answer(db, member, item_id)
    result = service.submit_label(
        db,
        project_id,
        item_id,
        classes=body.classes,
        annotator=member.username,
        request_id=body.request_id,
    )
    if worker is not None:
        # a label queues an online update (and sometimes a training): start it now, not at the
        # next poll, so the queue is re-ranked within a second of the label
        worker.wake()
    return LabelResultOut.model_validate(result)


@router.post(
    "/items/{item_id}/skip", status_code=status.HTTP_201_CREATED, response_model=LabelResultOut
)
def skip_item(
    project_id: PathId, item_id: PathId, db: DbDep, member: Label, body: SkipIn | None = None
) -> LabelResultOut:
    """Set an item aside; it leaves the queue and the skip is kept in its history."""
    body = body or SkipIn()
    check_may_answer(db, member, item_id)
    return LabelResultOut.model_validate(
        service.skip_item(
            db, project_id, item_id, annotator=member.username, request_id=body.request_id
        )
    )


def check_may_answer(db: DbDep, member: Member, item_id: PathId) -> None:
    if member.may(Action.CHANGE_LABELS):
        return
    if not accounts.item_served_to(db, member.project_id, item_id, member.username):
        raise Forbidden(
            f"item {item_id} was not served to you: as {member.role.value} you label the items "
            "/next gives you (changing other items needs permission 'change_labels')",
            details={"permission": Action.CHANGE_LABELS.value, "role": member.role.value},
        )


@router.get("/items/{item_id}", response_model=ItemHistoryOut)
def item_history(
    project_id: PathId, item_id: PathId, db: DbDep, member: ViewOwnWork
) -> ItemHistoryOut:
    """An item with its current label, its full label history and the model's prediction.
    Annotators see the items served to them; other roles any item."""
    if not member.may(Action.BROWSE_ITEMS) and not accounts.item_served_to(
        db, project_id, item_id, member.username
    ):
        raise Forbidden(
            f"item {item_id} was not served to you (seeing any item needs permission "
            "'browse_items')",
            details={"permission": Action.BROWSE_ITEMS.value, "role": member.role.value},
        )
    # without browse_items, of the overlap answers only one's own (services.assignment)
    only_answers_of = None if member.may(Action.BROWSE_ITEMS) else member.username
    return ItemHistoryOut.model_validate(
        service.item_history(db, project_id, item_id, only_answers_of=only_answers_of)
    )


@router.get("/autolabel/preview", response_model=AutolabelPreviewOut | PrecisionPreviewOut)
def autolabel_preview(
    project_id: PathId,
    db: DbDep,
    member: Autolabel,
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
def autolabel_apply(
    project_id: PathId, body: AutolabelIn, db: DbDep, member: Autolabel
) -> AutolabelOut:
    """Label every unlabeled item whose prediction clears the threshold (as ``model`` labels)."""
    if body.target_precision is not None:
        return AutolabelOut.model_validate(
            autolabel.apply_precision(
                db, project_id, target_precision=body.target_precision, actor=member.username
            )
        )
    assert body.threshold is not None  # the schema requires exactly one of the two
    return AutolabelOut.model_validate(
        autolabel.apply(db, project_id, threshold=body.threshold, actor=member.username)
    )
