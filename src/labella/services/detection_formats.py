"""Bounding-box annotation formats: Pascal VOC XML, COCO JSON, YOLO txt (and CSV out).

Pure parsing and writing, no DB. Boxes are kept as floats in image pixels ``(x_min, y_min,
x_max, y_max)``; YOLO's normalised centre/size boxes are converted with the image's size.
Coordinates are taken as written (no "+1 pixel" of the old VOC devkit), so a file exported and
imported again gives back the same numbers.

XML is untrusted input: a document with a DOCTYPE (and so any entity declaration, internal or
external) is refused before ElementTree sees it, which rules out XXE and entity-expansion bombs
without needing defusedxml.
"""

from __future__ import annotations

import csv
import io
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from xml.parsers import expat

MAX_ANNOTATION_BYTES = 50 * 1024 * 1024
CLASS_NAME_FILES = ("classes.txt", "obj.names", "data.yaml", "data.yml")


class AnnotationProblem(Exception):
    """One annotation file (or one image's entry) is bad; the message says why."""


@dataclass(frozen=True)
class Box:
    label: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    score: float | None = None


@dataclass
class Annotation:
    """The boxes of one image. ``image`` is the file name the annotation gives (a relative
    path or a base name); ``width``/``height`` as the annotation declares them, if it does."""

    image: str
    source: str  # the annotation file (and entry) it came from, for reports
    boxes: list[Box] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    model: bool = False  # written by a model (exports mark these)


# -- checks ---------------------------------------------------------------------------------------


def check_boxes(boxes: Iterable[Box], width: int, height: int, classes: Iterable[str]) -> None:
    """Raise AnnotationProblem naming the first box that is not finite, has a negative or zero
    size, lies outside a ``width`` x ``height`` image, or has a class not in ``classes``."""
    known = set(classes)
    folded = {c.lower() for c in known}
    for n, box in enumerate(boxes, start=1):
        where = f"box {n} ({box.label!r})"
        values = (box.x_min, box.y_min, box.x_max, box.y_max)
        if not all(math.isfinite(v) for v in values):
            raise AnnotationProblem(f"{where} has a coordinate that is not a finite number")
        if box.label not in known and box.label.lower() not in folded:
            raise AnnotationProblem(
                f"{where}: unknown class {box.label!r}; the project's classes are "
                + ", ".join(repr(c) for c in sorted(known))
            )
        if box.x_max <= box.x_min or box.y_max <= box.y_min:
            raise AnnotationProblem(
                f"{where} has a negative or zero size ({box.x_min:g},{box.y_min:g})-"
                f"({box.x_max:g},{box.y_max:g})"
            )
        if box.x_min < 0 or box.y_min < 0 or box.x_max > width or box.y_max > height:
            raise AnnotationProblem(
                f"{where} ({box.x_min:g},{box.y_min:g})-({box.x_max:g},{box.y_max:g}) lies outside "
                f"the {width}x{height} image"
            )


# -- Pascal VOC -----------------------------------------------------------------------------------


def _refuse_doctype(data: bytes) -> None:
    """Refuse DTDs and entities: the only way to XXE or an entity bomb."""

    def refuse(*_args: Any) -> Any:
        raise AnnotationProblem(
            "the XML has a DOCTYPE or entity declaration, which is refused (XXE protection)"
        )

    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise AnnotationProblem(f"not well-formed XML ({exc})") from exc


def _text(node: ET.Element, path: str) -> str | None:
    found = node.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def _number(node: ET.Element, path: str, where: str) -> float:
    value = _text(node, path)
    if value is None:
        raise AnnotationProblem(f"{where} has no <{path}>")
    try:
        return float(value)
    except ValueError as exc:
        raise AnnotationProblem(f"{where}: <{path}> is {value!r}, not a number") from exc


def parse_voc(data: bytes, name: str) -> Annotation:
    """One Pascal VOC XML file (``<annotation>`` with ``<filename>``, ``<size>`` and
    ``<object>``s of ``<name>`` and ``<bndbox>``)."""
    if len(data) > MAX_ANNOTATION_BYTES:
        raise AnnotationProblem(f"over the annotation size limit of {MAX_ANNOTATION_BYTES:,} bytes")
    _refuse_doctype(data)
    root = ET.fromstring(data)
    if root.tag != "annotation":
        raise AnnotationProblem(f"not a Pascal VOC file (root element <{root.tag}>)")
    image = _text(root, "filename") or ""
    width = height = None
    size = root.find("size")
    if size is not None and _text(size, "width") and _text(size, "height"):
        width = int(_number(size, "width", "<size>"))
        height = int(_number(size, "height", "<size>"))
    boxes = []
    for n, obj in enumerate(root.findall("object"), start=1):
        label = _text(obj, "name")
        if not label:
            raise AnnotationProblem(f"object {n} has no <name>")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise AnnotationProblem(f"object {n} ({label!r}) has no <bndbox>")
        where = f"object {n} ({label!r})"
        score_text = _text(obj, "score")
        boxes.append(
            Box(
                label,
                _number(bnd, "xmin", where),
                _number(bnd, "ymin", where),
                _number(bnd, "xmax", where),
                _number(bnd, "ymax", where),
                float(score_text) if score_text else None,
            )
        )
    model = (_text(root, "source/annotation") or "").lower() == "labella model"
    return Annotation(image, name, boxes, width, height, model=model)


def _num(value: float) -> str:
    """Shortest text that reads back as the same float (integers without '.0')."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_voc(annotation: Annotation, *, folder: str = "images") -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = annotation.image
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "annotation").text = "labella model" if annotation.model else "labella"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(annotation.width or 0)
    ET.SubElement(size, "height").text = str(annotation.height or 0)
    ET.SubElement(size, "depth").text = "3"
    for box in annotation.boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = box.label
        ET.SubElement(obj, "difficult").text = "0"
        if box.score is not None:
            ET.SubElement(obj, "score").text = repr(float(box.score))
        bnd = ET.SubElement(obj, "bndbox")
        for tag, value in (
            ("xmin", box.x_min),
            ("ymin", box.y_min),
            ("xmax", box.x_max),
            ("ymax", box.y_max),
        ):
            ET.SubElement(bnd, tag).text = _num(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# -- COCO -----------------------------------------------------------------------------------------


def parse_coco(data: bytes, name: str) -> tuple[list[Annotation], list[tuple[str, str]]]:
    """A COCO JSON file: its images' annotations, and (image, reason) for each bad entry (the
    whole file is refused with AnnotationProblem when it is not COCO at all)."""
    if len(data) > MAX_ANNOTATION_BYTES:
        raise AnnotationProblem(f"over the annotation size limit of {MAX_ANNOTATION_BYTES:,} bytes")
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationProblem(f"not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise AnnotationProblem('not a COCO file (no "images" list)')
    categories: dict[Any, str] = {}
    for cat in doc.get("categories") or []:
        if isinstance(cat, dict) and "id" in cat and isinstance(cat.get("name"), str):
            categories[cat["id"]] = cat["name"]
    by_id: dict[Any, Annotation] = {}
    problems: list[tuple[str, str]] = []
    bad: set[Any] = set()
    for n, image in enumerate(doc["images"], start=1):
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
            problems.append((f"image {n}", "an image entry without a file_name"))
            continue
        width, height = image.get("width"), image.get("height")
        by_id[image.get("id")] = Annotation(
            image["file_name"],
            f"{name}:{image['file_name']}",
            width=int(width) if isinstance(width, int | float) else None,
            height=int(height) if isinstance(height, int | float) else None,
        )
    for n, ann in enumerate(doc.get("annotations") or [], start=1):
        target = by_id.get(ann.get("image_id")) if isinstance(ann, dict) else None
        if target is None:
            problems.append((f"annotation {n}", "refers to no image of the file"))
            continue
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            problems.append((target.image, f"annotation {n} has no bbox [x, y, width, height]"))
            bad.add(ann.get("image_id"))
            continue
        label = categories.get(ann.get("category_id"))
        if label is None:
            problems.append(
                (target.image, f"annotation {n}: unknown category_id {ann.get('category_id')!r}")
            )
            bad.add(ann.get("image_id"))
            continue
        score = ann.get("score")
        target.boxes.append(
            Box(label, x, y, x + w, y + h, float(score) if score is not None else None)
        )
        if ann.get("source") == "model":
            target.model = True
    return [a for key, a in by_id.items() if key not in bad], problems


def write_coco(annotations: Sequence[Annotation], classes: Sequence[str]) -> bytes:
    category = {name: i for i, name in enumerate(classes, start=1)}
    images: list[dict[str, Any]] = []
    boxes: list[dict[str, Any]] = []
    for image_id, annotation in enumerate(annotations, start=1):
        images.append(
            {
                "id": image_id,
                "file_name": annotation.image,
                "width": annotation.width,
                "height": annotation.height,
            }
        )
        for box in annotation.boxes:
            entry: dict[str, Any] = {
                "id": len(boxes) + 1,
                "image_id": image_id,
                "category_id": category[box.label],
                "bbox": [box.x_min, box.y_min, box.x_max - box.x_min, box.y_max - box.y_min],
                "area": (box.x_max - box.x_min) * (box.y_max - box.y_min),
                "iscrowd": 0,
            }
            if box.score is not None:
                entry["score"] = box.score
            if annotation.model:
                entry["source"] = "model"
            boxes.append(entry)
    doc = {
        "info": {"description": "exported by Labella"},
        "images": images,
        "annotations": boxes,
        "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in category.items()],
    }
    return json.dumps(doc, indent=1).encode("utf-8")


# -- YOLO -----------------------------------------------------------------------------------------


def parse_class_names(data: bytes, name: str) -> list[str]:
    """Class names from ``classes.txt`` / ``obj.names`` (one a line) or a YOLO ``data.yaml``
    (``names`` as a list or an index -> name mapping)."""
    if PurePosixPath(name).suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise AnnotationProblem(f"not valid YAML ({exc})") from exc
        names = doc.get("names") if isinstance(doc, dict) else None
        if isinstance(names, dict):
            try:
                return [str(names[k]) for k in sorted(names, key=int)]
            except (TypeError, ValueError) as exc:
                raise AnnotationProblem('"names" keys must be class indices') from exc
        if isinstance(names, list):
            return [str(n) for n in names]
        raise AnnotationProblem('no "names" list in the YAML file')
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationProblem("not UTF-8 text") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_yolo(
    data: bytes, name: str, *, image: str, names: Sequence[str], width: int, height: int
) -> Annotation:
    """One YOLO label file: ``class x_center y_center width height [score]`` a line, normalised
    to the image size; converted to pixels with ``width`` x ``height``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationProblem("not UTF-8 text") from exc
    boxes = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (5, 6):
            raise AnnotationProblem(
                f"line {line_no} has {len(fields)} fields; a YOLO box is 'class x_center "
                "y_center width height' (and optionally a score)"
            )
        try:
            index = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:5])
            score = float(fields[5]) if len(fields) == 6 else None
        except ValueError as exc:
            raise AnnotationProblem(f"line {line_no}: {exc}") from exc
        if not 0 <= index < len(names):
            raise AnnotationProblem(
                f"line {line_no}: unknown class index {index}; the class list has {len(names)}"
            )
        boxes.append(
            Box(
                names[index],
                (cx - w / 2) * width,
                (cy - h / 2) * height,
                (cx + w / 2) * width,
                (cy + h / 2) * height,
                score,
            )
        )
    return Annotation(
        image, name, boxes, width, height, model=any(b.score is not None for b in boxes)
    )


def write_yolo(annotation: Annotation, classes: Sequence[str]) -> bytes:
    index = {name: i for i, name in enumerate(classes)}
    width, height = float(annotation.width or 1), float(annotation.height or 1)
    lines = []
    for box in annotation.boxes:
        fields = [
            str(index[box.label]),
            repr((box.x_min + box.x_max) / 2 / width),
            repr((box.y_min + box.y_max) / 2 / height),
            repr((box.x_max - box.x_min) / width),
            repr((box.y_max - box.y_min) / height),
        ]
        if box.score is not None:
            fields.append(repr(float(box.score)))
        lines.append(" ".join(fields))
    return ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")


# -- CSV (export only) ----------------------------------------------------------------------------

CSV_COLUMNS = (
    "image",
    "width",
    "height",
    "source",
    "class",
    "x_min",
    "y_min",
    "x_max",
    "y_max",
    "score",
)


def write_csv(annotations: Sequence[Annotation], extra: Mapping[str, Any] | None = None) -> bytes:
    """One row per box; an image with no box gets one row with empty box columns (so
    "nothing here" survives the export)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for a in annotations:
        source = "model" if a.model else "human"
        if not a.boxes:
            writer.writerow([a.image, a.width, a.height, source, "", "", "", "", "", ""])
        for b in a.boxes:
            writer.writerow(
                [
                    a.image,
                    a.width,
                    a.height,
                    source,
                    b.label,
                    _num(b.x_min),
                    _num(b.y_min),
                    _num(b.x_max),
                    _num(b.y_max),
                    "" if b.score is None else repr(float(b.score)),
                ]
            )
    return out.getvalue().encode("utf-8")
