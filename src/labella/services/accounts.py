"""Accounts: users and their passwords, browser sessions, API tokens, the failed-login limit and
project memberships.

Passwords are hashed with argon2id (``argon2-cffi``, RFC 9106 parameters). Session and token
secrets are long random strings; the database keeps only their SHA-256, which is enough for secrets
with 256 bits of entropy (a slow hash protects low-entropy passwords, not these) and lets a request
find its credential with one indexed lookup. Nothing here knows about HTTP.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from labella.errors import (
    Busy,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from labella.services import audit
from labella.storage.db import Database
from labella.storage.models import (
    MAX_ID,
    ApiToken,
    AuthSession,
    Job,
    Label,
    LoginAttempt,
    Project,
    ProjectMember,
    ProjectRole,
    UserAccount,
    utcnow,
)

log = logging.getLogger(__name__)

TOKEN_PREFIX = "lbl_"
MIN_PASSWORD_CHARS = 10
USERNAME_MAX_CHARS = 200
_USERNAME_CHARS = set(string.ascii_letters + string.digits + "._-@+")
# Passwords so common that a length rule alone would let them through.
_COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password12",
        "password123",
        "1234567890",
        "12345678910",
        "0123456789",
        "qwertyuiop",
        "qwerty1234",
        "1q2w3e4r5t",
        "iloveyou12",
        "letmein123",
        "welcome123",
        "administrator",
        "changeme123",
        "labella123",
    }
)

if TYPE_CHECKING:
    from argon2 import PasswordHasher

Via = Literal["token", "session", "local"]


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    is_admin: bool
    is_active: bool
    created_at: datetime


@dataclass(frozen=True)
class Principal:
    """Who a request (or a local command) acts as, and by which credential."""

    id: int
    username: str
    is_admin: bool
    via: Via
    credential_id: int | None = None
    csrf_token: str | None = None  # sessions only: state-changing requests must echo it


@dataclass(frozen=True)
class LoginResult:
    user: UserInfo
    session_secret: str  # goes into the cookie; never stored
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenInfo:
    id: int
    username: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedToken:
    """A new API token; ``secret`` is shown once and cannot be recovered afterwards."""

    info: TokenInfo
    secret: str


@dataclass(frozen=True)
class MemberInfo:
    project_id: int
    user_id: int
    username: str
    role: str
    created_at: datetime


@dataclass(frozen=True)
class LoginLimits:
    """The failed-login rate limit: at most ``per_user`` failures for one username and
    ``per_client`` from one address within ``window_seconds``."""

    per_user: int = 5
    per_client: int = 20
    window_seconds: int = 900


# -- passwords -------------------------------------------------------------------------------------
def _hasher() -> PasswordHasher:
    # imported here: the CLI's commands that never touch a password do not load the C library
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    return str(_hasher().hash(password))


def verify_password(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def check_password(password: str, *, username: str = "") -> None:
    """Refuse empty, short and well-known passwords, with a message that says why."""
    if not password or not password.strip():
        raise InvalidInput("the password must not be empty")
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInput(
            f"the password is too short: use at least {MIN_PASSWORD_CHARS} characters"
        )
    lowered = password.lower()
    if lowered in _COMMON_PASSWORDS or len(set(password)) < 4:
        raise InvalidInput("the password is too easy to guess: choose a less common one")
    if username and username.lower() in lowered:
        raise InvalidInput("the password must not contain the username")


def generate_password(username: str = "") -> str:
    """A random password for accounts made without one (printed once, never stored plain)."""
    while True:
        password = secrets.token_urlsafe(15)  # 120 bits
        try:
            check_password(password, username=username)
        except InvalidInput:  # e.g. it happened to contain the username: draw again
            continue
        return password


def clean_username(username: str) -> str:
    name = username.strip()
    if not name:
        raise InvalidInput("the username must not be empty")
    if len(name) > USERNAME_MAX_CHARS:
        raise InvalidInput(f"the username must be at most {USERNAME_MAX_CHARS} characters")
    bad = sorted(set(name) - _USERNAME_CHARS)
    if bad:
        raise InvalidInput(
            f"the username {name!r} has characters that are not allowed ({''.join(bad)!r}); "
            "use letters, digits and . _ - @ +"
        )
    return name


# -- users -----------------------------------------------------------------------------------------
def _user_info(user: UserAccount) -> UserInfo:
    return UserInfo(
        id=user.id,
        username=user.username,
        is_admin=user.is_admin,
        is_active=user.is_active,
        created_at=user.created_at,
    )


def _find_user(session: Session, username: str) -> UserAccount | None:
    return session.scalar(select(UserAccount).where(UserAccount.username == username))


def _get_user(session: Session, username: str) -> UserAccount:
    user = _find_user(session, username)
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def create_user(
    db: Database,
    username: str,
    *,
    password: str | None = None,
    password_hash: str | None = None,
    is_admin: bool = False,
    actor: str,
) -> UserInfo:
    """A new active user. Give ``password`` (checked and hashed here) or an argon2
    ``password_hash`` made elsewhere (moving accounts from another installation)."""
    name = clean_username(username)
    if (password is None) == (password_hash is None):
        raise InvalidInput("give exactly one of password or password_hash")
    if password is not None:
        check_password(password, username=name)
        password_hash = hash_password(password)
    assert password_hash is not None
    with db.transaction() as session:
        if _find_user(session, name) is not None:
            raise Conflict(f"a user named {name!r} already exists")
        user = UserAccount(username=name, password_hash=password_hash, is_admin=is_admin)
        session.add(user)
        session.flush()
        audit.record(
            session, actor=actor, action="user.create", detail={"username": name, "admin": is_admin}
        )
        return _user_info(user)


def count_users(db: Database) -> int:
    with db.reader() as session:
        return int(session.scalar(select(func.count()).select_from(UserAccount)) or 0)


def list_users(db: Database) -> list[UserInfo]:
    with db.reader() as session:
        return [
            _user_info(u) for u in session.scalars(select(UserAccount).order_by(UserAccount.id))
        ]


def get_user(db: Database, username: str) -> UserInfo:
    with db.reader() as session:
        return _user_info(_get_user(session, username))


def set_password(db: Database, username: str, password: str, *, actor: str) -> None:
    """A new password; every browser session of the user is signed out."""
    check_password(password, username=username)
    password_hash = hash_password(password)
    with db.transaction() as session:
        user = _get_user(session, username)
        user.password_hash = password_hash
        _revoke_sessions(session, user.id)
        audit.record(session, actor=actor, action="user.password", detail={"username": username})


def change_own_password(db: Database, user: Principal, *, current: str, new: str) -> None:
    with db.reader() as session:
        account = _get_user(session, user.username)
    if not verify_password(account.password_hash, current):
        raise Forbidden("the current password is wrong")
    set_password(db, user.username, new, actor=user.username)


def set_active(db: Database, username: str, active: bool, *, actor: str) -> UserInfo:
    """Deactivate (or reactivate) a user: a deactivated user's sessions and tokens stop working."""
    if not active and actor == username:
        raise Conflict("you cannot deactivate your own account; ask another administrator")
    with db.transaction() as session:
        user = _get_user(session, username)
        user.is_active = active
        if not active:
            _revoke_sessions(session, user.id)
        audit.record(
            session,
            actor=actor,
            action="user.activate" if active else "user.deactivate",
            detail={"username": username},
        )
        return _user_info(user)


def ensure_first_owner(
    db: Database, *, username: str, password: str | None = None
) -> tuple[UserInfo, str | None] | None:
    """On a fresh installation (no user at all), create the site administrator. Returns the user
    and, when no password was given, the generated one (to show once), or None when users exist.
    """
    if count_users(db) > 0:
        return None
    generated = None
    if password is None:
        generated = password = generate_password(username)
    user = create_user(db, username, password=password, is_admin=True, actor="system")
    return user, generated


# -- sign-in and sessions --------------------------------------------------------------------------
def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


# Verified against when the username is unknown, so that a wrong username costs as much time as a
# wrong password and the answer's timing does not tell which accounts exist.
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def _retry_after(
    session: Session,
    column: InstrumentedAttribute[str],
    value: str,
    limit: int,
    since: datetime,
    now: datetime,
) -> int | None:
    """Seconds until the oldest counted failure leaves the window, if the limit is reached."""
    failures = list(
        session.scalars(
            select(LoginAttempt.created_at)
            .where(
                column == value,
                LoginAttempt.succeeded.is_(False),
                LoginAttempt.created_at >= since,
            )
            .order_by(LoginAttempt.created_at.desc())
            .limit(limit)
        )
    )
    if len(failures) < limit:
        return None
    oldest = _as_utc(failures[-1])
    window = now - since
    return max(1, int((oldest + window - now).total_seconds()) + 1)


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands timezone-aware columns back naive (in UTC)
    from datetime import UTC

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def login(
    db: Database,
    username: str,
    password: str,
    *,
    client: str,
    limits: LoginLimits | None = None,
    session_days: float = 14,
) -> LoginResult:
    """Check a username and password and open a browser session.

    Failed attempts are counted per username and per client address; past the limit every
    attempt is refused with :class:`TooManyRequests` (even a right password) until the window
    has moved on. A wrong username and a wrong password get the same answer.
    """
    limits = limits or LoginLimits()
    name = username.strip()[:USERNAME_MAX_CHARS]
    client = client[:100]
    now = utcnow()
    since = now - timedelta(seconds=limits.window_seconds)
    with db.reader() as session:
        # the limit is checked before the password so that guessing past it learns nothing
        waits = [
            _retry_after(session, LoginAttempt.username, name, limits.per_user, since, now),
            _retry_after(session, LoginAttempt.client, client, limits.per_client, since, now),
        ]
        user = _find_user(session, name) if name else None
    wait = max((w for w in waits if w is not None), default=None)
    if wait is not None:
        raise TooManyRequests(
            f"too many failed sign-ins; try again in {wait} seconds", retry_after=wait
        )
    ok = verify_password(user.password_hash if user else _dummy_hash(), password)
    ok = ok and user is not None and user.is_active
    result: LoginResult | None = None
    with db.transaction() as session:
        session.execute(delete(LoginAttempt).where(LoginAttempt.created_at < since))
        session.add(LoginAttempt(username=name, client=client, succeeded=ok, created_at=now))
        if ok and user is not None:
            # a success clears the user's failures: the limit is about guessing, not typos
            session.execute(
                delete(LoginAttempt).where(
                    LoginAttempt.username == name, LoginAttempt.succeeded.is_(False)
                )
            )
            secret = secrets.token_urlsafe(32)
            csrf = secrets.token_urlsafe(32)
            expires = now + timedelta(days=session_days)
            session.add(
                AuthSession(
                    user_id=user.id,
                    session_hash=_digest(secret),
                    csrf_token=csrf,
                    created_at=now,
                    expires_at=expires,
                )
            )
            audit.record(
                session, actor=user.username, action="auth.login", detail={"client": client}
            )
            result = LoginResult(
                user=_user_info(user), session_secret=secret, csrf_token=csrf, expires_at=expires
            )
    if result is None:
        # the same answer for an unknown user, a wrong password and a deactivated account
        raise Unauthorized("wrong username or password")
    return result


def logout(db: Database, session_secret: str) -> None:
    with db.transaction() as session:
        row = session.scalar(
            select(AuthSession).where(AuthSession.session_hash == _digest(session_secret))
        )
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()


def _revoke_sessions(session: Session, user_id: int) -> None:
    for row in session.scalars(
        select(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
    ):
        row.revoked_at = utcnow()


def resolve_session(db: Database, session_secret: str) -> Principal | None:
    """The signed-in user of a session cookie, or None if it is unknown, expired or revoked."""
    with db.reader() as session:
        row = session.execute(
            select(AuthSession, UserAccount)
            .join(UserAccount, UserAccount.id == AuthSession.user_id)
            .where(AuthSession.session_hash == _digest(session_secret))
        ).first()
    if row is None:
        return None
    auth, user = row
    if auth.revoked_at is not None or _as_utc(auth.expires_at) <= utcnow() or not user.is_active:
        return None
    return Principal(
        id=user.id,
        username=user.username,
        is_admin=user.is_admin,
        via="session",
        credential_id=auth.id,
        csrf_token=auth.csrf_token,
    )


# -- API tokens ------------------------------------------------------------------------------------
# last_used_at is written at most this often per token, so that a script's requests do not each
# turn into a write (SQLite has one writer at a time).
_TOKEN_TOUCH_SECONDS = 60


def _token_info(token: ApiToken, username: str) -> TokenInfo:
    return TokenInfo(
        id=token.id,
        username=username,
        name=token.name,
        prefix=token.prefix,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


def create_token(db: Database, username: str, *, name: str, actor: str) -> IssuedToken:
    """A new API token for ``username``; the secret is in the answer only."""
    label = name.strip()
    if not label:
        raise InvalidInput("the token needs a name (what script or machine uses it)")
    if len(label) > 200:
        raise InvalidInput("the token name must be at most 200 characters")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.transaction() as session:
        user = _get_user(session, username)
        token = ApiToken(
            user_id=user.id,
            name=label,
            token_hash=_digest(secret),
            prefix=secret[: len(TOKEN_PREFIX) + 6],
        )
        session.add(token)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="token.create",
            detail={"username": user.username, "token_id": token.id, "name": label},
        )
        return IssuedToken(info=_token_info(token, user.username), secret=secret)


def list_tokens(db: Database, username: str | None = None) -> list[TokenInfo]:
    """Tokens of one user (or of everyone), newest first; secrets are never listed."""
    with db.reader() as session:
        query = (
            select(ApiToken, UserAccount.username)
            .join(UserAccount, UserAccount.id == ApiToken.user_id)
            .order_by(ApiToken.id.desc())
        )
        if username is not None:
            query = query.where(UserAccount.username == username)
        return [_token_info(t, u) for t, u in session.execute(query).all()]


def revoke_token(db: Database, token_id: int, *, actor: str, owner: str | None = None) -> TokenInfo:
    """Revoke a token at once. With ``owner``, only that user's token (others read as missing)."""
    if not 1 <= token_id <= MAX_ID:  # no row has it, and the drivers raise on it
        raise NotFound(f"token {token_id} does not exist")
    with db.transaction() as session:
        row = session.execute(
            select(ApiToken, UserAccount.username)
            .join(UserAccount, UserAccount.id == ApiToken.user_id)
            .where(ApiToken.id == token_id)
        ).first()
        if row is None or (owner is not None and row[1] != owner):
            raise NotFound(f"token {token_id} does not exist")
        token, username = row
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            audit.record(
                session,
                actor=actor,
                action="token.revoke",
                detail={"username": username, "token_id": token.id, "name": token.name},
            )
        return _token_info(token, username)


def authenticate_token(db: Database, secret: str) -> Principal | None:
    """The user of an API token, or None if the token is unknown or revoked."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    digest = _digest(secret)
    with db.reader() as session:
        row = session.execute(
            select(ApiToken, UserAccount)
            .join(UserAccount, UserAccount.id == ApiToken.user_id)
            .where(ApiToken.token_hash == digest)
        ).first()
    if row is None:
        return None
    token, user = row
    if token.revoked_at is not None or not user.is_active:
        return None
    now = utcnow()
    last = token.last_used_at
    if last is None or (now - _as_utc(last)).total_seconds() > _TOKEN_TOUCH_SECONDS:
        try:
            with db.transaction(wait=False) as session:
                stored = session.get(ApiToken, token.id)
                if stored is not None:
                    stored.last_used_at = now
        except Busy:
            # Bookkeeping only: a busy store (a large import writing) must not refuse the token;
            # a later request records the use.
            log.info("token %d used while the store was busy; last use not recorded", token.id)
    return Principal(
        id=user.id,
        username=user.username,
        is_admin=user.is_admin,
        via="token",
        credential_id=token.id,
    )


# -- project memberships ---------------------------------------------------------------------------
def project_role(db: Database, project_id: int, user: Principal) -> str | None:
    """The user's role in a project; site administrators are owners of every project. None when
    the user is not a member or the project does not exist (the two read the same)."""
    with db.reader() as session:
        if user.is_admin:
            exists = session.scalar(select(Project.id).where(Project.id == project_id))
            return ProjectRole.OWNER.value if exists is not None else None
        return session.scalar(
            select(ProjectMember.role).where(
                ProjectMember.project_id == project_id, ProjectMember.user_id == user.id
            )
        )


def visible_project_ids(db: Database, user: Principal) -> set[int] | None:
    """Projects the user may see; None means all of them (site administrators)."""
    if user.is_admin:
        return None
    with db.reader() as session:
        return set(
            session.scalars(
                select(ProjectMember.project_id).where(ProjectMember.user_id == user.id)
            )
        )


def project_roles(db: Database, user: Principal) -> dict[int, str]:
    """project id -> the user's role, for every project the user belongs to."""
    with db.reader() as session:
        if user.is_admin:
            return {pid: ProjectRole.OWNER.value for pid in session.scalars(select(Project.id))}
        rows = session.execute(
            select(ProjectMember.project_id, ProjectMember.role).where(
                ProjectMember.user_id == user.id
            )
        ).all()
        return {pid: role for pid, role in rows}


def job_project_id(db: Database, job_id: int) -> int | None:
    """The project a job belongs to (None when the job is missing or belongs to none)."""
    with db.reader() as session:
        return session.scalar(select(Job.project_id).where(Job.id == job_id))


def _check_role(role: str) -> ProjectRole:
    try:
        return ProjectRole(role.strip().lower())
    except ValueError:
        roles = ", ".join(r.value for r in ProjectRole)
        raise InvalidInput(f"unknown role {role!r}; choose one of: {roles}") from None


def _member_info(member: ProjectMember, username: str) -> MemberInfo:
    return MemberInfo(
        project_id=member.project_id,
        user_id=member.user_id,
        username=username,
        role=member.role,
        created_at=member.created_at,
    )


def list_members(db: Database, project_id: int) -> list[MemberInfo]:
    with db.reader() as session:
        rows = session.execute(
            select(ProjectMember, UserAccount.username)
            .join(UserAccount, UserAccount.id == ProjectMember.user_id)
            .where(ProjectMember.project_id == project_id)
            .order_by(ProjectMember.id)
        ).all()
        return [_member_info(m, u) for m, u in rows]


def add_owner(session: Session, project_id: int, user_id: int) -> None:
    """Make a project's creator its owner, inside the transaction that creates the project."""
    session.add(ProjectMember(project_id=project_id, user_id=user_id, role=ProjectRole.OWNER))


def _owner_guard(actor_role: str, *roles: str | None) -> None:
    # managers run the team but cannot make, unmake or remove owners: that is the owners' call
    if actor_role != ProjectRole.OWNER and ProjectRole.OWNER in roles:
        raise Forbidden(
            "only a project owner may grant, change or remove the owner role "
            "(permission 'delete_project')"
        )


def _count_owners(session: Session, project_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                ProjectMember.project_id == project_id, ProjectMember.role == ProjectRole.OWNER
            )
        )
        or 0
    )


def add_member(
    db: Database,
    project_id: int,
    username: str,
    role: str,
    *,
    actor: str,
    actor_role: str = ProjectRole.OWNER,
) -> MemberInfo:
    """Add an existing user to a project with a role (``actor_role`` is the caller's own role)."""
    new_role = _check_role(role)
    _owner_guard(actor_role, new_role)
    with db.transaction() as session:
        _lock_project(session, project_id)
        user = _get_user(session, username.strip())
        existing = session.scalar(
            select(ProjectMember).where(
                ProjectMember.project_id == project_id, ProjectMember.user_id == user.id
            )
        )
        if existing is not None:
            raise Conflict(
                f"{user.username!r} is already a member of project {project_id} "
                f"({existing.role}); change their role instead"
            )
        member = ProjectMember(project_id=project_id, user_id=user.id, role=new_role.value)
        session.add(member)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="member.add",
            project_id=project_id,
            detail={"username": user.username, "role": new_role.value},
        )
        return _member_info(member, user.username)


def _get_member(session: Session, project_id: int, username: str) -> ProjectMember:
    member = session.scalar(
        select(ProjectMember)
        .join(UserAccount, UserAccount.id == ProjectMember.user_id)
        .where(ProjectMember.project_id == project_id, UserAccount.username == username)
    )
    if member is None:
        raise NotFound(f"{username!r} is not a member of project {project_id}")
    return member


def _lock_project(session: Session, project_id: int) -> None:
    query = select(Project.id).where(Project.id == project_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()  # serialises membership changes (the last-owner rule)
    if session.scalar(query) is None:
        raise NotFound(f"project {project_id} does not exist")


def change_role(
    db: Database,
    project_id: int,
    username: str,
    role: str,
    *,
    actor: str,
    actor_role: str = ProjectRole.OWNER,
) -> MemberInfo:
    new_role = _check_role(role)
    with db.transaction() as session:
        _lock_project(session, project_id)
        member = _get_member(session, project_id, username)
        old = member.role
        _owner_guard(actor_role, old, new_role)
        demoting_owner = old == ProjectRole.OWNER and new_role != ProjectRole.OWNER
        if demoting_owner and _count_owners(session, project_id) <= 1:
            raise Conflict(
                f"{username!r} is the project's last owner; make someone else owner first"
            )
        if old != new_role:
            member.role = new_role.value
            audit.record(
                session,
                actor=actor,
                action="member.role",
                project_id=project_id,
                detail={"username": username, "from": old, "to": new_role.value},
            )
        return _member_info(member, username)


def remove_member(
    db: Database,
    project_id: int,
    username: str,
    *,
    actor: str,
    actor_role: str = ProjectRole.OWNER,
) -> None:
    with db.transaction() as session:
        _lock_project(session, project_id)
        member = _get_member(session, project_id, username)
        _owner_guard(actor_role, member.role)
        if member.role == ProjectRole.OWNER and _count_owners(session, project_id) <= 1:
            raise Conflict(
                f"{username!r} is the project's last owner; make someone else owner first"
            )
        session.delete(member)
        audit.record(
            session,
            actor=actor,
            action="member.remove",
            project_id=project_id,
            detail={"username": username, "role": member.role},
        )


# -- what an annotator may label -------------------------------------------------------------------
def item_served_to(db: Database, project_id: int, item_id: int, username: str) -> bool:
    """Whether an item was served to ``username`` (leased to them, directly or as one of the
    annotators of an overlapped item) or already carries an answer of theirs (they may correct
    their own work). Annotators may label only such items; roles with ``change_labels`` any."""
    with db.reader() as session:
        from labella.storage.models import Item, ItemAssignment

        row = session.execute(
            select(Item.leased_by).where(Item.id == item_id, Item.project_id == project_id)
        ).first()
        if row is None:
            raise NotFound(f"item {item_id} does not exist in project {project_id}")
        if row.leased_by == username:
            return True
        assigned = session.scalar(
            select(ItemAssignment.id).where(
                ItemAssignment.item_id == item_id, ItemAssignment.annotator == username
            )
        )
        if assigned is not None:
            return True
        # an overlapped item is leased per annotator (services.assignment)
        from labella.storage.models import ItemAssignment

        if session.scalar(
            select(ItemAssignment.id).where(
                ItemAssignment.item_id == item_id, ItemAssignment.annotator == username
            )
        ):
            return True
        own = session.scalar(
            select(Label.id)
            .where(
                Label.item_id == item_id,
                Label.project_id == project_id,
                Label.annotator == username,
            )
            .limit(1)
        )
        return own is not None


def local_principal(db: Database, username: str | None = None) -> Principal:
    """Who a local command (the CLI, on the machine that holds the database) acts as: the named
    user, or the system itself."""
    if username is None:
        return Principal(id=0, username="system", is_admin=True, via="local")
    user = get_user(db, username)
    return Principal(id=user.id, username=user.username, is_admin=user.is_admin, via="local")


__all__ = [
    "IssuedToken",
    "LoginLimits",
    "LoginResult",
    "MemberInfo",
    "Principal",
    "TokenInfo",
    "UserInfo",
    "add_member",
    "authenticate_token",
    "change_role",
    "create_token",
    "create_user",
    "ensure_first_owner",
    "item_served_to",
    "list_members",
    "list_tokens",
    "list_users",
    "login",
    "logout",
    "project_role",
    "remove_member",
    "resolve_session",
    "revoke_token",
    "visible_project_ids",
]
