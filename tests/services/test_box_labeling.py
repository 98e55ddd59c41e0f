"""The box checks at their edges (no database needed): the one-pixel clipping tolerance, class
names by case, and stored prelabels read defensively."""

from __future__ import annotations

import pytest

from labella.errors import InvalidInput
from labella.services import labeling
from labella.services.box_labeling import BoxInput, check_boxes, predicted_boxes
from labella.storage.models import LabelClass, Project


def _project(*names: str) -> Project:
    return Project(
        name="boxes",
        kind="object_detection",
        classes=[LabelClass(id=i + 1, name=n, position=i) for i, n in enumerate(names)],
    )


def test_an_overshoot_under_a_pixel_is_clipped_and_a_pixel_is_refused() -> None:
    project = _project("cat")
    (row,) = check_boxes(project, [BoxInput("cat", -0.999, -0.5, 10.999, 8.5)], width=10, height=8)
    assert (row.x_min, row.y_min, row.x_max, row.y_max) == (0.0, 0.0, 10.0, 8.0)
    for corners in ((-1.0, 0, 5, 5), (0, -1.0, 5, 5), (0, 0, 11.0, 5), (0, 0, 5, 9.0)):
        with pytest.raises(InvalidInput, match="lies outside the 10x8 image"):
            check_boxes(project, [BoxInput("cat", *corners)], width=10, height=8)


def test_class_names_match_by_case_unless_ambiguous() -> None:
    (row,) = check_boxes(_project("Cat", "dog"), [BoxInput(" cat ", 0, 0, 1, 1)], width=5, height=5)
    assert row.class_id == 1
    with pytest.raises(InvalidInput, match="unknown class 'cat'"):
        check_boxes(_project("Cat", "CAT"), [BoxInput("cat", 0, 0, 1, 1)], width=5, height=5)


def test_stored_prelabels_are_filtered_sorted_and_malformed_ones_skipped() -> None:
    classes = labeling.ProjectClasses.of(_project("cat", "dog"))
    raw = [
        {"class_id": 1, "x_min": 0, "y_min": 0, "x_max": 1, "y_max": 1, "score": 0.4},
        {"class_id": 2, "x_min": 1, "y_min": 1, "x_max": 2, "y_max": 2, "score": 0.9},
        {"class_id": 2, "x_min": 1, "y_min": 1, "x_max": 2, "y_max": 2, "score": 0.1},
        {"class_id": "x", "x_min": 1},
        None,
    ]
    boxes = predicted_boxes(classes, raw, min_score=0.3)
    assert [(b.name, b.score) for b in boxes] == [("dog", 0.9), ("cat", 0.4)]
    assert predicted_boxes(classes, None) == []
