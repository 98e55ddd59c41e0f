"""Object-detection import and export on real files the tests make, on SQLite and PostgreSQL:
VOC -> import -> export VOC/COCO/YOLO -> import gives the same boxes; every bad file reported."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from labella.config import Settings
from labella.errors import InvalidInput
from labella.services.detection_export import export_detections
from labella.services.detection_formats import Annotation, Box, write_voc
from labella.services.detection_import import import_files, import_folder
from labella.storage.db import Database
from labella.storage.models import Item, ItemStatus, Label, LabelBox
from tests.image_files import write_image

MakeProject = Callable[..., Any]
BOXES = {
    "a.png": [Box("cat", 1.5, 2.25, 20.0, 18.125), Box("dog", 30, 10, 64, 48)],
    "b.png": [],  # nothing here
    "sub/d.png": [Box("dog", 0.1, 0.2, 10.3, 40.7)],
}


@pytest.fixture
def detection_project(make_project: MakeProject) -> Any:
    return make_project(("cat", "dog"), kind="object_detection")


def make_voc_folder(root: Path) -> Path:
    for seed, name in enumerate(["a.png", "b.png", "c.png", "sub/d.png"], start=1):
        write_image(root / "images" / name, seed, size=(64, 48))
    for name, boxes in BOXES.items():
        xml = write_voc(Annotation(Path(name).name, name, boxes, 64, 48))
        target = root / "Annotations" / Path(name).with_suffix(".xml")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(xml)
    return root


def stored_boxes(db: Database, project_id: int) -> dict[str, list[tuple[Any, ...]]]:
    with db.reader() as session:
        rows = session.execute(
            select(Item.text, Label.id)
            .join(Label, Label.item_id == Item.id)
            .where(Item.project_id == project_id, Label.is_current.is_(True))
        ).all()
        out: dict[str, list[tuple[Any, ...]]] = {}
        for text, label_id in rows:
            label = session.get(Label, label_id)
            assert label is not None
            names = {c.id: c.name for c in label_classes(session, project_id)}
            key = text.removeprefix("images/")
            out[key] = [
                (names[b.class_id], b.x_min, b.y_min, b.x_max, b.y_max) for b in label.boxes
            ]
    return out


def label_classes(session: Any, project_id: int) -> list[Any]:
    from labella.storage.models import LabelClass

    return list(session.scalars(select(LabelClass).where(LabelClass.project_id == project_id)))


def expected() -> dict[str, list[tuple[Any, ...]]]:
    return {k: [(b.label, b.x_min, b.y_min, b.x_max, b.y_max) for b in v] for k, v in BOXES.items()}


def assert_boxes_equal(got: dict[str, list[tuple[Any, ...]]]) -> None:
    want = expected()
    assert sorted(got) == sorted(want)
    for name, boxes in want.items():
        assert [b[0] for b in got[name]] == [b[0] for b in boxes], name
        for left, right in zip(got[name], boxes, strict=True):
            assert left[1:] == pytest.approx(right[1:], abs=1e-6), name


def test_voc_folder_import(
    db: Database, settings: Settings, detection_project: Any, tmp_path: Path
) -> None:
    folder = make_voc_folder(tmp_path / "voc")
    report = import_folder(db, settings, detection_project.id, folder, roots=[tmp_path])
    assert report.items_created == 4 and report.labels_created == 3
    assert report.boxes_created == 3 and report.bad_annotations == 0
    assert_boxes_equal(stored_boxes(db, detection_project.id))
    with db.reader() as session:
        statuses = dict(
            session.execute(
                select(Item.text, Item.status).where(Item.project_id == detection_project.id)
            ).all()
        )
    assert statuses["images/c.png"] == ItemStatus.UNLABELED
    assert statuses["images/b.png"] == ItemStatus.LABELED  # zero boxes is an answer


@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo"])
def test_round_trip_through_each_format(
    db: Database, settings: Settings, make_project: MakeProject, tmp_path: Path, fmt: str
) -> None:
    first = make_project(("cat", "dog"), kind="object_detection")
    folder = make_voc_folder(tmp_path / "voc")
    import_folder(db, settings, first.id, folder, roots=[tmp_path])
    exported = export_detections(db, first.id, fmt=fmt)
    assert exported.images == 3 and exported.boxes == 3
    # the exported annotations next to the same images, in a fresh folder
    again = tmp_path / "again"
    shutil.copytree(folder / "images", again / "images")
    if fmt == "coco":
        (again / "annotations.json").write_bytes(exported.data)
    else:
        zipfile.ZipFile(io.BytesIO(exported.data)).extractall(again)
    second = make_project(("cat", "dog"), kind="object_detection")
    report = import_folder(db, settings, second.id, again, roots=[tmp_path])
    assert report.bad_annotations == 0, report.bad_annotation_examples
    assert report.labels_created == 3
    assert_boxes_equal(stored_boxes(db, second.id))


def test_upload_zip_with_yolo_and_csv_export(
    db: Database, settings: Settings, detection_project: Any, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(write_image(tmp_path / "x.png", 5, size=(40, 20)), "ds/images/x.png")
        archive.writestr("ds/labels/x.txt", "1 0.5 0.5 0.5 0.5\n")
        archive.writestr("ds/data.yaml", "names: [cat, dog]\n")
    buffer.seek(0)
    report = import_files(db, settings, detection_project.id, [("ds.zip", buffer)])
    assert report.boxes_created == 1, report.bad_annotation_examples
    csv_rows = export_detections(db, detection_project.id, fmt="csv").data.decode().splitlines()
    assert csv_rows[1] == "ds/images/x.png,40,20,human,dog,10,5,30,15,"


def test_bad_annotation_files_are_reported_and_skipped(
    db: Database, settings: Settings, detection_project: Any, tmp_path: Path
) -> None:
    root = tmp_path / "bad"
    for seed, name in enumerate(["ok", "outside", "negative", "unknown", "xxe", "broken"], 1):
        write_image(root / f"{name}.png", seed, size=(32, 24))

    def voc(name: str, box: Box) -> None:
        (root / f"{name}.xml").write_bytes(
            write_voc(Annotation(f"{name}.png", name, [box], 32, 24))
        )

    voc("ok", Box("cat", 1, 1, 10, 10))
    voc("outside", Box("cat", 1, 1, 40, 10))
    voc("negative", Box("cat", 10, 1, 5, 10))
    voc("unknown", Box("bird", 1, 1, 5, 5))
    voc("missing", Box("cat", 1, 1, 5, 5))  # no missing.png
    (root / "xxe.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<annotation><filename>&x;</filename></annotation>"
    )
    (root / "broken.xml").write_text("<annotation><object>")
    report = import_folder(db, settings, detection_project.id, root, roots=[tmp_path])
    reasons = {b.name: b.reason for b in report.bad_annotation_examples}
    assert "outside the 32x24 image" in reasons["outside.xml"]
    assert "negative or zero size" in reasons["negative.xml"]
    assert "unknown class 'bird'" in reasons["unknown.xml"]
    assert "missing" in reasons["missing.xml"]
    assert "XXE" in reasons["xxe.xml"]
    assert "not well-formed" in reasons["broken.xml"]
    assert report.bad_annotations == 6
    # a bad annotation file leaves its image out (found by its <filename> or by its own name)
    with db.reader() as session:
        texts = set(
            session.scalars(select(Item.text).where(Item.project_id == detection_project.id))
        )
        n_boxes = len(list(session.scalars(select(LabelBox))))
    assert "ok.png" in texts
    assert texts == {"ok.png"}
    assert n_boxes == 1


def test_wrong_project_kind_and_format_are_refused(
    db: Database, settings: Settings, make_project: MakeProject, tmp_path: Path
) -> None:
    text_project = make_project(("a", "b"))
    with pytest.raises(InvalidInput, match="object-detection"):
        import_folder(db, settings, text_project.id, tmp_path, roots=[tmp_path])
    with pytest.raises(InvalidInput, match="object-detection"):
        export_detections(db, text_project.id, fmt="voc")
    detection = make_project(("a", "b"), kind="object_detection")
    with pytest.raises(InvalidInput, match="unknown export format 'pdf'"):
        export_detections(db, detection.id, fmt="pdf")
    with pytest.raises(InvalidInput, match="not a readable zip"):
        import_files(db, settings, detection.id, [("x.zip", io.BytesIO(b"PK\x03\x04junk"))])


def test_coco_export_is_valid_coco(
    db: Database, settings: Settings, detection_project: Any, tmp_path: Path
) -> None:
    import_folder(
        db, settings, detection_project.id, make_voc_folder(tmp_path / "v"), roots=[tmp_path]
    )
    doc = json.loads(export_detections(db, detection_project.id, fmt="coco").data)
    assert {c["name"] for c in doc["categories"]} == {"cat", "dog"}
    assert len(doc["images"]) == 3 and len(doc["annotations"]) == 3
    assert all(len(a["bbox"]) == 4 for a in doc["annotations"])


def test_model_labels_are_marked_and_can_be_left_out(
    db: Database, settings: Settings, detection_project: Any, tmp_path: Path
) -> None:
    from labella.storage.models import LabelSource

    import_folder(
        db, settings, detection_project.id, make_voc_folder(tmp_path / "v"), roots=[tmp_path]
    )
    with db.transaction() as session:
        item = session.scalars(
            select(Item).where(Item.project_id == detection_project.id, Item.text == "images/c.png")
        ).one()
        cat = next(c.id for c in label_classes(session, detection_project.id) if c.name == "cat")
        label = Label(
            project_id=detection_project.id, item_id=item.id, source=LabelSource.MODEL.value
        )
        label.boxes = [LabelBox(class_id=cat, x_min=1, y_min=2, x_max=3, y_max=4, score=0.8)]
        session.add(label)
    doc = json.loads(export_detections(db, detection_project.id, fmt="coco").data)
    model = [a for a in doc["annotations"] if a.get("source") == "model"]
    assert len(model) == 1 and model[0]["score"] == 0.8 and model[0]["bbox"] == [1, 2, 2, 2]
    voc = export_detections(db, detection_project.id, fmt="voc")
    xml = zipfile.ZipFile(io.BytesIO(voc.data)).read("Annotations/c.xml").decode()
    assert "labella model" in xml and "<score>0.8</score>" in xml
    rows = export_detections(db, detection_project.id, fmt="csv").data.decode().splitlines()
    assert "images/c.png,64,48,model,cat,1,2,3,4,0.8" in rows
    human_only = export_detections(db, detection_project.id, fmt="coco", include_model=False)
    assert human_only.images == 3


def test_yolo_without_class_names_and_coco_missing_image(
    db: Database, settings: Settings, detection_project: Any, tmp_path: Path
) -> None:
    from tests.image_files import image_bytes

    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 32, "height": 24},
            {"id": 2, "file_name": "gone.png", "width": 32, "height": 24},
        ],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    files = [
        ("a.png", io.BytesIO(image_bytes(1, fmt="png"))),
        ("b.png", io.BytesIO(image_bytes(2, fmt="png"))),
        ("set.json", io.BytesIO(json.dumps(coco).encode())),
        ("b.txt", io.BytesIO(b"0 0.5 0.5 0.2 0.2\n")),
    ]
    report = import_files(db, settings, detection_project.id, files)
    reasons = {b.name: b.reason for b in report.bad_annotation_examples}
    assert reasons["set.json:gone.png"] == "the image it annotates is missing"
    assert "no classes.txt" in reasons["b.txt"]
    assert report.boxes_created == 1 and report.items_created == 1  # b.png left out with b.txt
