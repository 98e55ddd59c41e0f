"""`labella import` (a file into a project) and `labella export` (labels out of one)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from labella.cli.main import app, fail, friendly_errors, open_database, resolve_project

if TYPE_CHECKING:
    from labella.services.importing import ImportReport

SHOWN_DUPLICATES = 5


@app.command("import")
@friendly_errors
def import_command(
    project: Annotated[str, typer.Argument(help="Project id or name")],
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV, TSV, JSONL/NDJSON or TXT file (UTF-8); for an image project also a "
            "folder of images, a zip, an image, or a CSV/JSONL listing of image paths"
        ),
    ],
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
    no_folder_labels: Annotated[
        bool,
        typer.Option("--no-folder-labels", help="Images: do not take class names from subfolders"),
    ] = False,
    path_field: Annotated[
        str | None, typer.Option(help="Images: the listing's column holding the image path")
    ] = None,
) -> None:
    """Import texts (and optionally their labels) from a file. All or nothing: a file with a
    problem changes nothing. Duplicates and empty rows are skipped and reported.

    Image projects: a folder (a subfolder per class labels its images), a zip, image files or a
    listing; images on disk are referenced in place, bad images are skipped and reported."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from labella.errors import PayloadTooLarge
    from labella.services.importing import import_file
    from labella.services.readers import CountingReader, format_bytes

    settings, db = open_database()
    try:
        found = resolve_project(db, project)
        if found.kind == "object_detection":
            _import_detections(db, settings, found, file)
            return
        if found.kind == "image_classification":
            _import_images(
                db,
                settings,
                found,
                file,
                labels_from_folders=not no_folder_labels,
                path_field=path_field,
                label_field=label_field,
                id_field=id_field,
                label_separator=label_separator,
            )
            return
        if file.is_dir():
            fail(f"{file} is a directory; name a file")
        size = file.stat().st_size  # FileNotFoundError -> one line, via friendly_errors
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


def _import_images(
    db: Any,
    settings: Any,
    project: Any,
    source: Path,
    *,
    labels_from_folders: bool,
    path_field: str | None,
    label_field: str | None,
    id_field: str | None,
    label_separator: str,
) -> None:
    """Images: a folder, or a zip / image / listing file, with a progress bar per image."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from labella.services import image_import

    if not source.exists():
        fail(f"{source} does not exist")
    roots = image_import.cli_roots(settings, source if source.is_dir() else source.parent)
    progress = Progress(
        TextColumn("importing {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task(source.name, total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        if source.is_dir():
            report = image_import.import_folder(
                db,
                settings,
                project.id,
                source,
                roots=roots,
                labels_from_folders=labels_from_folders,
                progress=advance,
            )
        else:
            with source.open("rb") as stream:
                report = image_import.import_files(
                    db,
                    settings,
                    project.id,
                    [(source.name, stream)],
                    roots=roots,
                    base_dir=source.parent,
                    labels_from_folders=labels_from_folders,
                    path_field=path_field,
                    label_field=label_field,
                    id_field=id_field,
                    label_separator=label_separator,
                    progress=advance,
                )
    typer.echo(f"imported {source.name} into {project.name!r}: {report.summary()}")
    typer.echo(
        f"  {report.referenced:,} referenced in place, {report.stored:,} stored, "
        f"{report.thumbnails_made:,} thumbnails made; {report.seconds:.1f}s"
    )
    for line in image_import.iter_report_lines(report, shown=SHOWN_DUPLICATES):
        typer.echo(line)
    if report.encode_job_id is not None:
        typer.echo(f"  encoding the new items: job {report.encode_job_id}")


def _import_detections(db: Any, settings: Any, project: Any, source: Path) -> None:
    """Object detection: a folder or a zip of images with VOC / COCO / YOLO annotations, or one
    annotation-less image."""
    from labella.services import detection_import, image_import

    if not source.exists():
        fail(f"{source} does not exist")
    if source.is_dir():
        roots = image_import.cli_roots(settings, source)
        report = detection_import.import_folder(db, settings, project.id, source, roots=roots)
    else:
        with source.open("rb") as stream:
            report = detection_import.import_files(
                db, settings, project.id, [(source.name, stream)]
            )
    typer.echo(f"imported {source.name} into {project.name!r}: {report.summary()}")
    for line in detection_import.iter_report_lines(report, shown=SHOWN_DUPLICATES):
        typer.echo(line)


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

    asked = fmt
    if fmt is None:
        suffix = output.suffix.lower().lstrip(".") if output is not None else ""
        fmt = {"jsonl": "jsonl", "ndjson": "jsonl"}.get(suffix, "csv")
    if output is not None and output.is_dir():
        fail(f"{output} is a directory; name a file")
    _, db = open_database()
    try:
        found = resolve_project(db, project)
        if found.kind == "object_detection":
            _export_detections(db, found, asked, output)
            return
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


def _export_detections(db: Any, project: Any, fmt: str | None, output: Path | None) -> None:
    """Object detection: voc (zip), coco (json), yolo (zip) or csv; the format follows a .json
    or .csv output name, and must be given for a zip."""
    from labella.services.detection_export import DETECTION_FORMATS, export_detections

    if fmt is None:
        suffix = output.suffix.lower() if output is not None else ""
        fmt = {".json": "coco", ".csv": "csv"}.get(suffix)
        if fmt is None:
            fail(f"give --format: one of {', '.join(DETECTION_FORMATS)}")
            return
    export = export_detections(db, project.id, fmt=fmt)
    if output is None or str(output) == "-":
        sys.stdout.buffer.write(export.data)
        sys.stdout.flush()
        return
    partial = output.with_name(output.name + ".part")
    try:
        partial.write_bytes(export.data)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    typer.echo(
        f"exported {project.name!r} to {output} ({fmt}: {export.images:,} images, "
        f"{export.boxes:,} boxes)",
        err=True,
    )
