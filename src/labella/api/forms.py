"""Multipart forms that upload routes read themselves (to stream large files): the size checks
before and after the form is parsed, and the form's text and true/false options."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO

from fastapi import Request
from starlette.datastructures import FormData, UploadFile

from labella.errors import InvalidInput, PayloadTooLarge
from labella.services.readers import format_bytes

# Room for the multipart envelope (boundaries, part headers, the small option fields) when the
# request's Content-Length is compared with the file size limit; the exact limit is enforced on the
# file's own bytes while it is read.
MULTIPART_ALLOWANCE = 64 * 1024

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def refuse_declared_oversize(request: Request, limit: int) -> None:
    """PayloadTooLarge before a byte is read when the client says up front (Content-Length) that
    the body is over ``limit`` plus the multipart envelope."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_ALLOWANCE:
        raise PayloadTooLarge(
            f"the upload is {format_bytes(int(declared))}, over the limit of {format_bytes(limit)}",
            details={"limit_bytes": limit},
        )


@asynccontextmanager
async def multipart_form(
    request: Request, limit: int, *, max_files: int, max_fields: int
) -> AsyncIterator[FormData]:
    """The request's multipart form, refused up front when its declared size is over ``limit``
    (:func:`refuse_declared_oversize`); its spooled files are closed on the way out."""
    refuse_declared_oversize(request, limit)
    form = await request.form(max_files=max_files, max_fields=max_fields)
    try:
        yield form
    finally:
        await form.close()


def uploaded_files(form: FormData, limit: int) -> list[tuple[str, IO[bytes]]]:
    """(name, stream) of each file of the form's ``files`` fields: InvalidInput without any,
    PayloadTooLarge when together they are over ``limit``."""
    uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not uploads:
        raise InvalidInput(
            "no files uploaded: send them as multipart/form-data in fields named 'files'"
        )
    total = sum(f.size or 0 for f in uploads)
    if total > limit:
        raise PayloadTooLarge(
            f"the files add up to {format_bytes(total)}, over the limit of {format_bytes(limit)}",
            details={"limit_bytes": limit},
        )
    return [(f.filename or "upload", f.file) for f in uploads]


def text_field(form: FormData, name: str) -> str | None:
    """The text of form field ``name`` (None when absent); InvalidInput when it is a file."""
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise InvalidInput(f"form field {name!r} must be text, not a file")
    return value


def flag_field(form: FormData, name: str) -> bool | None:
    """Form field ``name`` as true or false (1/0, yes/no, on/off too); None when absent or blank,
    InvalidInput for any other word."""
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return None
    lowered = value.strip().lower()
    if lowered not in _TRUE | _FALSE:
        raise InvalidInput(f"{name} must be true or false, got {value!r}")
    return lowered in _TRUE
