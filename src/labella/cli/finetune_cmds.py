"""`labella finetune`: fine-tune a project's encoder (text or images) on its labels, then retrain
on it."""

from __future__ import annotations

from typing import Annotated

import typer

from labella.cli.main import app, fail, friendly_errors, open_database, resolve_project


@app.command()
@friendly_errors
def finetune(
    project: Annotated[str, typer.Argument(help="Project id or name")],
    method: Annotated[
        str | None,
        typer.Option(
            help="Text: classifier (end to end with cross-entropy; the default) or setfit "
            "(contrastive sentence pairs; the default when --iterations or --max-pairs is given)"
        ),
    ] = None,
    iterations: Annotated[
        int | None,
        typer.Option(help="Text, SetFit: pair rounds (R, default 20)", min=1, max=100),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Passes over the labels (text, classifier: 1-30, default 8), the pairs "
            "(SetFit: 1-10, default 1) or the labelled images (images: 1-50, default 15)",
            min=1,
            max=50,
        ),
    ] = None,
    max_pairs: Annotated[
        int | None, typer.Option(help="Text, SetFit: cap on training pairs (default 8000)", min=2)
    ] = None,
    members: Annotated[
        int | None,
        typer.Option(
            help="Text: copies of the encoder fine-tuned side by side, each with its own seed "
            "(default 2 for the classifier method, 1 for SetFit; each copy takes the time of one)",
            min=1,
            max=5,
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            help="Images: side in pixels the network sees (default 224; smaller is faster)",
            min=32,
            max=512,
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Run it here and wait (default), or only queue it"),
    ] = True,
) -> None:
    """Fine-tune the project's encoder on its human labels (text: end to end as a classifier, or
    SetFit; images: EfficientNet-Lite0 end to end), switch the project to it, re-encode the items
    and retrain. Takes minutes on a CPU (images: tens of minutes for a few hundred labels)."""
    from labella.cli.model_cmds import _active_job, _first_job_after, _follow_job, _print_metrics
    from labella.errors import NotReady
    from labella.services import finetuning
    from labella.storage import repositories as repo
    from labella.storage.models import JobStatus

    settings, db = open_database()
    try:
        found = resolve_project(db, project)
        params = {
            "method": method,
            "n_iterations": iterations,
            "epochs": epochs,
            "max_pairs": max_pairs,
            "members": members,
            "image_size": image_size,
        }
        try:
            job = finetuning.request_finetune(db, settings, found.id, params=params, actor="cli")
        except NotReady:
            # labels waiting for their embeddings: with no server around, encode them here first
            pending = _active_job(db, found.id, "encode") if wait else None
            if pending is None:
                raise
            typer.echo(f"encoding the items of {found.name!r} first (job {pending})")
            encoded = _follow_job(db, settings, pending)
            if encoded.status != JobStatus.SUCCEEDED:
                fail(f"encode job {pending} {encoded.status}: {encoded.error or encoded.message}")
            job = finetuning.request_finetune(db, settings, found.id, params=params, actor="cli")
        if not wait:
            typer.echo(f"queued fine-tuning job {job.id} for {found.name!r}")
            return
        finished = _follow_job(db, settings, job.id)
        if finished.status != JobStatus.SUCCEEDED:
            fail(
                f"fine-tuning job {job.id} {finished.status}: {finished.error or finished.message}"
            )
        typer.echo(finished.message)
        # then what it queued: the training on the new vectors (after an encode job, if items
        # arrived meanwhile, which queues the training itself)
        followup = (finished.result or {}).get("followup_job_id")
        while followup is not None:
            after = _follow_job(db, settings, int(followup))
            if after.status != JobStatus.SUCCEEDED:
                fail(f"{after.kind} job {after.id} {after.status}: {after.error or after.message}")
            typer.echo(after.message)
            followup = None
            if after.kind == "encode":
                followup = _first_job_after(db, found.id, "train", after.id)
        with db.reader() as session:
            model_version = repo.latest_model_version(session, found.id)
        if model_version is not None:
            _print_metrics(model_version)
    finally:
        db.dispose()
