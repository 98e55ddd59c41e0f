"""Pascal VOC, COCO and YOLO parsing and writing: round trips, bad files, XXE refused."""

from __future__ import annotations

import json

import pytest

from labella.services.detection_formats import (
    Annotation,
    AnnotationProblem,
    Box,
    check_boxes,
    parse_class_names,
    parse_coco,
    parse_voc,
    parse_yolo,
    write_coco,
    write_csv,
    write_voc,
    write_yolo,
)

CLASSES = ["cat", "dog"]
ANNOTATION = Annotation(
    "a.png",
    "a.xml",
    [Box("cat", 1.5, 2.25, 20.0, 18.125), Box("dog", 0.0, 0.0, 64.0, 48.0)],
    width=64,
    height=48,
)


def boxes(annotation: Annotation) -> list[tuple[str, float, float, float, float]]:
    return [(b.label, b.x_min, b.y_min, b.x_max, b.y_max) for b in annotation.boxes]


def assert_same_boxes(a: Annotation, b: Annotation) -> None:
    assert [x[0] for x in boxes(a)] == [x[0] for x in boxes(b)]
    for left, right in zip(boxes(a), boxes(b), strict=True):
        assert left[1:] == pytest.approx(right[1:], abs=1e-6)


def test_voc_round_trip() -> None:
    back = parse_voc(write_voc(ANNOTATION), "a.xml")
    assert back.image == "a.png" and (back.width, back.height) == (64, 48)
    assert boxes(back) == boxes(ANNOTATION)  # VOC keeps the floats exactly


def test_coco_round_trip() -> None:
    entries, problems = parse_coco(write_coco([ANNOTATION], CLASSES), "c.json")
    assert problems == []
    assert len(entries) == 1
    assert_same_boxes(entries[0], ANNOTATION)


def test_yolo_round_trip() -> None:
    text = write_yolo(ANNOTATION, CLASSES)
    assert text.decode().splitlines()[1].startswith("1 0.5 0.5 1.0 1.0")
    back = parse_yolo(text, "a.txt", image="a.png", names=CLASSES, width=64, height=48)
    assert_same_boxes(back, ANNOTATION)


def test_model_boxes_are_marked_in_every_format() -> None:
    model = Annotation("m.png", "m", [Box("cat", 1, 1, 5, 5, score=0.75)], 8, 8, model=True)
    assert parse_voc(write_voc(model), "m.xml").model
    assert parse_voc(write_voc(model), "m.xml").boxes[0].score == 0.75
    coco = json.loads(write_coco([model], CLASSES))
    assert coco["annotations"][0]["source"] == "model" and coco["annotations"][0]["score"] == 0.75
    yolo = write_yolo(model, CLASSES).decode().split()
    assert len(yolo) == 6 and float(yolo[5]) == 0.75
    rows = write_csv([model, Annotation("e.png", "e", [], 8, 8)]).decode().splitlines()
    assert rows[0].startswith("image,width,height,source,class")
    assert rows[1].split(",")[3] == "model" and rows[1].endswith("0.75")
    assert rows[2] == "e.png,8,8,human,,,,,,"  # "nothing here" survives


def test_xxe_and_entity_bombs_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    xxe = (
        f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<annotation><filename>&x;</filename></annotation>"
    ).encode()
    with pytest.raises(AnnotationProblem, match="XXE"):
        parse_voc(xxe, "x.xml")
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><annotation>&b;</annotation>'
    )
    with pytest.raises(AnnotationProblem, match="DOCTYPE"):
        parse_voc(bomb, "b.xml")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<annotation><object>", "not well-formed"),
        (b"<other/>", "not a Pascal VOC"),
        (b"<annotation><object><bndbox/></object></annotation>", "no <name>"),
        (b"<annotation><object><name>cat</name></object></annotation>", "no <bndbox>"),
        (
            b"<annotation><object><name>cat</name><bndbox><xmin>a</xmin></bndbox></object>"
            b"</annotation>",
            "not a number",
        ),
    ],
)
def test_bad_voc_files(data: bytes, reason: str) -> None:
    with pytest.raises(AnnotationProblem, match=reason):
        parse_voc(data, "bad.xml")


def test_bad_coco_files_and_entries() -> None:
    with pytest.raises(AnnotationProblem, match="not valid JSON"):
        parse_coco(b"{", "c.json")
    with pytest.raises(AnnotationProblem, match="not a COCO file"):
        parse_coco(b"[]", "c.json")
    doc = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 10, "height": 10},
            {"id": 2, "file_name": "b.png", "width": 10, "height": 10},
        ],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]},
            {"image_id": 2, "category_id": 9, "bbox": [0, 0, 5, 5]},
            {"image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5]},
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }
    entries, problems = parse_coco(json.dumps(doc).encode(), "c.json")
    assert [e.image for e in entries] == ["a.png"]
    assert ("b.png", "annotation 2: unknown category_id 9") in problems
    assert any("refers to no image" in reason for _, reason in problems)


def test_bad_yolo_lines() -> None:
    with pytest.raises(AnnotationProblem, match="3 fields"):
        parse_yolo(b"0 0.5 0.5\n", "a.txt", image="", names=CLASSES, width=8, height=8)
    with pytest.raises(AnnotationProblem, match="unknown class index 5"):
        parse_yolo(b"5 0.5 0.5 0.1 0.1\n", "a.txt", image="", names=CLASSES, width=8, height=8)
    with pytest.raises(AnnotationProblem, match="line 1"):
        parse_yolo(b"x 0.5 0.5 0.1 0.1\n", "a.txt", image="", names=CLASSES, width=8, height=8)


def test_class_name_files() -> None:
    assert parse_class_names(b"cat\ndog\n\n", "classes.txt") == CLASSES
    assert parse_class_names(b"names: [cat, dog]\n", "data.yaml") == CLASSES
    assert parse_class_names(b"names:\n  1: dog\n  0: cat\n", "data.yaml") == CLASSES
    with pytest.raises(AnnotationProblem, match="names"):
        parse_class_names(b"nc: 2\n", "data.yaml")


@pytest.mark.parametrize(
    ("box", "reason"),
    [
        (Box("cat", 0, 0, 65, 10), "outside the 64x48 image"),
        (Box("cat", -1, 0, 5, 10), "outside"),
        (Box("cat", 10, 0, 5, 10), "negative or zero size"),
        (Box("cat", 5, 5, 5, 10), "negative or zero size"),
        (Box("bird", 0, 0, 5, 5), "unknown class 'bird'"),
        (Box("cat", float("nan"), 0, 5, 5), "finite"),
    ],
)
def test_check_boxes(box: Box, reason: str) -> None:
    check_boxes([Box("dog", 0, 0, 64, 48)], 64, 48, CLASSES)  # the whole image is fine
    with pytest.raises(AnnotationProblem, match=reason):
        check_boxes([box], 64, 48, CLASSES)
