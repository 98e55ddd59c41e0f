"""Import images with their bounding boxes into an object-detection project.

Sources: a server-side **folder**, a **zip** archive, or **uploaded files** (images, annotation
files, zips). Annotations may come in any of the three common formats, mixed freely:

* Pascal VOC XML (one ``.xml`` per image, matched by its ``<filename>``, else by its own name);
* COCO JSON (a ``.json`` with ``images``/``annotations``/``categories``, matched by
  ``file_name``);
* YOLO txt (one ``.txt`` per image, matched by name: ``labels/a.txt`` <-> ``images/a.jpg``),
  with class names from ``classes.txt``, ``obj.names`` or ``data.yaml``.

An image with an annotation becomes a labeled item with a human label and its boxes (an
annotation with no box is the answer "nothing here"); an image without one becomes an unlabeled
item. A bad annotation file (not parseable, a box outside its image, a negative or zero size, an
unknown class, an image it names that is not there) is reported by name with the reason and
skipped together with its image, so no image enters with half of its boxes. Bad images are
reported as the image import reports them. Images are read, checked and stored by the image
import's machinery (:mod:`labella.services.image_import`); the rows are written in one
transaction, so the import is all or nothing in the database.
"""

from __future__ import annotations

import stat
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labella.config import Settings
from labella.errors import InvalidInput
from labella.images import IMAGE_EXTENSIONS
from labella.services import image_import as images
from labella.services.detection_formats import (
    CLASS_NAME_FILES,
    MAX_ANNOTATION_BYTES,
    Annotation,
    AnnotationProblem,
    check_boxes,
    parse_class_names,
    parse_coco,
    parse_voc,
    parse_yolo,
)
from labella.services.importing import IMPORT_ANNOTATOR, ClassLookup
from labella.storage.db import Database
from labella.storage.media import is_within
from labella.storage.models import (
    Item,
    ItemStatus,
    Label,
    LabelBox,
    LabelSource,
    Project,
    ProjectKind,
)

# folder names that only say what a file is, dropped when annotations are matched to images
_ROLE_FOLDERS = frozenset({"images", "labels", "annotations", "jpegimages", "img", "imgs"})
_ANNOTATION_SUFFIXES = frozenset({".xml", ".json", ".txt", ".names", ".yaml", ".yml"})


@dataclass(frozen=True)
class BadAnnotation:
    name: str
    reason: str


@dataclass
class DetectionImportReport(images.ImageImportReport):
    annotation_files: int = 0
    annotated_images: int = 0
    boxes_created: int = 0
    bad_annotations: int = 0
    bad_annotation_examples: list[BadAnnotation] = field(default_factory=list)

    def bad(self, name: str, reason: str) -> None:
        self.bad_annotations += 1
        if len(self.bad_annotation_examples) < images.MAX_SKIPPED_SHOWN:
            self.bad_annotation_examples.append(BadAnnotation(name, reason))

    def summary(self) -> str:
        text = super().summary() + f", {self.boxes_created:,} boxes"
        if self.bad_annotations:
            text += f", {self.bad_annotations:,} bad annotation files skipped"
        return text


@dataclass
class _Source:
    """What a folder, a zip or uploads hold: image candidates and annotation files' bytes."""

    images: list[images._Candidate] = field(default_factory=list)
    annotations: list[tuple[str, bytes | None]] = field(default_factory=list)  # None: unreadable
    other: int = 0


# -- entry points --------------------------------------------------------------------------------


def import_folder(
    db: Database,
    settings: Settings,
    project_id: int,
    folder: Path,
    *,
    roots: Sequence[Path],
    actor: str = "system",
) -> DetectionImportReport:
    """Import every image and annotation file under ``folder`` (images referenced in place)."""
    folder = images.allowed_folder(folder, roots)
    project = _detection_project(db, project_id)
    source = _Source()
    _walk(folder, roots, source)
    return _run(db, settings, project, source, shown=str(folder), fmt="folder", actor=actor)


def import_files(
    db: Database,
    settings: Settings,
    project_id: int,
    files: Sequence[tuple[str, IO[bytes]]],
    *,
    actor: str = "system",
) -> DetectionImportReport:
    """Import uploaded (or CLI-opened) files: images, annotation files, zips of both."""
    project = _detection_project(db, project_id)
    if not files:
        raise InvalidInput("no files given")
    source = _Source()
    for name, stream in files:
        suffix = PurePosixPath(name).suffix.lower()
        clean = images._clean_member_name(name) or "upload"
        if suffix == ".zip" or images._peek(stream, 4).startswith(b"PK\x03\x04"):
            _zip(name, stream, source)
        elif suffix in _ANNOTATION_SUFFIXES:
            source.annotations.append((clean, _read_limited(stream, clean)))
        elif suffix in IMAGE_EXTENSIONS or suffix in images.OTHER_IMAGE_EXTENSIONS:
            source.images.append(images._upload_candidate(clean, stream))
            # keep the uploaded path (not only its base name) so that labels/ match images/
            source.images[-1].name = clean
        else:
            source.other += 1
    shown = files[0][0] if len(files) == 1 else f"{len(files)} files"
    fmt = "zip" if len(files) == 1 and files[0][0].lower().endswith(".zip") else "upload"
    return _run(db, settings, project, source, shown=shown, fmt=fmt, actor=actor)


# -- gathering ------------------------------------------------------------------------------------


def _read_limited(stream: IO[bytes], name: str) -> bytes:
    data = stream.read(MAX_ANNOTATION_BYTES + 1)
    if len(data) > MAX_ANNOTATION_BYTES:
        raise InvalidInput(f"{name} is over the annotation size limit of {MAX_ANNOTATION_BYTES:,}")
    return data


def _walk(folder: Path, roots: Sequence[Path], source: _Source) -> None:
    for path in images.walk_files(folder):
        relative = path.relative_to(folder).as_posix()
        suffix = path.suffix.lower()
        if path.name.startswith("."):
            source.other += 1
            continue
        resolved = path.resolve()
        outside = path.is_symlink() and not any(is_within(resolved, r) for r in roots)
        if suffix in IMAGE_EXTENSIONS or suffix in images.OTHER_IMAGE_EXTENSIONS:
            candidate = images._Candidate(name=relative, load=images._no_bytes)
            if outside:
                candidate.problem = "a symbolic link to a file outside the allowed folders"
            elif suffix in images.OTHER_IMAGE_EXTENSIONS:
                candidate.problem = f"unsupported image format {suffix!r}"
            else:
                candidate.path = resolved
                candidate.load = images._path_loader(resolved)
            source.images.append(candidate)
        elif suffix in _ANNOTATION_SUFFIXES and not outside:
            info = resolved.stat()
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ANNOTATION_BYTES:
                source.annotations.append((relative, None))  # reported as unreadable
            else:
                source.annotations.append((relative, resolved.read_bytes()))
        else:
            source.other += 1


def _zip(name: str, stream: IO[bytes], source: _Source) -> None:
    try:
        archive = zipfile.ZipFile(images._seekable(stream))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidInput(f"{name} is not a readable zip ({exc})") from exc
    for info in archive.infolist():
        if info.is_dir():
            continue
        problem = images._unsafe_member(info.filename, info)
        clean = images._clean_member_name(info.filename)
        suffix = PurePosixPath(clean).suffix.lower()
        base = PurePosixPath(clean).name
        if problem is None and (base.startswith(".") or clean.startswith("__MACOSX/")):
            source.other += 1
            continue
        if suffix in IMAGE_EXTENSIONS or suffix in images.OTHER_IMAGE_EXTENSIONS:
            candidate = images._Candidate(name=clean, load=images._zip_loader(archive, info))
            if problem is not None:
                candidate.problem = problem
            elif suffix in images.OTHER_IMAGE_EXTENSIONS:
                candidate.problem = f"unsupported image format {suffix!r}"
            source.images.append(candidate)
        elif suffix in _ANNOTATION_SUFFIXES:
            if problem is not None or info.file_size > MAX_ANNOTATION_BYTES:
                source.annotations.append((clean, None))
                continue
            try:
                with archive.open(info) as member:
                    data = member.read(MAX_ANNOTATION_BYTES + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError):
                data = None
            source.annotations.append((clean, data))
        else:
            source.other += 1


# -- matching -------------------------------------------------------------------------------------


def match_key(path: str) -> str:
    """``train/images/a.jpg`` and ``train/labels/a.txt`` both give ``train/a``."""
    pure = PurePosixPath(path)
    parts = [p for p in pure.parent.parts if p.lower() not in _ROLE_FOLDERS]
    return "/".join([*parts, pure.stem])


class _ImageIndex:
    def __init__(self, names: Sequence[str]) -> None:
        self.names = set(names)
        self.by_key: dict[str, list[str]] = {}
        self.by_base: dict[str, list[str]] = {}
        self.by_stem: dict[str, list[str]] = {}
        for name in names:
            self.by_key.setdefault(match_key(name), []).append(name)
            self.by_base.setdefault(PurePosixPath(name).name, []).append(name)
            self.by_stem.setdefault(PurePosixPath(name).stem, []).append(name)

    def by_filename(self, filename: str, near: str) -> str | None:
        """The image an annotation names by file name (a relative path or a base name)."""
        if filename in self.names:
            return filename
        folder = PurePosixPath(near).parent
        for candidate in (
            (folder / filename).as_posix(),
            (folder.parent / "images" / filename).as_posix(),
            (folder.parent / "JPEGImages" / filename).as_posix(),
        ):
            if candidate in self.names:
                return candidate
        found = self.by_base.get(PurePosixPath(filename).name, [])
        if len(found) == 1:
            return found[0]
        keyed = [n for n in found if match_key(n) == match_key(near)]
        return keyed[0] if len(keyed) == 1 else None

    def by_name(self, annotation_path: str) -> str | None:
        """The image an annotation file belongs to by its own name (YOLO, VOC fallback)."""
        found = self.by_key.get(match_key(annotation_path), [])
        if len(found) == 1:
            return found[0]
        found = self.by_stem.get(PurePosixPath(annotation_path).stem, [])
        return found[0] if len(found) == 1 else None


@dataclass
class _Pending:
    """An annotation matched to an image; YOLO ones wait for the image's size."""

    annotation: Annotation | None
    yolo: tuple[str, bytes] | None = None  # (file name, bytes) of a YOLO label file
    names: list[str] | None = None  # the YOLO class list


def _parse_annotations(source: _Source, report: DetectionImportReport) -> dict[str, _Pending]:
    """image name -> its annotation. Bad files are reported here and leave their image out."""
    index = _ImageIndex([c.name for c in source.images])
    by_image: dict[str, _Pending] = {}
    refused: set[str] = set()  # images whose annotation was bad: not imported at all
    name_files = [
        (n, d) for n, d in source.annotations if PurePosixPath(n).name in CLASS_NAME_FILES
    ]
    names: list[str] | None = None
    for name, data in name_files:
        if data is None:
            report.bad(name, "unreadable or over the annotation size limit")
            continue
        try:
            names = parse_class_names(data, name)
        except AnnotationProblem as exc:
            report.bad(name, str(exc))
    report.annotation_files = len(source.annotations) - len(name_files)

    def claim(image: str | None, annotation_name: str, pending: _Pending) -> None:
        if image is None:
            report.bad(annotation_name, "the image it annotates is missing")
        elif image in by_image or image in refused:
            report.bad(annotation_name, f"{image} already has an annotation in this import")
            refused.add(image)
            by_image.pop(image, None)
        else:
            by_image[image] = pending

    for name, data in source.annotations:
        base = PurePosixPath(name).name
        suffix = PurePosixPath(name).suffix.lower()
        if base in CLASS_NAME_FILES:
            continue
        if data is None:
            report.bad(name, "unreadable or over the annotation size limit")
            continue
        try:
            if suffix == ".xml":
                annotation = parse_voc(data, name)
                image = index.by_filename(annotation.image, name) if annotation.image else None
                claim(image or index.by_name(name), name, _Pending(annotation))
            elif suffix == ".json":
                entries, problems = parse_coco(data, name)
                for where, reason in problems:
                    report.bad(f"{name}:{where}", reason)
                    found = index.by_filename(where, name)
                    if found is not None:
                        refused.add(found)
                for entry in entries:
                    claim(index.by_filename(entry.image, name), entry.source, _Pending(entry))
            elif suffix == ".txt":
                if names is None:
                    raise AnnotationProblem(
                        "a YOLO label file, but no classes.txt, obj.names or data.yaml names "
                        "its classes"
                    )
                claim(index.by_name(name), name, _Pending(None, (name, data)))
            else:
                report.bad(name, f"not an annotation format Labella reads ({suffix})")
        except AnnotationProblem as exc:
            report.bad(name, str(exc))
            # the image a bad file belongs to (by its name) stays out with it, rather than
            # entering unlabeled and being taken for unannotated
            found = index.by_name(name)
            if found is not None and suffix != ".json":
                refused.add(found)
    for image in refused:
        by_image.pop(image, None)
    source.images = [c for c in source.images if c.name not in refused]
    return by_image if names is None else {k: _with_names(v, names) for k, v in by_image.items()}


def _with_names(pending: _Pending, names: list[str]) -> _Pending:
    pending.names = names
    return pending


# -- the import -----------------------------------------------------------------------------------


def _detection_project(db: Database, project_id: int) -> Project:
    return images.project_of_kind(
        db,
        project_id,
        ProjectKind.OBJECT_DETECTION,
        refusal="images with bounding boxes can only be imported into an object-detection project",
    )


def _run(
    db: Database,
    settings: Settings,
    project: Project,
    source: _Source,
    *,
    shown: str,
    fmt: str,
    actor: str,
) -> DetectionImportReport:
    started = time.perf_counter()
    report = DetectionImportReport(
        import_id=0, project_id=project.id, source=shown[-500:], format=fmt
    )
    report.other_files = source.other
    report.labels_from = "annotations"
    pending = _parse_annotations(source, report)
    report.images_found = len(source.images)
    rows = images._prepare(
        settings,
        source.images,
        [None] * len(source.images),
        images.existing_item_lookup(db, project.id),
        report,
        None,
    )
    classes = [c.name for c in project.classes]
    lookup = ClassLookup(project)
    boxes_by_hash: dict[str, list[tuple[int, Any]]] = {}
    kept = []
    for row in rows:
        name = row.candidate.name
        item_pending = pending.get(name)
        if item_pending is None:
            kept.append(row)
            continue
        width, height = int(row.meta["width"]), int(row.meta["height"])
        try:
            annotation = _finish_annotation(item_pending, width, height)
            check_boxes(annotation.boxes, width, height, classes)
            ambiguous = [b.label for b in annotation.boxes if lookup.find(b.label) is None]
            if ambiguous:
                raise AnnotationProblem(
                    f"class {ambiguous[0]!r} matches several classes that differ only in case"
                )
        except AnnotationProblem as exc:
            shown = item_pending.yolo[0] if item_pending.yolo else name
            if item_pending.annotation is not None:
                shown = item_pending.annotation.source
            report.bad(shown, str(exc))
            continue
        boxes_by_hash[row.digest] = [(lookup.find(b.label) or 0, b) for b in annotation.boxes]
        kept.append(row)
    report.seconds = round(time.perf_counter() - started, 3)
    return _write(db, settings, project.id, kept, boxes_by_hash, report, actor=actor)


def _finish_annotation(pending: _Pending, width: int, height: int) -> Annotation:
    if pending.yolo is not None:
        name, data = pending.yolo
        return parse_yolo(
            data, name, image="", names=pending.names or [], width=width, height=height
        )
    assert pending.annotation is not None
    return pending.annotation


def _write(
    db: Database,
    settings: Settings,
    project_id: int,
    rows: list[Any],
    boxes_by_hash: dict[str, list[tuple[int, Any]]],
    report: DetectionImportReport,
    *,
    actor: str,
) -> DetectionImportReport:
    def write_labels(session: Session) -> None:
        if boxes_by_hash:
            _write_labels(session, project_id, boxes_by_hash, report)

    return images.write_rows(
        db,
        settings,
        project_id,
        ((images.item_values(row, external_id=None), None) for row in rows),
        report,
        actor=actor,
        then=write_labels,
        conflict=(
            "the project changed while the images were being imported; nothing was imported, "
            "import them again"
        ),
    )


def _write_labels(
    session: Any,
    project_id: int,
    boxes_by_hash: dict[str, list[tuple[int, Any]]],
    report: DetectionImportReport,
) -> None:
    ids = dict(
        session.execute(
            select(Item.content_hash, Item.id).where(
                Item.project_id == project_id, Item.content_hash.in_(list(boxes_by_hash))
            )
        ).all()
    )
    for digest, boxes in boxes_by_hash.items():
        label = Label(
            project_id=project_id,
            item_id=ids[digest],
            source=LabelSource.HUMAN.value,
            annotator=IMPORT_ANNOTATOR,
            is_current=True,
        )
        # an import is ground truth: scores a file may carry are not kept on human boxes
        label.boxes = [
            LabelBox(class_id=class_id, x_min=b.x_min, y_min=b.y_min, x_max=b.x_max, y_max=b.y_max)
            for class_id, b in boxes
        ]
        session.add(label)
        report.boxes_created += len(boxes)
    report.labels_created += len(boxes_by_hash)
    report.annotated_images += len(boxes_by_hash)
    session.execute(
        update(Item).where(Item.id.in_(list(ids.values()))).values(status=ItemStatus.LABELED.value)
    )
    session.flush()


def iter_report_lines(report: DetectionImportReport, *, shown: int = 5) -> Any:
    """The report's problems as lines for a terminal."""
    for bad in report.bad_annotation_examples[:shown]:
        yield f"  bad annotation {bad.name}: {bad.reason}"
    if report.bad_annotations > shown:
        yield f"  ... and {report.bad_annotations - shown:,} more bad annotation files"
    yield from images.iter_report_lines(report, shown=shown)
