"""`labella autolabel-boxes`: flush the images whose every detector box is confident, at the
threshold a target box precision calls for (measured on the evaluation sample)."""

from __future__ import annotations

from typing import Annotated

import typer

from labella.cli.main import app, fail, friendly_errors, open_database, resolve_project


@app.command("autolabel-boxes")
@friendly_errors
def autolabel_boxes(
    project: Annotated[str, typer.Argument(help="Object-detection project id or name")],
    target_precision: Annotated[float, typer.Option(help="Box precision wanted, in (0, 1)")] = 0.95,
    floor: Annotated[
        float, typer.Option(help="Box scores below it are background, in [0, 1)")
    ] = 0.3,
    empty: Annotated[
        bool, typer.Option(help="Also label images with no box above the floor as empty")
    ] = True,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Auto-label the images the latest detector is sure of, box by box (as `model` labels)."""
    from labella.services import detection_autolabel as service

    _, db = open_database()
    try:
        project_id = resolve_project(db, project).id
        plan = service.preview(
            db, project_id, target_precision=target_precision, floor=floor, include_empty=empty
        )
        if plan.threshold is None:
            typer.echo(f"model v{plan.model_version}: {plan.note}")
            return
        typer.echo(
            f"model v{plan.model_version} would label {plan.images} images "
            f"({plan.boxes} boxes, {plan.empty_images} empty) whose every box scores "
            f"{plan.threshold:.2f} or more"
        )
        typer.echo(
            f"measured on {plan.eval_images} evaluation images: box precision "
            f"{_share(plan.precision, plan.precision_low, plan.precision_high, plan.eval_boxes)}, "
            f"recall {_share(plan.recall, plan.recall_low, plan.recall_high, plan.eval_objects)}"
        )
        if plan.images == 0:
            return
        if not yes and not typer.confirm("Apply these model labels?", default=False):
            fail("cancelled; nothing was labeled")
        result = service.apply(
            db,
            project_id,
            target_precision=target_precision,
            floor=floor,
            include_empty=empty,
            model_version=plan.model_version,
        )
    finally:
        db.dispose()
    typer.echo(
        f"labeled {result.labeled} images ({result.boxes} boxes) with model v{result.model_version}"
    )


def _share(value: float | None, low: float, high: float, n: int) -> str:
    if value is None:
        return "n/a (nothing to measure)"
    return f"{value:.1%} (95% interval {low:.1%}–{high:.1%}, n={n})"
