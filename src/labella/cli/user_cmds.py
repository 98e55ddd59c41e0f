"""`labella user|token|member ...`: accounts from the command line, and the site owner that the
server creates on its first start.

These commands work on the database directly (like every other local command): whoever can run
them on the server's machine already holds the data. What they change is audited with the actor
``cli:<operating-system user>``.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated, Any

import typer

from labella.cli.main import app, fail, friendly_errors, open_database, resolve_project
from labella.config import Settings

user_app = typer.Typer(help="Create and list users, set passwords.", no_args_is_help=True)
token_app = typer.Typer(
    help="API tokens for scripts (shown once, revocable).", no_args_is_help=True
)
member_app = typer.Typer(help="Who works on a project, and in which role.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(member_app, name="member")

ROLE_HELP = "owner, manager, reviewer or annotator"


def cli_actor() -> str:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        who = str(os.getuid())
    return f"cli:{who}"


def interactive() -> bool:
    return sys.stdin.isatty()


def read_password(*, from_stdin: bool, username: str) -> str:
    """A new password: one line of stdin, or typed twice at a terminal; checked before use."""
    from labella.services import accounts

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif interactive():
        password = typer.prompt(
            f"Password for {username}", hide_input=True, confirmation_prompt=True
        )
    else:
        fail("no password given: use --password-stdin, or run the command in a terminal")
        raise AssertionError  # fail() exits
    accounts.check_password(password, username=username)
    return password


@user_app.command("create")
@friendly_errors
def create_user(
    username: Annotated[str, typer.Argument(help="Letters, digits and . _ - @ +")],
    admin: Annotated[
        bool, typer.Option("--admin", help="A site administrator (creates users and projects)")
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
) -> None:
    """Create a user (asks for the password twice at a terminal)."""
    from labella.services import accounts

    name = accounts.clean_username(username)
    password = read_password(from_stdin=password_stdin, username=name)
    _, db = open_database()
    try:
        user = accounts.create_user(db, name, password=password, is_admin=admin, actor=cli_actor())
    finally:
        db.dispose()
    kind = "site administrator" if user.is_admin else "user"
    typer.echo(f"Created {kind} {user.username!r} (id {user.id}).")


@user_app.command("list")
@friendly_errors
def list_users() -> None:
    """Every user, with whether they are administrators and active."""
    from labella.services import accounts

    _, db = open_database()
    try:
        users = accounts.list_users(db)
    finally:
        db.dispose()
    if not users:
        typer.echo("No users yet: `labella user create NAME --admin`.")
    for user in users:
        flags = [f for f, on in (("admin", user.is_admin), ("inactive", not user.is_active)) if on]
        suffix = f"  ({', '.join(flags)})" if flags else ""
        typer.echo(f"{user.id:>4}  {user.username}{suffix}")


@user_app.command("password")
@friendly_errors
def set_password(
    username: Annotated[str, typer.Argument()],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
) -> None:
    """Set a new password for a user (signs them out of every browser)."""
    from labella.services import accounts

    password = read_password(from_stdin=password_stdin, username=username)
    _, db = open_database()
    try:
        accounts.set_password(db, username, password, actor=cli_actor())
    finally:
        db.dispose()
    typer.echo(f"Password of {username!r} changed.")


@user_app.command("deactivate")
@friendly_errors
def deactivate(username: Annotated[str, typer.Argument()]) -> None:
    """Stop a user from signing in; their sessions and tokens stop working at once."""
    from labella.services import accounts

    _, db = open_database()
    try:
        accounts.set_active(db, username, False, actor=cli_actor())
    finally:
        db.dispose()
    typer.echo(f"{username!r} can no longer sign in.")


@token_app.command("create")
@friendly_errors
def create_token(
    username: Annotated[str, typer.Argument(help="Whose token")],
    name: Annotated[str, typer.Option("--name", "-n", help="What uses it, e.g. 'nightly export'")],
) -> None:
    """Make an API token; its secret is printed this once."""
    from labella.services import accounts

    _, db = open_database()
    try:
        issued = accounts.create_token(db, username, name=name, actor=cli_actor())
    finally:
        db.dispose()
    typer.echo(issued.secret)
    typer.echo(
        f"Token {issued.info.id} ({name!r}) for {username!r}. Copy it now: it is not shown again. "
        "Send it as 'Authorization: Bearer <token>'.",
        err=True,
    )


@token_app.command("list")
@friendly_errors
def list_tokens(
    username: Annotated[str | None, typer.Argument(help="Only this user's")] = None,
) -> None:
    """Tokens (never their secrets), newest first."""
    from labella.services import accounts

    _, db = open_database()
    try:
        tokens = accounts.list_tokens(db, username)
    finally:
        db.dispose()
    for token in tokens:
        state = "revoked" if token.revoked_at else "active"
        typer.echo(f"{token.id:>4}  {token.prefix}…  {token.username}  {token.name!r}  {state}")


@token_app.command("revoke")
@friendly_errors
def revoke_token(
    token_id: Annotated[int, typer.Argument(help="The id `token list` shows")],
) -> None:
    """Revoke a token at once."""
    from labella.services import accounts

    _, db = open_database()
    try:
        token = accounts.revoke_token(db, token_id, actor=cli_actor())
    finally:
        db.dispose()
    typer.echo(f"Token {token.id} ({token.name!r}) of {token.username!r} is revoked.")


@member_app.command("add")
@friendly_errors
def add_member(
    project: Annotated[str, typer.Argument(help="Project id or name")],
    username: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Option("--role", "-r", help=ROLE_HELP)] = "annotator",
) -> None:
    """Add a user to a project with a role (or change the role of a member)."""
    from labella.errors import Conflict
    from labella.services import accounts

    _, db = open_database()
    try:
        pid = resolve_project(db, project).id
        try:
            member = accounts.add_member(db, pid, username, role, actor=cli_actor())
            verb = "added as"
        except Conflict:
            member = accounts.change_role(db, pid, username, role, actor=cli_actor())
            verb = "is now"
    finally:
        db.dispose()
    typer.echo(f"{member.username} {verb} {member.role} of project {pid}.")


@member_app.command("list")
@friendly_errors
def list_members(project: Annotated[str, typer.Argument(help="Project id or name")]) -> None:
    from labella.services import accounts

    _, db = open_database()
    try:
        pid = resolve_project(db, project).id
        members = accounts.list_members(db, pid)
    finally:
        db.dispose()
    for member in members:
        typer.echo(f"{member.username}  {member.role}")


@member_app.command("remove")
@friendly_errors
def remove_member(
    project: Annotated[str, typer.Argument(help="Project id or name")],
    username: Annotated[str, typer.Argument()],
) -> None:
    from labella.services import accounts

    _, db = open_database()
    try:
        pid = resolve_project(db, project).id
        accounts.remove_member(db, pid, username, actor=cli_actor())
    finally:
        db.dispose()
    typer.echo(f"{username} is no longer a member of project {pid}.")


# -- the first start -------------------------------------------------------------------------------
def ensure_site_owner(settings: Settings, db: Any) -> None:
    """On a server's first start (no user at all), create the site owner, never with a built-in
    password: LABELLA_OWNER_USERNAME / LABELLA_OWNER_PASSWORD when set; else, at a terminal, ask;
    else make a random password and print it this once."""
    from labella.services import accounts

    if accounts.count_users(db) > 0:
        return
    username = settings.owner_username
    password = settings.owner_password
    if username is None:
        username = (
            typer.prompt("No users yet. Site owner's username", default="owner")
            if (interactive())
            else "owner"
        )
    username = accounts.clean_username(username)
    if password is None and interactive():
        password = read_password(from_stdin=False, username=username)
    created = accounts.ensure_first_owner(db, username=username, password=password)
    if created is None:  # another process made the first user meanwhile
        return
    user, generated = created
    typer.echo(f"Created the site owner {user.username!r}.")
    if generated is not None:
        typer.echo(
            f"  Sign in as {user.username!r} with the password {generated}\n"
            "  (shown only now; change it on the account page or with `labella user password`)."
        )


def ensure_demo_owner(db: Any, project_id: int) -> str:
    """The demo's account: user ``demo`` with a fresh random password (printed by the caller),
    owner of the demo project; a site administrator when it is the installation's first user."""
    from labella.errors import Conflict
    from labella.services import accounts

    password = accounts.generate_password("demo")
    first = accounts.count_users(db) == 0
    try:
        accounts.create_user(db, "demo", password=password, is_admin=first, actor=cli_actor())
    except Conflict:
        accounts.set_password(db, "demo", password, actor=cli_actor())
    try:
        accounts.add_member(db, project_id, "demo", "owner", actor=cli_actor())
    except Conflict:
        accounts.change_role(db, project_id, "demo", "owner", actor=cli_actor())
    return password
