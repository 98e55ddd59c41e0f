"""Object-detection auto-label routes: preview the images whose every box is confident for a target
box precision (with the precision and recall measured on the evaluation sample), then apply."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from labella.api.deps import DbDep, PathId
from labella.api.policy import Autolabel
from labella.services import detection_autolabel as service

router = APIRouter(
    prefix="/api/projects/{project_id}/detections/autolabel", tags=["object detection"]
)


class DetectionAutolabelPreviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    target_precision: float
    floor: float = Field(description="Box scores below it are background and dropped")
    include_empty: bool
    threshold: float | None = Field(
        description="Every box of an auto-labeled image scores at least this; null: no "
        "threshold reaches the target"
    )
    images: int = Field(description="Unlabeled images that would be auto-labeled")
    boxes: int = Field(description="Boxes their labels would carry")
    empty_images: int = Field(description="Images labeled 'nothing here' (no box)")
    precision: float | None = Field(
        description="Share of the predicted boxes that match a human box (IoU 0.5, same "
        "class) on the evaluation images that qualify at the threshold"
    )
    precision_low: float
    precision_high: float
    eval_boxes: int = Field(description="Predicted boxes behind the precision")
    recall: float | None = Field(
        description="Share of the human boxes of those images that the predicted boxes find"
    )
    recall_low: float
    recall_high: float
    eval_objects: int = Field(description="Human boxes behind the recall")
    eval_images: int = Field(description="Evaluation images that qualify at the threshold")
    eval_images_total: int = Field(description="Labeled evaluation images with a prediction")
    model_version: int
    note: str


class DetectionAutolabelIn(BaseModel):
    target_precision: float = Field(description="The box precision wanted, in (0, 1)")
    floor: float = Field(default=service.DEFAULT_FLOOR, description="In [0, 1)")
    include_empty: bool = Field(
        default=True, description="Also label images with no box above the floor as empty"
    )
    model_version: int | None = Field(
        default=None, description="The version the preview showed; another one gives a 409"
    )


class DetectionAutolabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    target_precision: float
    threshold: float | None
    labeled: int
    boxes: int
    model_version: int


@router.get("/preview", response_model=DetectionAutolabelPreviewOut)
def preview_detection_autolabel(
    project_id: PathId,
    db: DbDep,
    member: Autolabel,
    target_precision: Annotated[
        float, Query(description="The box precision wanted, in (0, 1), e.g. 0.95")
    ],
    floor: Annotated[
        float, Query(description="Box scores below it are background, in [0, 1)")
    ] = service.DEFAULT_FLOOR,
    include_empty: Annotated[
        bool, Query(description="Also label images with no box above the floor as empty")
    ] = True,
) -> DetectionAutolabelPreviewOut:
    """The images the latest detector would auto-label for a target box precision, with the box
    precision and recall measured on the evaluation sample and their 95% intervals."""
    return DetectionAutolabelPreviewOut.model_validate(
        service.preview(
            db,
            project_id,
            target_precision=target_precision,
            floor=floor,
            include_empty=include_empty,
        )
    )


@router.post("", response_model=DetectionAutolabelOut)
def apply_detection_autolabel(
    project_id: PathId, body: DetectionAutolabelIn, db: DbDep, member: Autolabel
) -> DetectionAutolabelOut:
    """Auto-label the images the preview shows (``model`` labels with their scored boxes)."""
    return DetectionAutolabelOut.model_validate(
        service.apply(
            db,
            project_id,
            target_precision=body.target_precision,
            floor=body.floor,
            include_empty=body.include_empty,
            model_version=body.model_version,
            actor=member.username,
        )
    )
