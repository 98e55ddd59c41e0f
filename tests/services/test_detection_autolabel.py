"""Detection active learning on SQLite and PostgreSQL: the queue ranks the least confident images
first (spread over embedding clusters), and the flush auto-labels the images whose every box is
confident, at a threshold chosen from the box precision measured on the evaluation sample."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from labella.config import Settings
from labella.errors import Conflict, InvalidInput, NotReady
from labella.services import autolabel, detection_autolabel, labeling, ranking
from labella.services.detection_ranking import rank_detection_project
from labella.storage.db import Database
from labella.storage.models import (
    AuditEvent,
    Item,
    ItemStatus,
    Job,
    Label,
    LabelSource,
    Prediction,
)
from tests.services.detection_data import (
    cache_embeddings,
    class_ids,
    label_boxes,
    plant_detector,
)
from tests.services.labeling_data import add_items

MakeProject = Callable[..., Any]
CELL = ("cell", 10.0, 10.0, 50.0, 50.0)
PLATELET = ("platelet", 60.0, 60.0, 80.0, 80.0)


def scored(box: tuple[str, float, float, float, float], score: float) -> Any:
    return (*box, score)


@pytest.fixture
def project(make_project: MakeProject) -> Any:
    return make_project(("cell", "platelet"), kind="object_detection")


def priorities(db: Database, project_id: int) -> list[tuple[int, float, str]]:
    with db.reader() as session:
        rows = session.execute(
            select(Item.id, Item.priority, Item.priority_reason)
            .where(Item.project_id == project_id, Item.priority.is_not(None))
            .order_by(Item.priority.desc())
        ).all()
    return [(int(r.id), float(r.priority), str(r.priority_reason)) for r in rows]


# -- ranking --------------------------------------------------------------------------------------


def test_least_confident_images_are_served_first(
    db: Database, settings: Settings, project: Any
) -> None:
    a, b, c, d, done, fresh = add_items(db, project.id, 6, embedded=False, prefix=uuid.uuid4().hex)
    label_boxes(db, project.id, done, [CELL])
    plant_detector(
        db,
        project.id,
        {
            a: [scored(CELL, 0.5)],  # as unsure as a box can be
            b: [scored(CELL, 0.95), scored(PLATELET, 0.6)],  # one doubtful box of two
            c: [],  # nothing found at all
            d: [scored(CELL, 0.99)],  # sure
            done: [scored(CELL, 0.5)],  # labeled already: never queued
        },  # `fresh` has no prediction of this version: unranked
    )
    result = rank_detection_project(db, settings, project.id)
    assert result.n_ranked == 4 and result.strategy == "detection_uncertainty"
    assert "no image embeddings" in result.note
    ranked = priorities(db, project.id)
    assert [item for item, _, _ in ranked] == [a, b, c, d]
    reasons = {item: reason for item, _, reason in ranked}
    assert reasons[a].startswith("uncertain boxes:") and "cell 0.50" in reasons[a]
    assert reasons[b] == "uncertain boxes: least sure platelet 0.60 of 2 boxes"
    assert reasons[a] == "uncertain boxes: least sure cell 0.50 of 1 box"
    assert "none found" in reasons[c]
    served = labeling.next_batch(db, settings, project.id, n=6, annotator="ann")
    assert [s.item_id for s in served][:4] == [a, b, c, d]
    assert fresh in [s.item_id for s in served]  # after the ranked ones, in random order


def test_the_queue_is_spread_over_embedding_clusters(
    db: Database, settings: Settings, project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two kinds of image (two tight blobs): the six most doubtful images are all of kind A
    monkeypatch.setattr(ranking, "PROJECT_CLUSTERS", 2)
    settings.rank_batch = 4
    items = add_items(db, project.id, 12, embedded=False, prefix=uuid.uuid4().hex)
    kind_a, kind_b = items[:6], items[6:]
    rng = np.random.default_rng(0)
    vectors = {i: np.array([1.0, 0.0, 0.0]) + rng.normal(0, 0.01, 3) for i in kind_a}
    vectors |= {i: np.array([0.0, 1.0, 0.0]) + rng.normal(0, 0.01, 3) for i in kind_b}
    cache_embeddings(db, settings, project.id, vectors)
    scores = [0.5, 0.51, 0.52, 0.53, 0.54, 0.55, 0.6, 0.61, 0.62, 0.63, 0.64, 0.65]
    plant_detector(
        db, project.id, {i: [scored(CELL, s)] for i, s in zip(items, scores, strict=True)}
    )
    result = rank_detection_project(db, settings, project.id)
    assert result.n_ranked == 12 and result.note == ""
    ranked = [item for item, _, _ in priorities(db, project.id)]
    first_batch = ranked[:4]
    assert {i in kind_a for i in first_batch} == {True, False}  # plain uncertainty: all A
    assert first_batch[0] == kind_a[0]  # the most doubtful image still leads its batch
    assert all("cluster" in reason for _, _, reason in priorities(db, project.id))


def test_images_without_embeddings_are_ranked_as_one_group(
    db: Database, settings: Settings, project: Any
) -> None:
    items = add_items(db, project.id, 4, embedded=False, prefix=uuid.uuid4().hex)
    cache_embeddings(db, settings, project.id, {items[0]: np.ones(3), items[1]: -np.ones(3)})
    plant_detector(db, project.id, {i: [scored(CELL, 0.4)] for i in items})
    result = rank_detection_project(db, settings, project.id)
    assert result.n_ranked == 4
    assert "2 images without an embedding" in result.note


def test_the_rank_job_hands_a_detection_project_to_the_detection_ranking(
    db: Database, settings: Settings, project: Any, worker: Any
) -> None:
    items = add_items(db, project.id, 3, embedded=False, prefix=uuid.uuid4().hex)
    plant_detector(db, project.id, {items[0]: [scored(CELL, 0.99)], items[1]: [scored(CELL, 0.5)]})
    job = ranking.request_ranking(db, project.id)
    assert worker.run_until_idle() == 1
    with db.reader() as session:
        done = session.get(Job, job.id)
        assert done is not None and done.status == "succeeded", done and done.error
        assert done.result is not None and done.result["strategy"] == "detection_uncertainty"
    assert [item for item, _, _ in priorities(db, project.id)] == [items[1], items[0]]


def test_without_a_detector_the_ranking_is_the_cold_start(
    db: Database, settings: Settings, project: Any, make_project: MakeProject
) -> None:
    add_items(db, project.id, 3, embedded=False, prefix=uuid.uuid4().hex)
    assert rank_detection_project(db, settings, project.id).cold_start
    text = make_project(("a", "b"))
    with pytest.raises(InvalidInput, match="object-detection"):
        rank_detection_project(db, settings, text.id)


def test_a_detection_project_may_choose_its_detection_strategy(
    db: Database, settings: Settings, make_project: MakeProject
) -> None:
    from labella.services import projects

    mean = make_project(
        ("cell", "platelet"),
        kind="object_detection",
        strategy="detection_uncertainty",
        strategy_params={"aggregate": "mean"},
    )
    x, y = add_items(db, mean.id, 2, embedded=False, prefix=uuid.uuid4().hex)
    # one very doubtful box among sure ones (x) against one fairly doubtful box (y)
    assert rank_detection_project(db, settings, mean.id).cold_start  # no detector yet
    plant_detector(
        db, mean.id, {x: [scored(CELL, 0.5), scored(CELL, 0.99)], y: [scored(CELL, 0.6)]}
    )
    rank_detection_project(db, settings, mean.id)
    assert [item for item, _, _ in priorities(db, mean.id)] == [y, x]
    projects.update_project(db, mean.id, strategy_params={"aggregate": "max"})
    rank_detection_project(db, settings, mean.id)
    assert [item for item, _, _ in priorities(db, mean.id)] == [x, y]
    with pytest.raises(InvalidInput, match="for object-detection projects only"):
        make_project(("a", "b"), strategy="detection_uncertainty")
    with pytest.raises(InvalidInput, match="aggregate must be one of"):
        projects.update_project(db, mean.id, strategy_params={"aggregate": "median"})


# -- auto-label -----------------------------------------------------------------------------------


@dataclass
class World:
    project_id: int
    pool: dict[str, int]
    eval_items: list[int]


@pytest.fixture
def world(db: Database, project: Any) -> World:
    """Ten labeled evaluation images with planted predictions (see the comments for what each
    threshold measures) and an unlabeled pool."""
    pid = project.id
    evals = add_items(db, pid, 10, embedded=False, prefix=uuid.uuid4().hex)
    pool_ids = add_items(db, pid, 8, embedded=False, prefix=uuid.uuid4().hex)
    truth: list[list[Any]] = [[CELL]] * 8 + [[], [PLATELET]]
    for item, boxes in zip(evals, truth, strict=True):
        label_boxes(db, pid, item, boxes, eval_sample=True)
    wrong_cell = ("cell", 100.0, 100.0, 140.0, 140.0)
    predictions: dict[int, list[Any]] = {
        # images 0-1: the cell found (0.9) plus a spurious platelet at 0.4
        evals[0]: [scored(CELL, 0.9), scored(PLATELET, 0.4)],
        evals[1]: [scored(CELL, 0.9), scored(PLATELET, 0.4)],
        # images 2-5: the cell found at 0.9
        **{evals[i]: [scored(CELL, 0.9)] for i in range(2, 6)},
        evals[6]: [scored(wrong_cell, 0.35)],  # a false box, the cell missed
        evals[7]: [],  # the cell missed, nothing predicted
        evals[8]: [],  # nothing there, nothing predicted
        evals[9]: [scored(PLATELET, 0.8)],
    }
    # cut points: t=0.35 covers everything: 7 of 10 boxes right; t=0.4 drops image 6: 7 of 9;
    # t=0.8 drops images 0, 1, 6: 5 of 5 right, and 5 of the 6 human boxes there found
    names = ["sure", "one doubtful", "empty", "sure with background", "background only"]
    pool = dict(
        zip([*names, "human labeled", "eval unlabeled", "unreadable"], pool_ids, strict=True)
    )
    predictions |= {
        pool["sure"]: [scored(CELL, 0.95)],
        pool["one doubtful"]: [scored(CELL, 0.95), scored(PLATELET, 0.5)],
        pool["empty"]: [],
        pool["sure with background"]: [scored(CELL, 0.85), scored(PLATELET, 0.1)],
        pool["background only"]: [scored(CELL, 0.2)],
        pool["human labeled"]: [scored(CELL, 0.99)],
        pool["eval unlabeled"]: [scored(CELL, 0.99)],
        pool["unreadable"]: [],
    }
    label_boxes(db, pid, pool["human labeled"], [CELL])
    with db.transaction() as session:
        session.get(Item, pool["eval unlabeled"]).eval_sample = True  # type: ignore[union-attr]
    plant_detector(db, pid, predictions)
    with db.transaction() as session:
        # a box in a shape this version does not read must not make the image "empty"
        unreadable = session.get(Prediction, pool["unreadable"])
        assert unreadable is not None
        unreadable.boxes = [{"class_index": 0, "x_min": 1, "y_min": 1, "x_max": 9, "y_max": 9}]
    return World(project_id=pid, pool=pool, eval_items=evals)


def test_preview_chooses_the_threshold_from_the_measured_box_precision(
    db: Database, world: World
) -> None:
    plan = detection_autolabel.preview(db, world.project_id, target_precision=0.95)
    assert plan.threshold == pytest.approx(0.8)
    assert (plan.eval_boxes, plan.precision) == (5, 1.0)
    assert (plan.eval_objects, plan.recall) == (6, pytest.approx(5 / 6))
    assert plan.eval_images == 7 and plan.eval_images_total == 10
    assert 0.5 < plan.precision_low < 1.0 == plan.precision_high  # Wilson on 5 of 5
    assert plan.recall_low < 5 / 6 < plan.recall_high
    pool = world.pool
    expected = {pool["sure"], pool["empty"], pool["sure with background"], pool["background only"]}
    assert set(plan.item_ids) == expected
    assert (plan.images, plan.boxes, plan.empty_images) == (4, 2, 2)
    looser = detection_autolabel.preview(db, world.project_id, target_precision=0.75)
    assert looser.threshold == pytest.approx(0.4) and looser.precision == pytest.approx(7 / 9)
    assert pool["one doubtful"] in looser.item_ids and looser.images == 5
    no_empty = detection_autolabel.preview(
        db, world.project_id, target_precision=0.95, include_empty=False
    )
    assert set(no_empty.item_ids) == {pool["sure"], pool["sure with background"]}
    # the evaluation image whose cell went unseen would not be labeled: no miss to count
    assert (no_empty.eval_objects, no_empty.recall, no_empty.eval_images) == (5, 1.0, 5)


def test_an_unreachable_target_labels_nothing(db: Database, world: World) -> None:
    with db.transaction() as session:
        # the humans' cells of images 0-5 lie elsewhere: the 0.9 cells are all false boxes, and
        # no cut point reaches 0.9 (t=0.8: 1 of 5 right, t=0.9: 0 of 4)
        for item in world.eval_items[:6]:
            for label in session.scalars(select(Label).where(Label.item_id == item)):
                for box in label.boxes:
                    box.x_min, box.x_max = 300.0, 340.0
    plan = detection_autolabel.preview(db, world.project_id, target_precision=0.9)
    assert plan.threshold is None and plan.images == 0 and plan.item_ids == []
    assert "no threshold reaches a box precision of 0.90" in plan.note
    result = detection_autolabel.apply(db, world.project_id, target_precision=0.9)
    assert result.labeled == 0


def test_apply_writes_model_labels_with_scored_boxes(db: Database, world: World) -> None:
    pid, pool = world.project_id, world.pool
    result = detection_autolabel.apply(db, pid, target_precision=0.95, actor="manager")
    assert (result.labeled, result.boxes) == (4, 2)
    ids = class_ids(db, pid)
    with db.reader() as session:
        labels = {
            label.item_id: label
            for label in session.scalars(
                select(Label).where(Label.project_id == pid, Label.is_current.is_(True))
            )
        }
        status = dict(session.execute(select(Item.id, Item.status)).all())
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "autolabel.run")
        ).all()
        sure = labels[pool["sure with background"]]
        assert sure.source == LabelSource.MODEL.value and sure.model_version_id is not None
        assert [(b.class_id, b.x_min, b.y_max, b.score) for b in sure.boxes] == [
            (ids["cell"], 10.0, 50.0, 0.85)
        ]  # the background platelet (0.1) is not part of the label
        assert [v.class_id for v in sure.values] == [ids["cell"]]
        assert sure.confidence == pytest.approx(0.85)
        empty = labels[pool["background only"]]
        assert empty.boxes == [] and empty.values == [] and empty.confidence == 1.0
        assert labels[pool["human labeled"]].source == LabelSource.HUMAN.value
    for name in ("sure", "empty", "sure with background", "background only"):
        assert status[pool[name]] == ItemStatus.AUTO.value
    assert status[pool["one doubtful"]] == ItemStatus.UNLABELED.value
    assert status[pool["eval unlabeled"]] == ItemStatus.UNLABELED.value  # kept for humans
    assert len(events) == 1 and events[0].actor == "manager"
    assert events[0].detail == {
        "kind": "object_detection",
        "target_precision": 0.95,
        "threshold": result.threshold,
        "floor": 0.3,
        "include_empty": True,
        "labeled": 4,
        "boxes": 2,
        "model_version": result.model_version,
    }
    again = detection_autolabel.apply(db, pid, target_precision=0.95)
    assert again.labeled == 0  # already labeled by this version


def test_the_audit_checks_the_auto_labels_box_by_box(
    db: Database, settings: Settings, world: World
) -> None:
    from labella.services import autolabel_audit

    pid, pool = world.project_id, world.pool
    detection_autolabel.apply(db, pid, target_precision=0.95)
    report = autolabel_audit.queue_audit(db, settings, pid, size=4)
    assert (report.auto_labeled, report.queued, report.drawn) == (4, 4, 4)
    label_boxes(db, pid, pool["sure"], [CELL])  # the model's cell: right
    label_boxes(db, pid, pool["empty"], [])  # nothing there indeed: right
    # the model's cell is a platelet; the model saw nothing where there is a cell: both wrong
    label_boxes(db, pid, pool["sure with background"], [("platelet", *CELL[1:])])
    label_boxes(db, pid, pool["background only"], [CELL])
    report = autolabel_audit.audit_report(db, pid)
    assert (report.checked, report.agreed, report.precision) == (4, 2, 0.5)
    assert report.ci_low < 0.5 < report.ci_high


def test_a_human_label_since_the_preview_is_never_overwritten(db: Database, world: World) -> None:
    plan = detection_autolabel.preview(db, world.project_id, target_precision=0.95)
    label_boxes(db, world.project_id, world.pool["sure"], [])
    result = detection_autolabel.apply(
        db, world.project_id, target_precision=0.95, model_version=plan.model_version
    )
    assert result.labeled == plan.images - 1
    with db.reader() as session:
        current = session.scalars(
            select(Label).where(Label.item_id == world.pool["sure"], Label.is_current.is_(True))
        ).one()
    assert current.source == LabelSource.HUMAN.value


def test_a_newer_model_since_the_preview_is_a_conflict(db: Database, world: World) -> None:
    plan = detection_autolabel.preview(db, world.project_id, target_precision=0.95)
    with db.reader() as session:
        rows = session.execute(select(Item.id).where(Item.project_id == world.project_id)).all()
    plant_detector(db, world.project_id, {int(r.id): [] for r in rows})
    with pytest.raises(Conflict, match=f"preview was for model v{plan.model_version}"):
        detection_autolabel.apply(
            db, world.project_id, target_precision=0.95, model_version=plan.model_version
        )


@pytest.mark.parametrize("target", [0, 1, 1.5, -0.1, math.nan, "high", True])
def test_a_target_outside_zero_one_is_refused(db: Database, world: World, target: Any) -> None:
    with pytest.raises(InvalidInput, match="target_precision must be"):
        detection_autolabel.preview(db, world.project_id, target_precision=target)


def test_bad_floor_wrong_kind_no_model_no_sample_are_named(
    db: Database, project: Any, make_project: MakeProject
) -> None:
    with pytest.raises(InvalidInput, match=r"floor must be in \[0, 1\)"):
        detection_autolabel.preview(db, project.id, target_precision=0.9, floor=1.0)
    text = make_project(("a", "b"))
    with pytest.raises(InvalidInput, match="object-detection projects"):
        detection_autolabel.preview(db, text.id, target_precision=0.9)
    items = add_items(db, project.id, 3, embedded=False, prefix=uuid.uuid4().hex)
    with pytest.raises(NotReady, match="no trained model yet"):
        detection_autolabel.apply(db, project.id, target_precision=0.9)
    plant_detector(db, project.id, {i: [scored(CELL, 0.9)] for i in items})
    with pytest.raises(NotReady, match="no labeled evaluation sample"):
        detection_autolabel.preview(db, project.id, target_precision=0.9)
    label_boxes(db, project.id, items[0], [CELL], eval_sample=True)
    plant_detector(db, project.id, {items[0]: [scored(CELL, 0.1)]})
    with pytest.raises(NotReady, match=r"finds no box scoring 0\.30 or more"):
        detection_autolabel.preview(db, project.id, target_precision=0.9)
    # the classification flush refuses a detection project instead of writing boxless labels
    with pytest.raises(InvalidInput, match="/detections/autolabel"):
        autolabel.apply(db, project.id, threshold=0.5)
