"""Domain errors. Each carries the HTTP status it maps to; the API maps them in one handler
(``labella.api.app``) and the CLI prints their message on one line."""

from __future__ import annotations

from typing import Any


class LabellaError(Exception):
    """Base of every error a user can cause; ``message`` says what is wrong and what to do."""

    status_code = 400
    code = "bad_request"
    retry_after: int | None = None
    """Seconds after which the same request may succeed (sent as ``Retry-After``)."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class Unauthorized(LabellaError):
    """No valid sign-in (session cookie or API token) came with the request."""

    status_code = 401
    code = "unauthorized"


class Forbidden(LabellaError):
    """Signed in, but the role does not allow this; the message names the missing permission."""

    status_code = 403
    code = "forbidden"


class TooManyRequests(LabellaError):
    """Too many attempts (failed sign-ins); ``retry_after`` says how many seconds to wait."""

    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


class NotFound(LabellaError):
    status_code = 404
    code = "not_found"


class InvalidInput(LabellaError):
    status_code = 422
    code = "invalid_input"


class Conflict(LabellaError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(LabellaError):
    status_code = 413
    code = "payload_too_large"


class ImportFailed(InvalidInput):
    """The import file is unusable; nothing of it was stored."""

    code = "import_failed"


class NotReady(Conflict):
    """The request needs something that does not exist yet (a trained model, embeddings)."""

    code = "not_ready"


class Busy(LabellaError):
    """The store is busy with another write (SQLite writes one transaction at a time, e.g. during
    a large import) and this one waited as long as it may; nothing of it was written."""

    status_code = 503
    code = "busy"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after
