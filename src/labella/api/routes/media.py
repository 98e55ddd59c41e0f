"""Image routes: import images (upload, server-side folder) and serve an item's image and
thumbnail with caching headers.

Which server paths a client may name: only folders inside ``LABELLA_IMPORT_ROOTS`` or the data
dir (after symlinks are resolved); anything else is refused with 403 before a file is read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from labella.api.deps import DbDep, PathId, SettingsDep, WorkerDep
from labella.api.forms import flag_field, multipart_form, text_field, uploaded_files
from labella.api.openapi import multipart_files_body
from labella.api.policy import ImportExport, ViewProject
from labella.api.schemas import FolderImportIn, ImageImportReportOut
from labella.services import image_import
from labella.services import media as media_service

router = APIRouter(prefix="/api/projects/{project_id}", tags=["images"])

MAX_FILES = 10_000
_TEXT_OPTIONS = ("base_dir", "path_field", "label_field", "id_field", "label_separator", "labels")
# The bytes behind a URL never change (an item's content is fixed by its hash), but the ETag is
# still sent so that a client can revalidate cheaply after max-age.
CACHE_CONTROL = "private, max-age=86400"

_UPLOAD_BODY = multipart_files_body(
    "Images (JPEG, PNG, WebP, BMP), zip archives of images (a subfolder per class labels them), "
    "or CSV/TSV/JSONL listings of image paths on the server",
    {
        "labels": {
            "type": "string",
            "description": "Class name(s), '|'-separated, for every image that gets no label "
            "from its source",
        },
        "labels_from_folders": {"type": "boolean", "default": True},
        "base_dir": {
            "type": "string",
            "description": "Server folder that a listing's relative paths start from (inside "
            "LABELLA_IMPORT_ROOTS or the data dir)",
        },
        "path_field": {"type": "string"},
        "label_field": {"type": "string"},
        "id_field": {"type": "string"},
        "label_separator": {"type": "string", "default": "|"},
    },
)


@router.post(
    "/images",
    status_code=status.HTTP_201_CREATED,
    response_model=ImageImportReportOut,
    openapi_extra=_UPLOAD_BODY,
    summary="Upload images, zip archives of images, or listings of image paths",
)
async def upload_images(
    project_id: PathId,
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    worker: WorkerDep,
    member: ImportExport,
) -> ImageImportReportOut:
    """Bad images (corrupt, truncated, unsupported, unsafe archive paths, decompression bombs)
    are skipped and reported by name; the others are imported."""
    limit = settings.max_upload_bytes
    async with multipart_form(
        request, limit, max_files=MAX_FILES, max_fields=len(_TEXT_OPTIONS) + 2
    ) as form:
        uploads = uploaded_files(form, limit)
        options = _upload_options(form)
        report = await run_in_threadpool(
            image_import.import_files,
            db,
            settings,
            project_id,
            uploads,
            roots=image_import.api_roots(settings),
            actor=member.username,
            **options,
        )
    if worker is not None:
        worker.wake()
    return ImageImportReportOut.model_validate(report)


@router.post(
    "/images/folder",
    status_code=status.HTTP_201_CREATED,
    response_model=ImageImportReportOut,
    summary="Import a folder of images on the server, referenced in place",
)
def import_folder(
    project_id: PathId,
    body: FolderImportIn,
    db: DbDep,
    settings: SettingsDep,
    worker: WorkerDep,
    member: ImportExport,
) -> ImageImportReportOut:
    """The folder must lie inside LABELLA_IMPORT_ROOTS or the data dir (403 otherwise)."""
    report = image_import.import_folder(
        db,
        settings,
        project_id,
        Path(body.path),
        roots=image_import.api_roots(settings),
        labels_from_folders=body.labels_from_folders,
        actor=member.username,
    )
    if worker is not None:
        worker.wake()
    return ImageImportReportOut.model_validate(report)


@router.get(
    "/items/{item_id}/image",
    response_class=Response,
    summary="The item's image file as imported",
    responses={200: {"content": {"image/*": {}}}, 304: {"description": "Not modified"}},
)
def item_image(
    project_id: PathId,
    item_id: PathId,
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    member: ViewProject,
) -> Response:
    media = media_service.item_media(db, project_id, item_id)
    return _cached(
        request, media.etag, media.media_type, lambda: media_service.read_image(settings, media)
    )


@router.get(
    "/items/{item_id}/thumbnail",
    response_class=Response,
    summary="A JPEG thumbnail of the item's image (256 px on the longer side)",
    responses={200: {"content": {"image/jpeg": {}}}, 304: {"description": "Not modified"}},
)
def item_thumbnail(
    project_id: PathId,
    item_id: PathId,
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    member: ViewProject,
) -> Response:
    media = media_service.item_media(db, project_id, item_id)
    return _cached(
        request,
        media.thumbnail_etag,
        media_service.THUMBNAIL_TYPE,
        lambda: media_service.thumbnail_bytes(settings, media),
    )


def _cached(request: Request, etag: str, media_type: str, read: Callable[[], bytes]) -> Response:
    """304 when the client already has ``etag``; else the bytes ``read`` returns, with it."""
    if _matches(request, etag):
        return _not_modified(etag)
    return Response(content=read(), media_type=media_type, headers=_cache_headers(etag))


def _cache_headers(etag: str) -> dict[str, str]:
    return {"ETag": etag, "Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}


def _matches(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return any(tag.strip() in (etag, f"W/{etag}", "*") for tag in wanted.split(",") if tag)


def _not_modified(etag: str) -> Response:
    return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=_cache_headers(etag))


def _upload_options(form: FormData) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in _TEXT_OPTIONS:
        value = text_field(form, name)
        if value is None or (name != "label_separator" and not value.strip()):
            continue
        if name == "base_dir":
            options[name] = Path(value.strip())
        elif name == "labels":
            separator = str(form.get("label_separator") or "|")
            options[name] = [p.strip() for p in value.split(separator) if p.strip()]
        else:
            options[name] = value
    flag = flag_field(form, "labels_from_folders")
    if flag is not None:
        options["labels_from_folders"] = flag
    return options
