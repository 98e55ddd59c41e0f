"""The audit of the auto-labels: a random sample served to humans and the precision measured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from labella.config import Settings
from labella.errors import InvalidInput
from labella.services import autolabel, labeling
from labella.services.autolabel_audit import AUDIT_REASON, audit_report, queue_audit
from labella.storage.db import Database
from tests.services.labeling_data import add_items, plant_model


@pytest.fixture
def flushed(db: Database, make_project: Callable[..., Any]) -> tuple[Any, list[int]]:
    """A project of 40 items, 30 of them auto-labeled 'positive' by a confident model."""
    project = make_project()
    items = add_items(db, project.id, 40)
    probs = {item_id: [0.05, 0.95] if k < 30 else [0.5, 0.5] for k, item_id in enumerate(items)}
    plant_model(db, project.id, probs)
    assert autolabel.apply(db, project.id, threshold=0.9).labeled == 30
    return project, items


def classes_of(project: Any) -> dict[str, int]:
    return {c.name: c.id for c in project.classes}


def test_the_audit_is_served_first_and_measures_the_precision(
    db: Database, settings: Settings, flushed: tuple[Any, list[int]]
) -> None:
    project, items = flushed
    report = queue_audit(db, settings, project.id, size=10)
    assert (report.drawn, report.queued, report.checked, report.precision) == (10, 10, 0, None)

    batch = labeling.next_batch(db, settings, project.id, n=12, annotator="ann")
    audited = [q.item_id for q in batch if q.reason == AUDIT_REASON]
    assert len(audited) == 10 and [q.reason for q in batch[:10]] == [AUDIT_REASON] * 10
    assert set(audited) <= set(items[:30])  # only auto-labeled items are audited

    # humans agree on 7, correct 3
    for k, item_id in enumerate(audited):
        answer = "positive" if k < 7 else "negative"
        labeling.submit_label(db, project.id, item_id, classes=[answer], annotator="ann")

    report = audit_report(db, project.id)
    assert (report.queued, report.checked, report.agreed) == (0, 10, 7)
    assert report.precision == pytest.approx(0.7)
    # the Wilson 95% interval of 7/10 (hand-computed: 0.3968 .. 0.8922)
    assert report.ci_low == pytest.approx(0.3968, abs=1e-3)
    assert report.ci_high == pytest.approx(0.8922, abs=1e-3)
    assert report.auto_labeled == 20  # the human answers replaced ten model labels
    # the history keeps the model label under the human one
    history = labeling.item_history(db, project.id, audited[-1])
    assert [label.source for label in history.labels] == ["human", "model"]


def test_queueing_is_idempotent_and_tops_up(
    db: Database, settings: Settings, flushed: tuple[Any, list[int]]
) -> None:
    project, _ = flushed
    assert queue_audit(db, settings, project.id, size=5).drawn == 5
    assert queue_audit(db, settings, project.id, size=5).drawn == 0
    topped = queue_audit(db, settings, project.id, size=8)
    assert (topped.drawn, topped.queued) == (3, 8)
    # more than there are auto-labels: all of them, no error
    assert queue_audit(db, settings, project.id, size=100).queued == 30


def test_bad_audit_requests_are_refused(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project()
    add_items(db, project.id, 5)
    with pytest.raises(InvalidInput, match="no item carries an auto-label"):
        queue_audit(db, settings, project.id, size=5)
    for size in (0, -1, 10_001):
        with pytest.raises(InvalidInput, match="audit size"):
            queue_audit(db, settings, project.id, size=size)


def test_audit_api(client: Any, db: Database, flushed: tuple[Any, list[int]]) -> None:
    project, _ = flushed
    base = f"/api/projects/{project.id}/autolabel/audit"
    assert client.get(base).json()["queued"] == 0
    response = client.post(base, json={"size": 4})
    assert response.status_code == 200, response.text
    assert response.json()["drawn"] == 4
    bad = client.post(base, json={"size": 0})
    assert bad.status_code == 422 and "size" in bad.json()["detail"]
