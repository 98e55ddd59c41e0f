"""Import and export routes: parse the request, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from labella.api.deps import DbDep, PathId, SettingsDep, WorkerDep
from labella.api.forms import flag_field, multipart_form, text_field
from labella.api.policy import ImportExport
from labella.api.schemas import ImportRecordOut, ImportReportOut
from labella.errors import InvalidInput
from labella.services import exporting, importing

router = APIRouter(prefix="/api/projects", tags=["data"])

_TEXT_OPTIONS = ("text_field", "label_field", "id_field", "format", "label_separator")

_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV, TSV, JSONL/NDJSON or TXT (one item per line), "
                            "UTF-8; the format follows the file name unless `format` is given",
                        },
                        "format": {"type": "string", "enum": ["csv", "tsv", "jsonl", "txt"]},
                        "text_field": {"type": "string", "description": "Column with the text"},
                        "label_field": {
                            "type": "string",
                            "description": "Column with existing labels (imported as human labels)",
                        },
                        "id_field": {"type": "string", "description": "Column with your own id"},
                        "has_header": {
                            "type": "boolean",
                            "default": True,
                            "description": "false for CSV/TSV without a header row "
                            "(columns are then numbered 1, 2, ...)",
                        },
                        "label_separator": {
                            "type": "string",
                            "default": "|",
                            "description": "Separates several labels in one CSV/TSV cell",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "/{project_id}/imports",
    status_code=status.HTTP_201_CREATED,
    response_model=ImportReportOut,
    openapi_extra=_IMPORT_BODY,
    summary="Import a file of texts (and optionally their labels)",
)
async def create_import(
    project_id: PathId,
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    worker: WorkerDep,
    member: ImportExport,
) -> ImportReportOut:
    """All or nothing: a file with a problem (reported with its line) changes nothing.
    Duplicate texts and empty rows are skipped and reported."""
    limit = settings.max_upload_bytes
    async with multipart_form(
        request, limit, max_files=1, max_fields=len(_TEXT_OPTIONS) + 2
    ) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput(
                "no file uploaded: send it as multipart/form-data in a field named 'file'"
            )
        options = _import_options(form)
        report = await run_in_threadpool(
            importing.import_file,
            db,
            settings,
            project_id,
            upload.file,
            filename=upload.filename or "",
            size_limit=limit,
            actor=member.username,
            **options,
        )
    if worker is not None:
        worker.wake()
    return ImportReportOut.model_validate(report)


@router.get("/{project_id}/imports", response_model=list[ImportRecordOut])
def list_imports(project_id: PathId, db: DbDep, member: ImportExport) -> list[ImportRecordOut]:
    return [ImportRecordOut.model_validate(r) for r in importing.list_imports(db, project_id)]


@router.get(
    "/{project_id}/export",
    response_class=StreamingResponse,
    summary="Export items and labels with each label's source, confidence and model version",
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
)
def export(
    project_id: PathId,
    db: DbDep,
    member: ImportExport,
    fmt: Annotated[str, Query(alias="format", description="csv or jsonl")] = "csv",
    include: Annotated[
        str, Query(description="labeled: labelled items only; all: every item, with predictions")
    ] = "labeled",
) -> StreamingResponse:
    stream = exporting.iter_export(db, project_id, fmt=fmt, include=include, actor=member.username)
    return StreamingResponse(
        iter(stream),
        media_type=stream.media_type,
        headers={"Content-Disposition": f'attachment; filename="{stream.filename}"'},
    )


def _import_options(form: FormData) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in _TEXT_OPTIONS:
        value = text_field(form, name)
        if value is None or (name != "label_separator" and not value.strip()):
            continue
        options["fmt" if name == "format" else name] = value
    header = flag_field(form, "has_header")
    if header is not None:
        options["has_header"] = header
    return options
