"""`labella next` (print the next batch to label), `labella autolabel` (flush confident items)."""

from __future__ import annotations

from typing import Annotated

import typer

from labella.cli.main import app, fail, friendly_errors, open_database, resolve_project


@app.command("next")
@friendly_errors
def next_batch(
    project: Annotated[str, typer.Argument(help="Project id or name")],
    n: Annotated[int, typer.Option("-n", "--n", help="How many items")] = 10,
    annotator: Annotated[str, typer.Option(help="Who the items are leased to")] = "cli",
) -> None:
    """Print (and lease) the next items to label, most informative first."""
    from labella.services import labeling

    settings, db = open_database()
    try:
        found = resolve_project(db, project)
        project_id, name = found.id, found.name
        items = labeling.next_batch(db, settings, project_id, n=n, annotator=annotator)
    finally:
        db.dispose()
    if not items:
        typer.echo(f"nothing left to label in {name!r}")
        return
    for item in items:
        text = " ".join((item.text or item.media_uri or "").split())
        if len(text) > 80:
            text = text[:79] + "…"
        guess = ""
        if item.prediction is not None:
            names = ",".join(c.name for c in item.prediction.classes) or "-"
            guess = f"  [model: {names} {item.prediction.confidence:.2f}]"
        typer.echo(f"{item.item_id:>8}  {item.reason:<28} {text}{guess}")


@app.command("autolabel")
@friendly_errors
def autolabel(
    project: Annotated[str, typer.Argument(help="Project id or name")],
    threshold: Annotated[
        float, typer.Option(help="Label items whose predicted probability is at least this")
    ] = 0.95,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Label every unlabeled item the latest model is confident about (as `model` labels)."""
    from labella.services import autolabel as service

    _, db = open_database()
    try:
        project_id = resolve_project(db, project).id
        preview = service.preview(db, project_id, threshold=threshold)
        per_class = ", ".join(f"{name}: {count}" for name, count in preview.by_class.items())
        typer.echo(
            f"model v{preview.model_version} would label {preview.count} items at "
            f"threshold {preview.threshold:g}" + (f" ({per_class})" if preview.count else "")
        )
        if preview.count == 0:
            return
        if not yes and not typer.confirm("Apply these model labels?", default=False):
            fail("cancelled; nothing was labeled")
        result = service.apply(db, project_id, threshold=threshold)
    finally:
        db.dispose()
    typer.echo(f"labeled {result.labeled} items with model v{result.model_version}")
