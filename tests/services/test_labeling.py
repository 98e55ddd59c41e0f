"""The labeling service on SQLite and PostgreSQL: serving order, leases, labels, skips, history."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from labella.config import Settings
from labella.errors import InvalidInput, NotFound
from labella.services import labeling
from labella.storage.db import Database
from labella.storage.models import Item, Job, Label, LabelValue, utcnow
from tests.services.labeling_data import add_items, plant_model


def serve_all(db: Database, settings: Settings, project_id: int, *, per_call: int = 3) -> list[int]:
    """Walk the whole queue with fresh annotators; each takes the next ``per_call`` items."""
    served: list[int] = []
    for k in range(1000):
        batch = labeling.next_batch(db, settings, project_id, n=per_call, annotator=f"walker {k}")
        if not batch:
            return served
        served += [item.item_id for item in batch]
    raise AssertionError("queue never ran dry")


def take(db: Database, settings: Settings, project_id: int, n: int, annotator: str) -> list[int]:
    """Ids of the next batch served to ``annotator``."""
    batch = labeling.next_batch(db, settings, project_id, n=n, annotator=annotator)
    return [item.item_id for item in batch]


def label_rows(db: Database, item_id: int) -> list[tuple[Any, ...]]:
    """(annotator, is_current, source, superseded, class ids) of every label row, oldest first."""
    with db.reader() as session:
        labels = session.scalars(select(Label).where(Label.item_id == item_id).order_by(Label.id))
        return [
            (
                label.annotator,
                label.is_current,
                label.source,
                label.superseded_at is not None,
                [v.class_id for v in label.values],
            )
            for label in labels
        ]


def test_ranked_items_first_by_priority_then_unranked_by_random_key(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project()
    priorities = [None, 0.2, None, 0.9, None, 0.5, None, None]
    random_keys = [0.7, 0.1, 0.3, 0.5, 0.9, 0.2, 0.05, 0.6]
    ids = add_items(db, project.id, 8, priorities=priorities, random_keys=random_keys)
    ranked = sorted(
        (i for i, p in enumerate(priorities) if p is not None), key=lambda i: -(priorities[i] or 0)
    )
    unranked = sorted(
        (i for i, p in enumerate(priorities) if p is None), key=lambda i: random_keys[i]
    )
    expected = [ids[i] for i in ranked + unranked]

    assert serve_all(db, settings, project.id) == expected

    batch = labeling.next_batch(db, settings, project.id, n=1, annotator="walker 0")
    assert batch[0].reason == "planted 0.9"
    assert batch[0].priority == 0.9


def test_items_are_served_in_random_order_while_not_encoded(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project()
    keys = [0.9, 0.1, 0.5, 0.3]
    ids = add_items(db, project.id, 4, random_keys=keys, embedded=False)
    batch = labeling.next_batch(db, settings, project.id, n=10, annotator="ann")
    assert [item.item_id for item in batch] == [ids[1], ids[3], ids[2], ids[0]]
    assert {item.reason for item in batch} == {"random (not yet encoded)"}
    assert all(item.prediction is None and item.priority is None for item in batch)


def test_two_annotators_get_disjoint_batches(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project()
    add_items(db, project.id, 30, priorities=[float(i) if i % 2 else None for i in range(30)])
    alice = set(take(db, settings, project.id, 10, "alice"))
    bob = set(take(db, settings, project.id, 10, "bob"))
    carol = set(take(db, settings, project.id, 10, "carol"))
    assert len(alice) == len(bob) == len(carol) == 10
    assert not (alice & bob) and not (alice & carol) and not (bob & carol)
    # the pool is exhausted while the leases hold
    assert labeling.next_batch(db, settings, project.id, n=10, annotator="dave") == []


def test_same_annotator_gets_its_own_leased_items_back_first(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project()
    add_items(db, project.id, 20, priorities=[float(20 - i) for i in range(20)])
    first = take(db, settings, project.id, 5, "alice")
    again = take(db, settings, project.id, 5, "alice")
    assert again == first  # a refresh is idempotent

    labeling.submit_label(db, project.id, first[0], classes=["positive"], annotator="alice")
    labeling.skip_item(db, project.id, first[1], annotator="alice")
    refreshed = take(db, settings, project.id, 5, "alice")
    assert refreshed[:3] == first[2:]
    assert not set(refreshed[3:]) & set(first)
    # the lease is renewed on every refresh
    with db.reader() as session:
        leased_by = set(session.scalars(select(Item.leased_by).where(Item.id.in_(refreshed))))
    assert leased_by == {"alice"}


def test_an_expired_lease_frees_the_item(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project()
    ids = add_items(db, project.id, 3, priorities=[3.0, 2.0, 1.0])
    alice = take(db, settings, project.id, 2, "alice")
    assert alice == ids[:2]
    assert take(db, settings, project.id, 3, "bob") == [ids[2]]
    with db.transaction() as session:  # alice walked away: her lease ran out
        session.execute(
            update(Item)
            .where(Item.id == ids[0])
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )
    bob = take(db, settings, project.id, 3, "bob")
    assert bob == [ids[2], ids[0]]  # his own lease first, then the freed item


def test_concurrent_annotators_never_share_an_item(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project()
    add_items(db, project.id, 200, priorities=[float(i) if i < 100 else None for i in range(200)])
    served: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def annotate(name: str) -> None:
        try:
            start.wait()
            for _ in range(3):
                batch = labeling.next_batch(db, settings, project.id, n=10, annotator=name)
                served.setdefault(name, []).extend(i.item_id for i in batch)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=annotate, args=(f"annotator {k}",)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    per_annotator = [set(ids) for ids in served.values()]
    assert len(per_annotator) == 6 and all(len(ids) >= 10 for ids in per_annotator)
    # No item is ever on two annotators' screens. (A refresh usually returns the annotator's own
    # 10 again, as the sequential tests check; under SKIP LOCKED a row another transaction has just
    # locked is passed over, so a concurrent refresh may lease a further item instead.)
    everything = [i for ids in per_annotator for i in ids]
    assert len(everything) == len(set(everything))


def test_queue_item_carries_the_prediction(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project(classes=("negative", "neutral", "positive"))
    ids = add_items(db, project.id, 2)
    model = plant_model(db, project.id, {ids[0]: [0.1, 0.3, 0.6]})
    batch = {
        i.item_id: i for i in labeling.next_batch(db, settings, project.id, n=5, annotator="a")
    }
    prediction = batch[ids[0]].prediction
    assert prediction is not None
    assert [c.name for c in prediction.classes] == ["positive"]
    assert [(p.name, p.probability) for p in prediction.probabilities] == [
        ("negative", 0.1),
        ("neutral", 0.3),
        ("positive", 0.6),
    ]
    assert prediction.confidence == pytest.approx(0.6)
    assert prediction.model_version == model.version
    assert batch[ids[0]].reason == "random (outside the ranked queue)"
    assert batch[ids[1]].reason == "random (not yet ranked)"
    assert batch[ids[1]].prediction is None


def test_changing_a_label_keeps_the_history(db: Database, make_project: Callable[..., Any]) -> None:
    project = make_project()
    (item_id,) = add_items(db, project.id, 1)
    negative, positive = (c.id for c in project.classes)
    first = labeling.submit_label(db, project.id, item_id, classes=["negative"], annotator="alice")
    second = labeling.submit_label(db, project.id, item_id, classes=[positive], annotator="bob")
    assert first.item_status == second.item_status == "labeled"
    assert [c.name for c in second.label.classes] == ["positive"]

    assert label_rows(db, item_id) == [
        ("alice", False, "human", True, [negative]),
        ("bob", True, "human", False, [positive]),
    ]

    history = labeling.item_history(db, project.id, item_id)
    assert history.item.status == "labeled"
    assert history.current_label is not None and history.current_label.annotator == "bob"
    assert [(h.annotator, [c.name for c in h.classes]) for h in history.labels] == [
        ("bob", ["positive"]),
        ("alice", ["negative"]),
    ]


def test_skip_records_a_label_and_takes_the_item_out_of_the_queue(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project()
    ids = add_items(db, project.id, 2, priorities=[2.0, 1.0])
    labeling.next_batch(db, settings, project.id, n=2, annotator="alice")
    result = labeling.skip_item(db, project.id, ids[0], annotator="alice")
    assert result.item_status == "skipped" and result.label.skipped and result.label.classes == []
    served = take(db, settings, project.id, 5, "alice")
    assert served == [ids[1]]
    history = labeling.item_history(db, project.id, ids[0])
    assert history.item.status == "skipped" and history.item.leased_by is None
    # a skipped item can still be labeled later; the skip stays in its history
    labeling.submit_label(db, project.id, ids[0], classes=["negative"], annotator="bob")
    history = labeling.item_history(db, project.id, ids[0])
    assert [(h.skipped, h.is_current) for h in history.labels] == [(False, True), (True, False)]


def test_multi_label_labels_take_any_number_of_classes(
    db: Database, make_project: Callable[..., Any]
) -> None:
    project = make_project(classes=("urgent", "billing", "bug"), multi_label=True)
    (item_id,) = add_items(db, project.id, 1)
    result = labeling.submit_label(
        db, project.id, item_id, classes=["bug", "urgent"], annotator="a"
    )
    assert [c.name for c in result.label.classes] == ["urgent", "bug"]  # in class order
    empty = labeling.submit_label(db, project.id, item_id, classes=[], annotator="a")
    assert empty.label.classes == [] and empty.item_status == "labeled"
    with pytest.raises(InvalidInput, match="more than once"):
        labeling.submit_label(db, project.id, item_id, classes=["bug", "bug"], annotator="a")


def test_bad_label_requests_are_refused_and_change_nothing(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project()
    other = make_project()
    (item_id,) = add_items(db, project.id, 1)
    (foreign_item,) = add_items(db, other.id, 1, prefix="other")
    cases: list[tuple[Callable[[], object], type[Exception], str]] = [
        (
            lambda: labeling.submit_label(db, project.id, item_id, classes=["maybe"]),
            InvalidInput,
            "unknown class 'maybe'",
        ),
        (
            lambda: labeling.submit_label(db, project.id, item_id, classes=[10_000]),
            InvalidInput,
            "negative (id",
        ),
        (
            lambda: labeling.submit_label(
                db, project.id, item_id, classes=["negative", "positive"]
            ),
            InvalidInput,
            "exactly one class, got 2",
        ),
        (
            lambda: labeling.submit_label(db, project.id, item_id, classes=[]),
            InvalidInput,
            "exactly one class, got 0",
        ),
        (
            lambda: labeling.submit_label(db, project.id, foreign_item, classes=["negative"]),
            NotFound,
            f"item {foreign_item} does not exist in project {project.id}",
        ),
        (
            lambda: labeling.submit_label(db, project.id, 999_999, classes=["negative"]),
            NotFound,
            "item 999999 does not exist",
        ),
        (
            lambda: labeling.submit_label(db, 999_999, item_id, classes=["negative"]),
            NotFound,
            "project 999999 does not exist",
        ),
        (
            lambda: labeling.submit_label(
                db, project.id, item_id, classes=["negative"], annotator=" "
            ),
            InvalidInput,
            "annotator must not be empty",
        ),
        (lambda: labeling.skip_item(db, other.id, item_id), NotFound, "does not exist"),
        (lambda: labeling.next_batch(db, settings, project.id, n=0), InvalidInput, "batch size"),
        (lambda: labeling.next_batch(db, settings, 999_999), NotFound, "project 999999"),
        (lambda: labeling.item_history(db, other.id, item_id), NotFound, "does not exist"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            call()
    with db.reader() as session:
        assert session.scalar(select(func.count()).select_from(Label)) == 0
        assert session.scalar(select(func.count()).select_from(LabelValue)) == 0
        assert set(session.scalars(select(Item.status))) == {"unlabeled"}


def test_a_label_schedules_training_in_the_same_transaction(
    db: Database, make_project: Callable[..., Any]
) -> None:
    project = make_project(retrain_every=3)
    ids = add_items(db, project.id, 4)
    results = [
        labeling.submit_label(db, project.id, item_id, classes=[name])
        for item_id, name in zip(ids, ["negative", "positive", "negative", "positive"], strict=True)
    ]
    assert [r.training_job_id is not None for r in results] == [False, False, True, False]
    with db.reader() as session:
        jobs = session.execute(select(Job.kind, Job.id).where(Job.project_id == project.id)).all()
    assert [tuple(job) for job in jobs] == [("train", results[2].training_job_id)]


def test_serving_walks_the_indexes_without_sorting(
    db: Database, make_project: Callable[..., Any]
) -> None:
    if not db.is_sqlite:
        pytest.skip("query plans are checked on SQLite, the default store")
    project = make_project()
    n = 300
    add_items(db, project.id, n, priorities=[float(i) if i % 2 else None for i in range(n)])
    with db.engine.begin() as connection:
        # with table statistics SQLite weighs the indexes differently; both plans must hold
        connection.exec_driver_sql("ANALYZE")
    ranked, unranked = labeling.queue_queries("sqlite")
    params = {"project_id": project.id, "annotator": "a", "now": utcnow(), "limit": 10}
    with db.engine.connect() as connection:
        for query, index in ((ranked, "ix_item_queue"), (unranked, "ix_item_random")):
            compiled = query.compile(dialect=db.engine.dialect)
            processed = compiled.construct_params(params)
            values = tuple(processed[name] for name in compiled.positiontup or [])
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", values)
            plan = " | ".join(str(row[-1]) for row in rows)
            assert f"USING INDEX {index}" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
