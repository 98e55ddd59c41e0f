"""Bounding-box labeling routes: submit an image's boxes as its label, and read its current boxes,
their history and the detector's prelabels (the box editor's two calls)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from labella.api.deps import DbDep, PathId, WorkerDep
from labella.api.policy import Action, Label, ViewOwnWork
from labella.api.routes.labeling import check_may_answer
from labella.api.schemas import BoxOut, LabelOut
from labella.errors import Forbidden
from labella.services import accounts
from labella.services import box_labeling as service

router = APIRouter(prefix="/api/projects/{project_id}/items/{item_id}", tags=["object detection"])


class BoxIn(BaseModel):
    # strict: a JSON true or 1.5 is no class id (lax parsing would make them class 1)
    class_: StrictInt | StrictStr = Field(
        alias="class", description="The box's class: its id (a number) or its name (a string)"
    )
    x_min: float = Field(description="Left edge in image pixels")
    y_min: float = Field(description="Top edge in image pixels")
    x_max: float = Field(description="Right edge in image pixels (greater than x_min)")
    y_max: float = Field(description="Bottom edge in image pixels (greater than y_min)")


class BoxesIn(BaseModel):
    boxes: list[BoxIn] = Field(
        description="Every box of the image (the whole answer: earlier boxes not listed are "
        "gone); an empty list says the image holds nothing to box"
    )
    request_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="A key the client makes once per answer (e.g. a UUID); sending the same "
        "answer again with it returns the label already made instead of recording a second one",
    )


class BoxLabelResultOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    label: LabelOut
    boxes: list[BoxOut]
    item_status: str
    training_job_id: int | None = Field(description="The training this label scheduled, if any")


class LabelBoxesOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    label: LabelOut
    boxes: list[BoxOut]


class PrelabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    model_version: int
    min_score: float = Field(description="Boxes scoring below this are left out")
    boxes: list[BoxOut] = Field(description="The detector's boxes, best score first")


class ItemBoxesOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    item_id: int
    width: int = Field(description="Image width in pixels")
    height: int = Field(description="Image height in pixels")
    status: str
    current: LabelBoxesOut | None = Field(description="The current label and its boxes")
    previous: list[LabelBoxesOut] = Field(
        description="Earlier labels with their boxes, newest first"
    )
    prelabel: PrelabelOut | None = Field(description="The newest detector's boxes, if any")


@router.put("/boxes", response_model=BoxLabelResultOut)
def submit_boxes(
    project_id: PathId, item_id: PathId, body: BoxesIn, db: DbDep, worker: WorkerDep, member: Label
) -> BoxLabelResultOut:
    """Label an image with its boxes (or change them: the previous boxes stay in the history).
    Annotators label the images served to them; reviewers, managers and owners any image."""
    check_may_answer(db, member, item_id)
    result = service.submit_boxes(
        db,
        project_id,
        item_id,
        boxes=[
            service.BoxInput(
                cls=b.class_, x_min=b.x_min, y_min=b.y_min, x_max=b.x_max, y_max=b.y_max
            )
            for b in body.boxes
        ],
        annotator=member.username,
        request_id=body.request_id,
    )
    if worker is not None:
        worker.wake()  # a label may have queued a training or an online update: start it now
    return BoxLabelResultOut.model_validate(result)


@router.get("/boxes", response_model=ItemBoxesOut)
def item_boxes(
    project_id: PathId,
    item_id: PathId,
    db: DbDep,
    member: ViewOwnWork,
    min_score: Annotated[
        float, Query(ge=0, le=1, description="Leave out prelabel boxes scoring below this")
    ] = service.PRELABEL_MIN_SCORE,
) -> ItemBoxesOut:
    """An image's size, current boxes, earlier boxes and the detector's prelabel boxes.
    Annotators see the images served to them; other roles any image."""
    if not member.may(Action.BROWSE_ITEMS) and not accounts.item_served_to(
        db, project_id, item_id, member.username
    ):
        raise Forbidden(
            f"item {item_id} was not served to you (seeing any item needs permission "
            "'browse_items')",
            details={"permission": Action.BROWSE_ITEMS.value, "role": member.role.value},
        )
    return ItemBoxesOut.model_validate(
        service.item_boxes(db, project_id, item_id, min_score=min_score)
    )
