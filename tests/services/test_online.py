"""Online updates: each label is learned incrementally and the queue is re-ranked in the background,
on real MiniLM embeddings of the three-topic corpus of the training tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from labella.config import Settings
from labella.jobs.worker import DEFAULT_LANES, Worker
from labella.services import online, training
from labella.services.online import ONLINE_JOB, online_head_path, update_online
from labella.storage.db import Database
from labella.storage.models import Item, Job, JobStatus, ModelVersion
from tests.services.test_training import (
    TopicProject,
    encoded,
    predictions,
    queue_order,
)
from tests.services.test_training import (
    topics as topics,  # the fixture, re-exported for this module
)


def trained(worker: Worker, corpus: TopicProject, per_topic: int = 2) -> list[int]:
    labeled = corpus.label_first(per_topic)
    training.request_training(corpus.db, corpus.id)
    worker.run_until_idle()
    return labeled


def jobs_of(db: Database, project_id: int, kind: str) -> list[Job]:
    with db.reader() as session:
        return list(
            session.scalars(
                select(Job).where(Job.project_id == project_id, Job.kind == kind).order_by(Job.id)
            )
        )


def online_state(db: Database, settings: Settings, project_id: int) -> online.OnlineState:
    with db.reader() as session:
        version = session.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == project_id)
            .order_by(ModelVersion.version.desc())
        ).first()
        assert version is not None
        return online.load_online_head(session, settings, project_id, version)[1]


def unlabeled_in(corpus: TopicProject, topic: str, labeled: list[int]) -> list[int]:
    """Unlabeled items of a topic outside the random evaluation sample (whose labels never
    train, online or not)."""
    with corpus.db.reader() as session:
        held_out = set(session.scalars(select(Item.id).where(Item.eval_sample.is_(True))))
    return [i for i in corpus.items_of(topic) if i not in labeled and i not in held_out]


def test_a_label_updates_the_model_online_and_reranks_the_queue(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics(strategy="margin"))
    labeled = trained(worker, corpus)
    before_order = [item_id for item_id, _, _ in queue_order(db, corpus.id)]
    before_probs = predictions(db, corpus.id)

    new = unlabeled_in(corpus, "finance", labeled)[:3] + unlabeled_in(corpus, "sports", labeled)[:3]
    for item_id in new:
        corpus.label(item_id)
    assert [job.status for job in jobs_of(db, corpus.id, ONLINE_JOB)] == [JobStatus.QUEUED]
    worker.run_until_idle()

    (job,) = jobs_of(db, corpus.id, ONLINE_JOB)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result is not None and job.result["applied"] == len(new)
    state = online_state(db, settings, corpus.id)
    assert state.updates == 1 and state.labels_learned == len(new)
    assert online_head_path(settings, corpus.id).is_file()
    # no new model version: the update is incremental, the full retrain is still due later
    with db.reader() as session:
        assert len(session.scalars(select(ModelVersion.id)).all()) == 1

    after_order = [item_id for item_id, _, _ in queue_order(db, corpus.id)]
    assert set(after_order) == set(before_order) - set(new)
    assert after_order != [i for i in before_order if i not in new]
    after_probs = predictions(db, corpus.id)
    # the prelabels of the queued items come from the updated head: more sure of finance
    finance_col = 2  # classes in position order: sports, cooking, finance
    for item_id in unlabeled_in(corpus, "finance", labeled + new):
        assert (
            after_probs[item_id]["probs"][finance_col] > before_probs[item_id]["probs"][finance_col]
        )


def test_a_buffer_of_labels_is_learned_together(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics(strategy="margin", online_update_every=3))
    labeled = trained(worker, corpus)
    order = queue_order(db, corpus.id)
    pending = unlabeled_in(corpus, "cooking", labeled)

    corpus.label(pending[0])
    corpus.label(pending[1])
    worker.run_until_idle()
    result = update_online(db, settings, corpus.id)
    assert (result.applied, result.waiting) == (0, 2)
    assert queue_order(db, corpus.id) == order  # nothing re-ranked yet

    corpus.label(pending[2])
    worker.run_until_idle()
    state = online_state(db, settings, corpus.id)
    assert (state.updates, state.labels_learned) == (1, 3)


def test_an_update_is_safe_to_rerun_and_skips_the_evaluation_sample(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics(strategy="margin"))
    labeled = trained(worker, corpus)
    held_out, learned = unlabeled_in(corpus, "sports", labeled)[:2]
    with db.transaction() as session:
        session.execute(update(Item).where(Item.id == held_out).values(eval_sample=True))
    corpus.label(held_out)
    corpus.label(learned)
    worker.run_until_idle()
    state = online_state(db, settings, corpus.id)
    assert state.labels_learned == 1  # the evaluation item's label evaluates, it never trains

    again = update_online(db, settings, corpus.id)
    assert again.applied == 0
    assert online_state(db, settings, corpus.id) == state


def test_a_full_training_supersedes_the_online_head(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics(strategy="margin"))
    labeled = trained(worker, corpus)
    first = unlabeled_in(corpus, "cooking", labeled)[0]
    corpus.label(first)
    worker.run_until_idle()
    assert online_state(db, settings, corpus.id).updates == 1

    training.request_training(db, corpus.id)
    worker.run_until_idle()
    fresh = online_state(db, settings, corpus.id)
    assert (fresh.updates, fresh.labels_learned) == (0, 0)  # its labels are in version 2 now
    with db.reader() as session:
        v2 = session.scalars(select(ModelVersion).where(ModelVersion.version == 2)).one()
    assert fresh.base_version_id == v2.id
    assert fresh.watermark == v2.metrics["label_watermark"] > 0

    second = unlabeled_in(corpus, "cooking", labeled)[1]
    corpus.label(second)
    worker.run_until_idle()
    state = online_state(db, settings, corpus.id)
    assert (state.base_version_id, state.updates, state.labels_learned) == (v2.id, 1, 1)


def test_no_online_update_before_the_first_model_or_when_switched_off(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    untrained = encoded(worker, topics(strategy="margin"))
    untrained.label_first(1)
    assert jobs_of(db, untrained.id, ONLINE_JOB) == []

    off = encoded(worker, topics(strategy="margin", online_update_every=0))
    labeled = trained(worker, off)
    off.label(unlabeled_in(off, "sports", labeled)[0])
    assert jobs_of(db, off.id, ONLINE_JOB) == []


def test_the_fast_lane_runs_online_updates_while_the_main_lane_is_busy(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics(strategy="margin"))
    labeled = trained(worker, corpus)
    # a training is queued first (the main lane's), then a label queues an online update
    training.request_training(db, corpus.id)
    corpus.label(unlabeled_in(corpus, "finance", labeled)[0])
    main_lane, fast_lane, _finetune_lane = DEFAULT_LANES

    assert worker.run_once(fast_lane)
    assert [j.status for j in jobs_of(db, corpus.id, ONLINE_JOB)] == [JobStatus.SUCCEEDED]
    assert [j.status for j in jobs_of(db, corpus.id, "train")][-1] == JobStatus.QUEUED
    assert not worker.run_once(fast_lane)  # the fast lane never takes a training

    assert worker.run_once(main_lane)
    assert [j.status for j in jobs_of(db, corpus.id, "train")][-1] == JobStatus.SUCCEEDED


def test_multi_label_heads_learn_online_too(
    db: Database, settings: Settings, worker: Worker, make_project: Callable[..., Any]
) -> None:
    from tests.services.test_training import TOPICS

    corpus = TopicProject(db, make_project(tuple(TOPICS), multi_label=True))
    encoded(worker, corpus)
    labeled = trained(worker, corpus)
    item = unlabeled_in(corpus, "finance", labeled)[0]
    before = predictions(db, corpus.id)[item]["probs"]
    for other in unlabeled_in(corpus, "finance", labeled)[1:4]:
        corpus.label(other)
    worker.run_until_idle()
    after = predictions(db, corpus.id)[item]["probs"]
    assert online_state(db, settings, corpus.id).labels_learned == 3
    assert after[2] > before[2]  # the finance column's sigmoid rose
