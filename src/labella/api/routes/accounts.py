"""Sign-in, the signed-in user, their API tokens, and the site administrator's user management."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from labella.api import auth
from labella.api.deps import MAX_ID, DbDep, PathId, SettingsDep
from labella.api.policy import ROLE_ACTIONS, AdminDep, CurrentUserDep, role_actions
from labella.api.schemas import (
    AuditEventOut,
    AuditPageOut,
    LoginIn,
    MeOut,
    PasswordChangeIn,
    TokenCreate,
    TokenCreatedOut,
    TokenOut,
    UserCreate,
    UserOut,
    UserPatch,
)
from labella.services import accounts, audit
from labella.services.accounts import Principal, UserInfo

router = APIRouter(tags=["accounts"])


def _me(db: DbDep, user: Principal, info: UserInfo, csrf_token: str | None) -> MeOut:
    return MeOut(
        user=UserOut.model_validate(info),
        via=user.via,
        csrf_token=csrf_token,
        roles=accounts.project_roles(db, user),
        permissions={role.value: role_actions(role) for role in ROLE_ACTIONS},
    )


@router.post(
    "/api/auth/login",
    response_model=MeOut,
    responses={
        401: {"description": "Wrong username or password (the same answer for both)"},
        429: {"description": "Too many failed sign-ins; the Retry-After header says how long"},
    },
)
def login(
    body: LoginIn, request: Request, response: Response, db: DbDep, settings: SettingsDep
) -> MeOut:
    """Sign in with a username and password: sets the session cookie and returns the CSRF token
    that state-changing requests must echo in the X-CSRF-Token header."""
    result = accounts.login(
        db,
        body.username,
        body.password,
        client=auth.client_address(request),
        limits=accounts.LoginLimits(
            per_user=settings.login_failures_per_user,
            per_client=settings.login_failures_per_client,
            window_seconds=settings.login_window_seconds,
        ),
        session_days=settings.session_days,
    )
    auth.set_session_cookie(
        response,
        request,
        settings,
        result.session_secret,
        max_age=int(settings.session_days * 86400),
    )
    principal = Principal(
        id=result.user.id,
        username=result.user.username,
        is_admin=result.user.is_admin,
        via="session",
        csrf_token=result.csrf_token,
    )
    return _me(db, principal, result.user, result.csrf_token)


@router.post("/api/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, db: DbDep, settings: SettingsDep, user: CurrentUserDep) -> Response:
    """End this browser session (an API token stays valid: revoke it instead)."""
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    if cookie:
        accounts.logout(db, cookie)
    answer = Response(status_code=status.HTTP_204_NO_CONTENT)
    auth.clear_session_cookie(answer, request, settings)
    return answer


@router.get("/api/auth/me", response_model=MeOut)
def me(db: DbDep, user: CurrentUserDep) -> MeOut:
    """Who is signed in, their CSRF token (sessions), their projects' roles and what each role
    may do."""
    return _me(db, user, accounts.get_user(db, user.username), user.csrf_token)


@router.post("/api/auth/password", status_code=status.HTTP_204_NO_CONTENT)
def change_password(body: PasswordChangeIn, db: DbDep, user: CurrentUserDep) -> Response:
    """Change one's own password (signs out every browser session of the user)."""
    accounts.change_own_password(db, user, current=body.current_password, new=body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- API tokens ------------------------------------------------------------------------------------
@router.get("/api/auth/tokens", response_model=list[TokenOut])
def list_tokens(db: DbDep, user: CurrentUserDep) -> list[TokenOut]:
    """Your API tokens, newest first (their secrets are never shown again)."""
    return [TokenOut.model_validate(t) for t in accounts.list_tokens(db, user.username)]


@router.post(
    "/api/auth/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenCreatedOut
)
def create_token(body: TokenCreate, db: DbDep, user: CurrentUserDep) -> TokenCreatedOut:
    """A new API token for scripts and the CLI; its secret is in this answer only."""
    issued = accounts.create_token(db, user.username, name=body.name, actor=user.username)
    return TokenCreatedOut(
        **TokenOut.model_validate(issued.info).model_dump(), secret=issued.secret
    )


@router.delete("/api/auth/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: PathId, db: DbDep, user: CurrentUserDep) -> TokenOut:
    """Revoke one of your tokens (a site administrator may revoke anyone's)."""
    owner = None if user.is_admin else user.username
    return TokenOut.model_validate(
        accounts.revoke_token(db, token_id, actor=user.username, owner=owner)
    )


# -- users (site administrators) -------------------------------------------------------------------
@router.get("/api/users", response_model=list[UserOut])
def list_users(db: DbDep, admin: AdminDep) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in accounts.list_users(db)]


@router.post("/api/users", status_code=status.HTTP_201_CREATED, response_model=UserOut)
def create_user(body: UserCreate, db: DbDep, admin: AdminDep) -> UserOut:
    user = accounts.create_user(
        db, body.username, password=body.password, is_admin=body.is_admin, actor=admin.username
    )
    return UserOut.model_validate(user)


@router.patch("/api/users/{username}", response_model=UserOut)
def update_user(username: str, body: UserPatch, db: DbDep, admin: AdminDep) -> UserOut:
    """Deactivate or reactivate a user, or set a new password for them."""
    if body.password is not None:
        accounts.set_password(db, username, body.password, actor=admin.username)
    if body.is_active is not None:
        return UserOut.model_validate(
            accounts.set_active(db, username, body.is_active, actor=admin.username)
        )
    return UserOut.model_validate(accounts.get_user(db, username))


@router.get("/api/audit", response_model=AuditPageOut)
def site_audit(
    db: DbDep,
    admin: AdminDep,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    action: Annotated[str | None, Query(max_length=60)] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100,
) -> AuditPageOut:
    """Events outside any project (sign-ins, users, tokens), newest first."""
    events = audit.list_events(db, None, before_id=before_id, action=action, limit=limit)
    return AuditPageOut(
        events=[AuditEventOut.model_validate(e) for e in events],
        next_before_id=events[-1].event_id if len(events) == limit else None,
    )
