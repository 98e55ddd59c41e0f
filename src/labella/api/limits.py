"""A size limit on request bodies that are read whole: JSON and plain forms.

Multipart uploads (imports, images) stream to disk under their own, larger limits
(``api/forms.py``). Every other body is parsed in memory, so without a bound one request could
hold gigabytes. The check runs before the app sees the request: on the declared Content-Length
when there is one, else on the bytes as they arrive (chunked transfer), and answers 413 in the
app's error format.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labella.errors import PayloadTooLarge
from labella.services.readers import format_bytes

_UPLOAD_TYPE = "multipart/form-data"


class RequestSizeLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, unless it is a multipart upload."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_upload(scope):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, int(declared))
            return
        # Read the body here (the app would read it whole anyway), stopping at the limit.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(send, None)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(messages, receive), send)

    async def _refuse(self, send: Send, size: int | None) -> None:
        sent = f"{format_bytes(size)}, over" if size is not None else "over"
        error = PayloadTooLarge(
            f"the request body is {sent} the limit of {format_bytes(self.limit)}; "
            "send files as a multipart upload",
            details={"limit_bytes": self.limit},
        )
        body = json.dumps({"detail": error.message, "code": error.code, "details": error.details})
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # the rest of the body is not read: the client must not reuse the connection
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives the messages already read, then the client's own."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1").strip()
    return ""


def _is_upload(scope: Scope) -> bool:
    return _header(scope, b"content-type").lower().startswith(_UPLOAD_TYPE)
