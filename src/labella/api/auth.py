"""Who is calling: an API token (``Authorization: Bearer lbl_...``) or the browser's session cookie.

The session cookie is HttpOnly and SameSite=Lax; it is Secure unless ``settings.cookie_secure``
says otherwise or, with the default (auto), the request came over plain http to localhost (the
development and demo case, where a Secure cookie would never be sent back). Requests that change
state (POST, PUT, PATCH, DELETE) and are signed in by the cookie must carry the session's CSRF token
in the ``X-CSRF-Token`` header (double submit: another site can make the browser send the cookie,
but cannot read the token). Bearer-token requests are exempt, since a browser never adds that
header by itself.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Response

from labella.api.deps import DbDep, SettingsDep
from labella.config import Settings
from labella.errors import Forbidden, Unauthorized
from labella.services import accounts
from labella.services.accounts import Principal

SESSION_COOKIE = "labella_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "testserver"})


def bearer_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def authenticate(request: Request, db: DbDep) -> Principal | None:
    """The caller, or None when the request carries no credentials at all. A credential that is
    present but wrong (unknown, revoked, expired) is refused with 401 rather than ignored."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    secret = bearer_secret(request)
    if secret is not None:
        user = accounts.authenticate_token(db, secret)
        if user is None:
            raise Unauthorized("the API token is not valid (unknown or revoked)")
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        user = accounts.resolve_session(db, cookie)
        if user is None:
            raise Unauthorized("your session has ended; sign in again")
    request.state.principal = user
    return user


def current_user(request: Request, db: DbDep) -> Principal:
    """Any signed-in user; checks the CSRF token of cookie-authenticated state changes."""
    user = authenticate(request, db)
    if user is None:
        raise Unauthorized(
            "sign in first: send 'Authorization: Bearer <API token>' or sign in at /login"
        )
    if user.via == "session" and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent, user.csrf_token or ""):
            raise Forbidden(
                f"missing or wrong {CSRF_HEADER} header: state-changing requests signed in by "
                "the session cookie must send the token from /api/auth/me"
            )
    return user


def optional_user(request: Request, db: DbDep) -> Principal | None:
    """The signed-in user or None (pages redirect to the sign-in page instead of failing)."""
    try:
        return authenticate(request, db)
    except Unauthorized:
        return None


CurrentUserDep = Annotated[Principal, Depends(current_user)]
OptionalUserDep = Annotated[Principal | None, Depends(optional_user)]


def cookie_secure(request: Request, settings: Settings) -> bool:
    if settings.cookie_secure is not None:
        return settings.cookie_secure
    # auto: a Secure cookie over plain http is never sent back, which would make signing in to a
    # local development server impossible; anywhere else insist on https
    plain_local = request.url.scheme == "http" and (request.url.hostname or "") in _LOCAL_HOSTS
    return not plain_local


def set_session_cookie(
    response: Response, request: Request, settings: SettingsDep, secret: str, max_age: int
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request, settings),
        path="/",
    )


def clear_session_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request, settings),
        path="/",
    )


def client_address(request: Request) -> str:
    # the peer address; behind a reverse proxy run uvicorn with --proxy-headers so that this is
    # the real client (an X-Forwarded-For header alone is not trusted: anyone can send one)
    return request.client.host if request.client is not None else "unknown"
