"""OpenAPI descriptions that FastAPI cannot infer: routes that read a multipart form themselves
(to stream large uploads) describe their request body here."""

from __future__ import annotations

from typing import Any


def multipart_files_body(
    files_description: str, extra_properties: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``openapi_extra`` for a route taking a multipart form with a repeated ``files`` field."""
    properties: dict[str, Any] = {
        "files": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": files_description,
        },
        **(extra_properties or {}),
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": ["files"], "properties": properties}
                }
            },
        }
    }
