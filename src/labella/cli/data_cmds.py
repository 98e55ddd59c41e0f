"""`labella import` (a file into a project) and `labella export` (labels out of one)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from labella.cli.main import app, fail, friendly_errors, open_database, resolve_project

if TYPE_CHECKING:
    from labella.services.importing import ImportReport

SHOWN_DUPLICATES = 5


@app.command("import")
@friendly_errors
def import_command(
    project: Annotated[str, typer.Argument(help="Project id or name")],
    file: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL/NDJSON or TXT file (UTF-8)")],
    text_field: Annotated[str | None, typer.Option(help="Column holding the text")] = None,
    label_field: Annotated[
        str | None, typer.Option(help="Column holding existing labels (imported as human labels)")
    ] = None,
    id_field: Annotated[str | None, typer.Option(help="Column holding your own item id")] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, tsv, jsonl or txt (default: from the file name)"),
    ] = None,
    no_header: Annotated[
        bool,
        typer.Option(
            "--no-header", help="CSV/TSV without a header row; columns are numbered 1, 2, ..."
        ),
    ] = False,
    label_separator: Annotated[
        str, typer.Option(help="Separates several labels in one CSV/TSV cell")
    ] = "|",
) -> None:
    """Import texts (and optionally their labels) from a file. All or nothing: a file with a
    problem changes nothing. Duplicates and empty rows are skipped and reported."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from labella.errors import PayloadTooLarge
    from labella.services.importing import import_file
    from labella.services.readers import CountingReader, format_bytes

    if file.is_dir():
        fail(f"{file} is a directory; name a file")
    size = file.stat().st_size  # FileNotFoundError -> one line, via friendly_errors
    settings, db = open_database()
    try:
        found = resolve_project(db, project)
        limit = settings.max_upload_bytes
        if size > limit:
            raise PayloadTooLarge(
                f"{file.name} is {format_bytes(size)}, over the import limit of "
                f"{format_bytes(limit)} (LABELLA_MAX_UPLOAD_BYTES)"
            )
        progress = Progress(
            TextColumn("importing {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        with progress, file.open("rb") as raw:
            task = progress.add_task(file.name, total=size)
            stream = CountingReader(raw, on_read=lambda n: progress.advance(task, n))
            report = import_file(
                db,
                settings,
                found.id,
                stream,
                filename=file.name,
                fmt=fmt,
                text_field=text_field,
                label_field=label_field,
                id_field=id_field,
                has_header=not no_header,
                label_separator=label_separator,
            )
    finally:
        db.dispose()
    _print_report(report, found.name, file.name)


def _print_report(report: ImportReport, project_name: str, filename: str) -> None:
    typer.echo(f"imported {filename} into {project_name!r}: {report.summary()}")
    fields = f"text from {report.text_field!r}"
    if report.label_field:
        fields += f", labels from {report.label_field!r}"
    if report.id_field:
        fields += f", ids from {report.id_field!r}"
    typer.echo(f"  {fields}; {report.seconds:.1f}s")
    for example in report.duplicate_examples[:SHOWN_DUPLICATES]:
        where = (
            f"line {example.first_line} of this file"
            if example.duplicate_of == "file"
            else f"item {example.item_id} already in the project"
            if example.item_id is not None
            else "an item already in the project"
        )
        typer.echo(f"  duplicate: line {example.line} repeats {where}")
    if report.duplicates > SHOWN_DUPLICATES:
        typer.echo(f"  ... and {report.duplicates - SHOWN_DUPLICATES:,} more duplicates")
    if report.empty_rows:
        lines = ", ".join(str(n) for n in report.empty_row_lines[:SHOWN_DUPLICATES])
        typer.echo(f"  empty rows skipped at line {lines}{' ...' if report.empty_rows > 5 else ''}")
    if report.encode_job_id is not None:
        typer.echo(f"  encoding the new items: job {report.encode_job_id}")


@app.command("export")
@friendly_errors
def export_command(
    project: Annotated[str, typer.Argument(help="Project id or name")],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv or jsonl (default: from --output, else csv)"),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default: standard output)"),
    ] = None,
    include: Annotated[
        str, typer.Option(help="labeled (labelled items) or all (every item, with predictions)")
    ] = "labeled",
) -> None:
    """Export items and labels, with each label's source, confidence and model version."""
    from labella.services.exporting import iter_export

    if fmt is None:
        suffix = output.suffix.lower().lstrip(".") if output is not None else ""
        fmt = {"jsonl": "jsonl", "ndjson": "jsonl"}.get(suffix, "csv")
    if output is not None and output.is_dir():
        fail(f"{output} is a directory; name a file")
    _, db = open_database()
    try:
        found = resolve_project(db, project)
        stream = iter_export(db, found.id, fmt=fmt, include=include)
        if output is None or str(output) == "-":
            for chunk in stream:
                sys.stdout.write(chunk)
            sys.stdout.flush()
            return
        # Written beside the target and renamed at the end, so a failed export never leaves a
        # truncated file under the name the user asked for.
        partial = output.with_name(output.name + ".part")
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                for chunk in stream:
                    out.write(chunk)
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    finally:
        db.dispose()
    typer.echo(f"exported {found.name!r} to {output} ({fmt}, {include})", err=True)
