"""`labella project create|list`."""

from __future__ import annotations

from typing import Annotated

import typer

from labella.cli.main import friendly_errors, open_database, project_app


@project_app.command("create")
@friendly_errors
def create(
    name: Annotated[str, typer.Argument(help="Project name")],
    classes: Annotated[str, typer.Option("--classes", "-c", help="Comma-separated class names")],
    multi_label: Annotated[
        bool, typer.Option("--multi-label", help="Items may take several classes")
    ] = False,
    strategy: Annotated[
        str | None,
        typer.Option(help="Query strategy (default: cluster_margin; ml_margin for multi-label)"),
    ] = None,
    retrain_every: Annotated[int, typer.Option(help="Retrain after this many new labels")] = 50,
    description: Annotated[str, typer.Option(help="Free text")] = "",
    kind: Annotated[
        str, typer.Option(help="text_classification or image_classification")
    ] = "text_classification",
    encoder: Annotated[
        str | None,
        typer.Option(help="Encoder name (default: all-MiniLM-L6-v2 / efficientnet-lite0)"),
    ] = None,
    auto_finetune_at: Annotated[
        int | None,
        typer.Option(
            help="Human labels at which the encoder fine-tunes itself, again each time they "
            "double; 0: never (default: LABELLA_AUTO_FINETUNE_AT, 250, for single-label text "
            "projects, else 0)"
        ),
    ] = None,
    self_training: Annotated[
        bool | None,
        typer.Option(
            "--self-training/--no-self-training",
            help="Training also learns from the model's confident predictions on the unlabeled "
            "items (default: on for single-label text projects, off for images; not available "
            "for multi-label or object-detection projects)",
        ),
    ] = None,
) -> None:
    """Create a text- or image-classification project."""
    from labella.services import projects as service

    settings, db = open_database()
    spec = service.ProjectSpec(
        name=name,
        classes=[service.ClassSpec(name=c) for c in classes.split(",") if c.strip()],
        multi_label=multi_label,
        strategy=strategy,
        retrain_every=retrain_every,
        description=description,
        kind=kind,
        encoder=encoder,
        auto_finetune_at=auto_finetune_at,
        self_training=self_training,
    )
    project = service.create_project(db, spec, settings=settings)
    names = ", ".join(c.name for c in project.classes)
    typer.echo(f"created project {project.id}: {project.name} ({names})")


@project_app.command("list")
@friendly_errors
def list_projects() -> None:
    """List projects with their item counts."""
    from labella.services import projects as service

    _, db = open_database()
    projects = service.list_projects(db)
    if not projects:
        typer.echo("no projects yet; create one with `labella project create`")
        return
    for project in projects:
        status = service.project_status(db, project.id)
        counts = status.counts
        typer.echo(
            f"{project.id:>4}  {project.name:<30} {status.total:>8} items  "
            f"{counts['labeled']:>6} labeled  {counts['auto']:>6} auto  "
            f"{'multi-label' if project.multi_label else 'single-label'}"
        )
