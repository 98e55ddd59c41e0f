"""Object-detection routes: import images with bounding boxes (upload, server-side folder) and
export the current boxes as Pascal VOC, COCO, YOLO or CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from labella.api.deps import DbDep, PathId, SettingsDep
from labella.api.forms import multipart_form, uploaded_files
from labella.api.openapi import multipart_files_body
from labella.api.policy import ImportExport
from labella.api.schemas import ImageImportReportOut
from labella.services import detection_export, detection_import, image_import

router = APIRouter(prefix="/api/projects/{project_id}/detections", tags=["object detection"])

MAX_FILES = 20_000

_UPLOAD_BODY = multipart_files_body(
    "Images, Pascal VOC .xml, COCO .json, YOLO .txt with classes.txt or data.yaml, or zip "
    "archives of them"
)


class BadAnnotationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    reason: str


class DetectionImportReportOut(ImageImportReportOut):
    annotation_files: int = Field(description="Annotation files read (class-name files aside)")
    annotated_images: int = Field(description="Images imported with a label and its boxes")
    boxes_created: int
    bad_annotations: int = Field(description="Bad annotation files (or entries) skipped")
    bad_annotation_examples: list[BadAnnotationOut] = Field(
        description="The first 100, each with the reason"
    )


class DetectionFolderIn(BaseModel):
    path: str = Field(
        min_length=1,
        description="A folder on the server, inside LABELLA_IMPORT_ROOTS or the data dir",
    )


@router.post(
    "/import",
    status_code=status.HTTP_201_CREATED,
    response_model=DetectionImportReportOut,
    openapi_extra=_UPLOAD_BODY,
    summary="Upload images with bounding boxes (VOC, COCO or YOLO annotations, or zips)",
)
async def upload_detections(
    project_id: PathId, request: Request, db: DbDep, settings: SettingsDep, member: ImportExport
) -> DetectionImportReportOut:
    """Bad annotation files (a box outside its image, a negative size, an unknown class, a
    missing image, unparseable or unsafe XML) are skipped and reported by name."""
    limit = settings.max_upload_bytes
    async with multipart_form(request, limit, max_files=MAX_FILES, max_fields=4) as form:
        report = await run_in_threadpool(
            detection_import.import_files,
            db,
            settings,
            project_id,
            uploaded_files(form, limit),
            actor=member.username,
        )
    return DetectionImportReportOut.model_validate(report)


@router.post(
    "/import/folder",
    status_code=status.HTTP_201_CREATED,
    response_model=DetectionImportReportOut,
    summary="Import a folder of images and annotations on the server (images referenced)",
)
def import_detection_folder(
    project_id: PathId,
    body: DetectionFolderIn,
    db: DbDep,
    settings: SettingsDep,
    member: ImportExport,
) -> DetectionImportReportOut:
    """The folder must lie inside LABELLA_IMPORT_ROOTS or the data dir (403 otherwise)."""
    report = detection_import.import_folder(
        db,
        settings,
        project_id,
        Path(body.path),
        roots=image_import.api_roots(settings),
        actor=member.username,
    )
    return DetectionImportReportOut.model_validate(report)


@router.get(
    "/export",
    response_class=Response,
    summary="Export the current boxes as Pascal VOC (zip), COCO (JSON), YOLO (zip) or CSV",
    responses={200: {"content": {"application/zip": {}, "application/json": {}, "text/csv": {}}}},
)
def export_detections(
    project_id: PathId,
    db: DbDep,
    member: ImportExport,
    fmt: Annotated[str, Query(alias="format", description="voc, coco, yolo or csv")] = "coco",
    include_model: Annotated[
        bool, Query(description="Include the model's labels (marked as such)")
    ] = True,
) -> Response:
    export = detection_export.export_detections(
        db, project_id, fmt=fmt, include_model=include_model
    )
    return Response(
        export.data,
        media_type=export.media_type,
        headers={"Content-Disposition": f'attachment; filename="{export.filename}"'},
    )
