"""`labella train`: train a new model version, here and now (or queue it for the server)."""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

import typer

from labella.cli.main import app, fail, friendly_errors, open_database, resolve_project

_POLL_SECONDS = 0.2


def _is_finished(db: Any, job_id: int) -> Any:
    """The job row when it has finished (succeeded, failed or cancelled), else None."""
    from labella.jobs import queue

    with db.reader() as session:
        job = queue.get_job(session, job_id)
    return None if job.status in queue.ACTIVE else job


def _follow_job(db: Any, settings: Any, job_id: int) -> Any:
    """Run queued jobs here, oldest first, until ``job_id`` has finished, drawing its progress.

    The worker thread stops as soon as that job is done, so no later job is left half-run when
    the command exits. If a server's worker claims the job first, this only watches it.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from labella.jobs import (
        executors,  # noqa: F401  (registers the job kinds)
        queue,
    )
    from labella.jobs.worker import Worker
    from labella.storage.models import JobStatus

    worker = Worker(db, settings)
    failure: list[BaseException] = []

    def drain() -> None:
        try:
            while _is_finished(db, job_id) is None and worker.run_once():
                pass
        except BaseException as exc:  # shown to the user below, instead of dying silently
            failure.append(exc)

    runner: threading.Thread | None = None
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task("queued", total=None)
        while True:
            with db.reader() as session:
                job = queue.get_job(session, job_id)
            if job.status not in queue.ACTIVE:
                bar.update(task, total=job.progress_total or 1, completed=job.progress_total or 1)
                if runner is not None:
                    runner.join()
                return job
            bar.update(
                task,
                description=job.message or str(job.status),
                total=job.progress_total or None,
                completed=job.progress_done,
            )
            if failure:
                raise failure[0]
            if job.status == JobStatus.QUEUED and (runner is None or not runner.is_alive()):
                runner = threading.Thread(target=drain, name="labella-cli-worker", daemon=True)
                runner.start()
            time.sleep(_POLL_SECONDS)


def _active_job(db: Any, project_id: int, kind: str) -> int | None:
    from labella.services.training import active_job

    with db.reader() as session:
        job = active_job(session, project_id, kind)
        return job.id if job is not None else None


def _first_job_after(db: Any, project_id: int, kind: str, after_id: int) -> int | None:
    from sqlalchemy import select

    from labella.storage.models import Job

    with db.reader() as session:
        job_id: int | None = session.scalar(
            select(Job.id)
            .where(Job.project_id == project_id, Job.kind == kind, Job.id > after_id)
            .order_by(Job.id)
            .limit(1)
        )
        return job_id


def _print_metrics(model_version: Any) -> None:
    metrics = model_version.metrics or {}
    typer.echo(f"model v{model_version.version}: {model_version.n_labels} labels")
    if metrics.get("detector"):  # a detector version (services.detection_training)
        _print_detection_metrics(metrics)
        return
    for key, title in (("accuracy", "accuracy"), ("macro_f1", "macro F1")):
        value = metrics.get(key)
        if isinstance(value, int | float):
            method = metrics.get("method", "k-fold cross-validation")
            typer.echo(f"  {title:<10} {value:.3f}  ({method})")
    per_class = metrics.get("per_class") or {}
    if isinstance(per_class, dict) and per_class:
        typer.echo(f"  {'class':<24} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}")
        for name, row in per_class.items():
            if not isinstance(row, dict):
                continue
            cells = [row.get(k) for k in ("precision", "recall", "f1")]
            shown = [f"{c:.3f}" if isinstance(c, int | float) else "-" for c in cells]
            support = row.get("support", "")
            typer.echo(f"  {name!s:<24} {shown[0]:>9} {shown[1]:>7} {shown[2]:>6} {support!s:>8}")
    seconds = metrics.get("train_seconds")
    if isinstance(seconds, int | float):
        typer.echo(f"  training took {seconds:.2f} s")


def _print_detection_metrics(metrics: dict[str, Any]) -> None:
    def shown(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, int | float) else "-"

    where = f"on {metrics.get('n_eval', 0)} images, {metrics.get('evaluated_on', '')}"
    typer.echo(f"  mAP@0.5 {shown(metrics.get('map50'))}  ({where})")
    typer.echo(f"  mAP@0.5:0.95 {shown(metrics.get('map50_95'))}")
    per_class = metrics.get("per_class") or {}
    if isinstance(per_class, dict) and per_class:
        typer.echo(f"  {'class':<24} {'AP@0.5':>7} {'AP@.5:.95':>9}")
        for name, row in per_class.items():
            if isinstance(row, dict):
                typer.echo(
                    f"  {name!s:<24} {shown(row.get('ap50')):>7} {shown(row.get('ap50_95')):>9}"
                )
    seconds = metrics.get("train_seconds")
    if isinstance(seconds, int | float):
        typer.echo(f"  training took {seconds:.2f} s")


@app.command()
@friendly_errors
def train(
    project: Annotated[str, typer.Argument(help="Project id or name")],
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Train here and wait (default), or only queue it"),
    ] = True,
) -> None:
    """Train a new model on the human labels, predict the unlabeled items and re-rank them."""
    from labella.errors import NotReady
    from labella.services import training
    from labella.storage import repositories as repo
    from labella.storage.models import JobStatus

    settings, db = open_database()
    try:
        found = resolve_project(db, project)
        project_id, name = found.id, found.name
        try:
            job_id = training.request_training(db, project_id).id
        except NotReady:
            # Labels waiting for their embeddings: with no server around, encode them here first.
            pending = _active_job(db, project_id, "encode") if wait else None
            if pending is None:
                raise
            typer.echo(f"encoding the items of {name!r} first (job {pending})")
            encoded = _follow_job(db, settings, pending)
            if encoded.status != JobStatus.SUCCEEDED:
                fail(f"encode job {pending} {encoded.status}: {encoded.error or encoded.message}")
            # the encode job queues a training itself when the labels allow one
            queued_by_encode = _first_job_after(db, project_id, "train", pending)
            job_id = queued_by_encode or training.request_training(db, project_id).id
        if not wait:
            typer.echo(f"queued training job {job_id} for {name!r}")
            return
        finished = _follow_job(db, settings, job_id)
        if finished.status != JobStatus.SUCCEEDED:
            fail(f"training job {job_id} {finished.status}: {finished.error or finished.message}")
        with db.reader() as session:
            model_version = repo.latest_model_version(session, project_id)
        typer.echo(finished.message)
        if model_version is not None:
            _print_metrics(model_version)
    finally:
        db.dispose()
