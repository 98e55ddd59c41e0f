"""Export an object-detection project's current labels: Pascal VOC (zip of XML), COCO (JSON),
YOLO (zip of txt with ``classes.txt`` and ``data.yaml``) or CSV (one row per box).

Only items with a current label are exported (an unlabeled image is not "nothing here"); a label
with no box is. Model labels are included unless ``include_model=False`` and marked as such: VOC
``<source><annotation>labella model</annotation>``, COCO ``"source": "model"`` and ``score``,
YOLO a sixth column (the score), CSV a ``source`` column. Images are named as they were imported
(``item.text``), so the files sit next to the images they describe; the export holds annotations,
not image bytes.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from sqlalchemy import select

from labella.errors import InvalidInput
from labella.services.detection_formats import (
    Annotation,
    Box,
    write_coco,
    write_csv,
    write_voc,
    write_yolo,
)
from labella.services.detection_import import match_key
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    Item,
    Label,
    LabelKind,
    LabelSource,
    ProjectKind,
)

DETECTION_FORMATS = ("voc", "coco", "yolo", "csv")
MEDIA_TYPES = {
    "voc": "application/zip",
    "coco": "application/json",
    "yolo": "application/zip",
    "csv": "text/csv; charset=utf-8",
}
EXTENSIONS = {"voc": "zip", "coco": "json", "yolo": "zip", "csv": "csv"}


@dataclass
class DetectionExport:
    filename: str
    media_type: str
    data: bytes
    images: int
    boxes: int


def current_annotations(
    db: Database, project_id: int, *, include_model: bool = True
) -> tuple[list[str], list[Annotation]]:
    """The project's class names and one Annotation per item with a current label."""
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        if project.kind != ProjectKind.OBJECT_DETECTION:
            raise InvalidInput(
                f"project {project.name!r} is a {project.kind.replace('_', ' ')} project; "
                "box formats (voc, coco, yolo) export object-detection projects only"
            )
        classes = {c.id: c.name for c in project.classes}
        query = (
            select(Item, Label)
            .join(Label, Label.item_id == Item.id)
            .where(
                Item.project_id == project_id,
                Label.is_current.is_(True),
                Label.kind == LabelKind.LABEL.value,
                Label.skipped.is_(False),
            )
            .order_by(Item.id)
        )
        if not include_model:
            query = query.where(Label.source == LabelSource.HUMAN.value)
        annotations = []
        for item, label in session.execute(query).all():
            meta = item.meta or {}
            annotations.append(
                Annotation(
                    image=item.text or f"item-{item.id}",
                    source=f"item {item.id}",
                    boxes=[
                        Box(classes[b.class_id], b.x_min, b.y_min, b.x_max, b.y_max, b.score)
                        for b in label.boxes
                    ],
                    width=meta.get("width"),
                    height=meta.get("height"),
                    model=label.source == LabelSource.MODEL.value,
                )
            )
        names = [c.name for c in project.classes]
        project_name = project.name
    return [project_name, *names], annotations


def export_detections(
    db: Database, project_id: int, *, fmt: str, include_model: bool = True
) -> DetectionExport:
    """Build the export in memory (annotations are small next to the images they describe)."""
    fmt = (fmt or "").strip().lower()
    if fmt not in DETECTION_FORMATS:
        raise InvalidInput(
            f"unknown export format {fmt!r}; choose one of: {', '.join(DETECTION_FORMATS)}"
        )
    header, annotations = current_annotations(db, project_id, include_model=include_model)
    project_name, classes = header[0], header[1:]
    if fmt == "coco":
        data = write_coco(annotations, classes)
    elif fmt == "csv":
        data = write_csv(annotations)
    else:
        data = _zip(fmt, annotations, classes)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", project_name).strip("-") or "project"
    return DetectionExport(
        filename=f"{slug}-{fmt}.{EXTENSIONS[fmt]}",
        media_type=MEDIA_TYPES[fmt],
        data=data,
        images=len(annotations),
        boxes=sum(len(a.boxes) for a in annotations),
    )


def _zip(fmt: str, annotations: list[Annotation], classes: list[str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        used: set[str] = set()
        for annotation in annotations:
            key = _unique(match_key(annotation.image), used)
            if fmt == "voc":
                voc = Annotation(
                    PurePosixPath(annotation.image).name,
                    annotation.source,
                    annotation.boxes,
                    annotation.width,
                    annotation.height,
                    annotation.model,
                )
                archive.writestr(f"Annotations/{key}.xml", write_voc(voc))
            else:
                archive.writestr(f"labels/{key}.txt", write_yolo(annotation, classes))
        if fmt == "yolo":
            archive.writestr("classes.txt", "".join(f"{name}\n" for name in classes))
    return out.getvalue()


def _unique(key: str, used: set[str]) -> str:
    """Two images with the same name in different imports must not overwrite each other."""
    candidate, n = key, 1
    while candidate in used:
        n += 1
        candidate = f"{key}~{n}"
    used.add(candidate)
    return candidate
