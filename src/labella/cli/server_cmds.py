"""`labella serve`: the API server with its in-process job worker; `labella worker`: the job
worker alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labella.cli.main import app, friendly_errors
from labella.config import Settings


def run_server(settings: Settings) -> None:
    import uvicorn

    from labella.api.app import create_app

    settings.ensure_dirs()
    typer.echo(f"Labella is running at http://{settings.host}:{settings.port}/  (API docs: /docs)")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


@app.command()
@friendly_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the database and caches live")
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run background jobs here")
    ] = False,
) -> None:
    """Start the server (the schema is upgraded at start)."""
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if no_worker:
        overrides["run_worker"] = False
    from labella.cli.main import open_database
    from labella.cli.user_cmds import ensure_site_owner

    settings, db = open_database(Settings(**overrides))  # type: ignore[arg-type]
    try:
        # a fresh installation gets its owner now, never a built-in default password
        ensure_site_owner(settings, db)
    finally:
        db.dispose()
    run_server(settings)


@app.command()
@friendly_errors
def worker(
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the database and caches live")
    ] = None,
) -> None:
    """Run the background jobs, for servers started with --no-worker, until stopped (Ctrl-C or
    SIGTERM): a thread per lane, as in the server (the main lane; the fast lane of online
    updates; the lane of encoder fine-tunings, so that they never hold up a training)."""
    import signal
    import threading

    from labella.cli.main import open_database
    from labella.jobs import executors  # noqa: F401  (registers the job kinds)
    from labella.jobs.worker import Worker

    overrides: dict[str, object] = {} if data_dir is None else {"data_dir": data_dir}
    settings, db = open_database(Settings(**overrides))  # type: ignore[arg-type]
    runner = Worker(db, settings)
    stop = threading.Event()
    # both signals set the event, SIGINT included: a process started in the background by a
    # non-interactive shell inherits SIGINT ignored, and Python's KeyboardInterrupt never comes
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    runner.start()
    lanes = ", ".join(lane.name for lane in runner.lanes)
    typer.echo(f"worker {runner.worker_id} running lanes: {lanes} (Ctrl-C stops it)")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        # a job still running is re-queued by the next worker's orphan recovery
        runner.stop(timeout=10)
        db.dispose()
    typer.echo("worker stopped")


@app.command()
@friendly_errors
def demo(
    data: Annotated[
        Path | None, typer.Option(help="Your own CSV/TSV/JSONL/TXT file instead of BBC News")
    ] = None,
    classes: Annotated[
        str | None, typer.Option(help="Comma-separated classes, when --data has no labels")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Set the project up, do not serve")
    ] = False,
) -> None:
    """Set up a demo project (BBC News by default) and start the server on it."""
    from labella.cli.main import open_database
    from labella.cli.user_cmds import ensure_demo_owner
    from labella.services import demo as demo_service

    settings, db = open_database(Settings(port=port) if port is not None else None)
    try:
        if data is None:
            project = demo_service.prepare_bbc_demo(db, settings)
        else:
            project = demo_service.prepare_file_demo(
                db,
                settings,
                data,
                classes=[c.strip() for c in classes.split(",") if c.strip()] if classes else None,
            )
        password = ensure_demo_owner(db, project.project_id)
    finally:
        db.dispose()
    verb = "created" if project.created else "found"
    typer.echo(
        f"Demo project {project.name!r} {verb}: {project.items} items (id {project.project_id})."
    )
    typer.echo("Items can be labeled at once; they are embedded in the background.")
    typer.echo(
        f"Sign in as 'demo' with the password {password} "
        "(new on every `labella demo`; shown only now)."
    )
    if not no_serve:
        run_server(settings)
