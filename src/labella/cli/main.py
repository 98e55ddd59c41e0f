"""The ``labella`` command line. Errors print one readable line and exit with status 1."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from labella.config import Settings
from labella.errors import LabellaError

app = typer.Typer(
    name="labella",
    help="Active-learning data labeling: label the items that teach the model most.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
project_app = typer.Typer(help="Create and list projects.", no_args_is_help=True)
app.add_typer(project_app, name="project")

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(func: F) -> F:
    """Turn domain errors (and missing files) into one line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LabellaError as exc:
            fail(exc.message)
        except FileNotFoundError as exc:
            fail(f"file not found: {exc.filename or exc}")
        except PermissionError as exc:
            fail(f"permission denied: {exc.filename or exc}")
        except OSError as exc:  # what the file system refuses: a name too long, a disk full, ...
            fail(_os_error_line(exc))
        except KeyboardInterrupt:
            fail("interrupted", code=130)
        return None

    return wrapper  # type: ignore[return-value]


# What the file system says, for the errors whose own words would puzzle a user.
_OS_REASONS = {
    errno.EEXIST: "it exists and is not a folder",
    errno.ENOTDIR: "a part of it is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
}


def _os_error_line(exc: OSError) -> str:
    reason = _OS_REASONS.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    return f"cannot use {exc.filename}: {reason}" if exc.filename else reason


def open_database(settings: Settings | None = None) -> tuple[Settings, Any]:
    """Settings plus a migrated database, for commands that work on the store directly."""
    from labella.storage.db import Database
    from labella.storage.migrate import upgrade_database

    settings = settings or Settings()
    settings.ensure_dirs()
    db = Database.from_settings(settings)
    upgrade_database(db.engine)
    return settings, db


def resolve_project(db: Any, ref: str) -> Any:
    """A project named on the command line by id or by name."""
    from labella.errors import NotFound
    from labella.services import projects as service
    from labella.storage.models import MAX_ID

    if ref.isdigit() and int(ref) <= MAX_ID:
        return service.get_project(db, int(ref))
    for project in service.list_projects(db):
        if project.name == ref:
            return project
    raise NotFound(f"no project named {ref!r}; see `labella project list`")


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="labella")


def _register_commands() -> None:
    # Each module adds its commands to `app` / `project_app` when imported.
    import labella.cli.data_cmds  # noqa: F401
    from labella.cli import (  # noqa: F401
        detection_al_cmds,
        finetune_cmds,
        loop_cmds,
        model_cmds,
        project_cmds,
        server_cmds,
        simulate_cmds,
        user_cmds,
    )


_register_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
