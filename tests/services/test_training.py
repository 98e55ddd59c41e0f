"""Training and ranking on real MiniLM embeddings of short sentences in three clear topics."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from labella.config import Settings
from labella.errors import NotReady
from labella.jobs.worker import Worker
from labella.services import encoding, labeling, ranking, training
from labella.services import projects as project_service
from labella.services.importing import content_hash
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import Item, Job, JobStatus, Label, LabelValue, ModelVersion, Prediction

SPORTS = [
    "The striker scored a hat-trick in the cup final.",
    "Our goalkeeper saved two penalties in the shootout.",
    "The tennis champion won the match in straight sets.",
    "The marathon runner set a new course record.",
    "The basketball team won the championship after overtime.",
    "The cyclist took the yellow jersey on the mountain stage.",
    "The coach praised the defenders after the clean sheet.",
    "The swimmer won gold in the 200 metres freestyle.",
    "A late header sent the football club into the semi-finals.",
    "The boxer knocked out his opponent in the third round.",
    "The rugby squad trained hard before the big derby.",
    "The sprinter false-started and was disqualified from the race.",
    "Fans cheered as the home team lifted the trophy.",
    "The golfer sank a long putt to win the tournament.",
    "The cricket captain declared the innings at lunch.",
]
COOKING = [
    "Whisk the eggs with sugar until pale and fluffy.",
    "Simmer the tomato sauce gently for twenty minutes.",
    "Knead the bread dough until it is smooth and elastic.",
    "Roast the chicken with garlic, lemon and rosemary.",
    "Chop the onions finely and fry them in butter.",
    "Bake the chocolate cake at 180 degrees for half an hour.",
    "Season the soup with salt, pepper and fresh herbs.",
    "Marinate the beef overnight in soy sauce and ginger.",
    "Fold the whipped cream gently into the custard.",
    "Boil the pasta in salted water until al dente.",
    "Grate the cheese over the lasagne before baking it.",
    "Toast the spices in a dry pan to release their aroma.",
    "Let the pastry rest in the fridge before rolling it out.",
    "Stir the risotto slowly while adding hot stock.",
    "Slice the vegetables thinly for the stir-fry.",
]
FINANCE = [
    "The central bank raised interest rates by a quarter point.",
    "Shares of the chip maker fell after weak quarterly earnings.",
    "Investors moved into government bonds as stocks slid.",
    "The company reported record revenue and raised its dividend.",
    "Inflation climbed to its highest level in a decade.",
    "The stock market rallied after the jobs report.",
    "The bank cut its profit forecast for the coming year.",
    "Oil prices jumped, lifting shares of energy companies.",
    "The startup raised fifty million dollars in venture funding.",
    "Mortgage rates rose for the fifth consecutive week.",
    "The currency weakened against the dollar on trade fears.",
    "Analysts expect the merger to cut costs by a billion.",
    "The pension fund increased its holdings of equities.",
    "Bond yields fell as traders bet on lower rates.",
    "The retailer's quarterly profit beat market expectations.",
]
TOPICS = {"sports": SPORTS, "cooking": COOKING, "finance": FINANCE}


class TopicProject:
    """A project holding every sentence above, with each item's true topic."""

    def __init__(self, db: Database, project: Any) -> None:
        self.db = db
        self.project = project
        self.id = project.id
        self.class_id = {c.name: c.id for c in project.classes}
        self.topic_of: dict[int, str] = {}
        with db.transaction() as session:
            for topic, texts in TOPICS.items():
                for text in texts:
                    item = Item(
                        project_id=project.id,
                        text=text,
                        content_hash=content_hash(text),
                        random_key=len(self.topic_of) / 100,
                    )
                    session.add(item)
                    session.flush()
                    self.topic_of[item.id] = topic

    def items_of(self, topic: str) -> list[int]:
        return [item_id for item_id, t in self.topic_of.items() if t == topic]

    def label(self, item_id: int, topic: str | None = None) -> labeling.LabelResult:
        return labeling.submit_label(
            self.db, self.id, item_id, classes=[topic or self.topic_of[item_id]], annotator="test"
        )

    def label_first(self, per_topic: int, topics: tuple[str, ...] = tuple(TOPICS)) -> list[int]:
        labeled = []
        for topic in topics:
            for item_id in self.items_of(topic)[:per_topic]:
                self.label(item_id)
                labeled.append(item_id)
        return labeled


@pytest.fixture
def topics(db: Database, make_project: Callable[..., Any]) -> Callable[..., TopicProject]:
    def factory(**overrides: Any) -> TopicProject:
        overrides.setdefault("retrain_every", 1000)
        return TopicProject(db, make_project(tuple(TOPICS), **overrides))

    return factory


def encoded(worker: Worker, corpus: TopicProject) -> TopicProject:
    encoding.request_encoding(corpus.db, corpus.id)
    worker.run_until_idle()
    return corpus


def job_state(db: Database, job_id: int) -> dict[str, Any]:
    with db.reader() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return {c: getattr(job, c) for c in ("status", "message", "error", "result", "attempts")}


def model_versions(db: Database, project_id: int) -> list[dict[str, Any]]:
    with db.reader() as session:
        rows = session.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == project_id)
            .order_by(ModelVersion.version)
        )
        return [
            {c: getattr(m, c) for c in ("id", "version", "n_labels", "metrics", "artifact_path")}
            for m in rows
        ]


def predictions(db: Database, project_id: int) -> dict[int, dict[str, Any]]:
    with db.reader() as session:
        rows = session.scalars(select(Prediction).where(Prediction.project_id == project_id))
        return {
            p.item_id: {
                "probs": p.probs,
                "predicted": p.predicted,
                "confidence": p.confidence,
                "model_version_id": p.model_version_id,
            }
            for p in rows
        }


def queue_order(db: Database, project_id: int) -> list[tuple[int, float, str]]:
    with db.reader() as session:
        rows = session.execute(
            select(Item.id, Item.priority, Item.priority_reason)
            .where(Item.project_id == project_id, Item.priority.is_not(None))
            .order_by(Item.priority.desc())
        ).all()
    return [(int(r.id), float(r.priority), str(r.priority_reason)) for r in rows]


# -- training -----------------------------------------------------------------------------------


def test_training_makes_a_model_version_with_metrics_and_predictions(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics())
    labeled = corpus.label_first(5)
    job = training.request_training(db, corpus.id)
    worker.run_until_idle()

    state = job_state(db, job.id)
    assert state["status"] == JobStatus.SUCCEEDED, state["error"]
    assert "model v1 trained on 15 labels" in state["message"]
    [version] = model_versions(db, corpus.id)
    assert version["version"] == 1 and version["n_labels"] == 15
    metrics = version["metrics"]
    # three clear topics: cross-validated accuracy far above chance (1/3)
    assert metrics["accuracy"] > 0.7
    assert metrics["macro_f1"] > 0.6
    assert set(metrics["per_class"]) == set(TOPICS)
    assert metrics["class_ids"] == [corpus.class_id[t] for t in TOPICS]
    assert metrics["train_seconds"] >= 0
    assert "cross-validation" in metrics["method"]
    assert (
        Path(version["artifact_path"])
        == (settings.models_dir / f"project-{corpus.id}" / "v1.npz").resolve()
    )
    assert Path(version["artifact_path"]).is_file()

    stored = predictions(db, corpus.id)
    unlabeled = set(corpus.topic_of) - set(labeled)
    assert set(stored) == unlabeled
    correct = 0
    for item_id, row in stored.items():
        assert row["model_version_id"] == version["id"]
        assert abs(sum(row["probs"]) - 1.0) < 1e-4
        assert row["confidence"] == pytest.approx(max(row["probs"]), abs=1e-5)
        [predicted] = row["predicted"]
        assert predicted == metrics["class_ids"][int(np.argmax(row["probs"]))]
        correct += predicted == corpus.class_id[corpus.topic_of[item_id]]
    assert correct / len(stored) > 0.8


def test_load_head_restores_the_trained_head(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics())
    corpus.label_first(4)
    training.request_training(db, corpus.id)
    worker.run_until_idle()
    with db.reader() as session:
        model_version = repo.latest_model_version(session, corpus.id)
        assert model_version is not None
    head = training.load_head(model_version)
    assert head.classes_.tolist() == [corpus.class_id[t] for t in TOPICS]
    from labella.learners.cache import EmbeddingCache
    from labella.learners.encoders import get_text_encoder
    from labella.services.encoding import open_cache

    _, cache = open_cache(worker.settings, model_version.encoder)
    assert isinstance(cache, EmbeddingCache) and get_text_encoder().dim == 384
    stored = predictions(db, corpus.id)
    ids = sorted(stored)
    with db.reader() as session:
        keys = dict(
            session.execute(select(Item.id, Item.content_hash).where(Item.id.in_(ids))).all()
        )
    vectors, found = cache.get_many([keys[i] for i in ids])
    cache.close()
    assert found.all()
    probs = head.predict_proba(vectors)
    np.testing.assert_allclose(probs, np.asarray([stored[i]["probs"] for i in ids]), atol=1e-5)


def test_not_ready_names_what_is_missing(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics())
    with pytest.raises(NotReady, match="no human labels yet"):
        training.request_training(db, corpus.id)
    corpus.label_first(3, topics=("sports",))
    with pytest.raises(NotReady, match="only 'sports' is labeled \\(3 items\\)"):
        training.request_training(db, corpus.id)
    with db.reader() as session:
        assert session.scalar(select(Job.id).where(Job.kind == "train")) is None


def test_a_train_job_with_too_few_labels_fails_with_the_reason(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    from labella.jobs import queue

    corpus = encoded(worker, topics())
    corpus.label_first(2, topics=("finance",))
    with db.transaction() as session:
        job = queue.enqueue(session, kind="train", project_id=corpus.id)
    worker.run_until_idle()
    state = job_state(db, job.id)
    assert state["status"] == JobStatus.FAILED
    assert "at least 2 different classes" in state["error"]
    assert model_versions(db, corpus.id) == []


def test_labels_of_items_still_being_encoded_do_not_count_yet(
    db: Database, topics: Callable[..., TopicProject]
) -> None:
    corpus = topics()
    corpus.label_first(2, topics=("sports", "cooking"))
    with pytest.raises(NotReady, match="4 labeled items are still being encoded"):
        training.request_training(db, corpus.id)


def test_retrain_every_schedules_training_after_each_block_of_new_labels(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics(retrain_every=4))
    sports, cooking = corpus.items_of("sports"), corpus.items_of("cooking")
    # four labels of one class: the threshold is reached, but a model needs two classes
    results = [corpus.label(i) for i in sports[:4]]
    assert [r.training_job_id for r in results] == [None] * 4
    first = corpus.label(cooking[0])
    assert first.training_job_id is not None
    # the job is queued: more labels do not queue another
    assert corpus.label(cooking[1]).training_job_id is None
    worker.run_until_idle()
    assert job_state(db, first.training_job_id)["status"] == JobStatus.SUCCEEDED
    [v1] = model_versions(db, corpus.id)
    assert v1["n_labels"] == 6

    # three more labels: not yet; the fourth since v1 queues the next training
    more = [corpus.label(i) for i in cooking[2:5]]
    assert [r.training_job_id for r in more] == [None] * 3
    fourth = corpus.label(cooking[5])
    assert fourth.training_job_id is not None
    worker.run_until_idle()
    assert [v["n_labels"] for v in model_versions(db, corpus.id)] == [6, 10]


def test_maybe_schedule_training_counts_from_the_latest_model(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics(retrain_every=3))
    corpus.label_first(1, topics=("sports", "finance"))
    with db.transaction() as session:
        project = repo.get_project(session, corpus.id)
        assert training.maybe_schedule_training(session, project) is None  # 2 < 3
    corpus.label_first(2, topics=("cooking",))
    with db.reader() as session:
        queued = session.scalars(select(Job).where(Job.kind == "train")).all()
        assert len(queued) == 1 and queued[0].status == JobStatus.QUEUED
    with db.transaction() as session:
        project = repo.get_project(session, corpus.id)
        # a queued training already covers the new labels
        assert training.maybe_schedule_training(session, project) is None


def test_rerunning_a_train_job_reuses_its_model_version(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics())
    corpus.label_first(3)
    job = training.request_training(db, corpus.id)
    first = training.train_project(db, settings, corpus.id, job_id=job.id)
    again = training.train_project(db, settings, corpus.id, job_id=job.id)
    assert (first.version, again.version) == (1, 1)
    assert again.reused and not first.reused
    assert again.n_predicted == 0  # every prediction was already written
    assert len(model_versions(db, corpus.id)) == 1
    # another job trains a new version
    assert training.train_project(db, settings, corpus.id).version == 2


def test_imported_labels_lead_to_training_after_encoding(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = topics()
    # labels written before any item is embedded, as an import with a label column does
    with db.transaction() as session:
        for topic in ("sports", "cooking"):
            for item_id in corpus.items_of(topic)[:3]:
                label = Label(project_id=corpus.id, item_id=item_id, source="human")
                label.values.append(LabelValue(class_id=corpus.class_id[topic]))
                session.add(label)
                session.get(Item, item_id).status = "labeled"  # type: ignore[union-attr]
    job = encoding.request_encoding(db, corpus.id)
    worker.run_until_idle()
    assert "queued training job" in job_state(db, job.id)["message"]
    [version] = model_versions(db, corpus.id)
    assert version["n_labels"] == 6


def test_class_added_after_training_gets_no_column_until_retrained(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics())
    corpus.label_first(3)
    training.request_training(db, corpus.id)
    worker.run_until_idle()
    project = project_service.add_class(db, corpus.id, project_service.ClassSpec(name="travel"))
    travel = next(c.id for c in project.classes if c.name == "travel")
    # ranking with the old model still works: its columns are the three old classes
    ranked = ranking.rank_project(db, worker.settings, corpus.id)
    assert ranked.n_ranked > 0
    v1 = model_versions(db, corpus.id)[0]
    assert travel not in v1["metrics"]["class_ids"]
    training.request_training(db, corpus.id)
    worker.run_until_idle()
    v2 = model_versions(db, corpus.id)[1]
    assert v2["metrics"]["class_ids"] == [*v1["metrics"]["class_ids"], travel]
    assert all(len(p["probs"]) == 4 for p in predictions(db, corpus.id).values())


def test_multi_label_training_predicts_sets_of_classes(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics(multi_label=True, strategy="ml_margin"))
    for topic in TOPICS:
        for item_id in corpus.items_of(topic)[:4]:
            corpus.label(item_id)
    # an item may carry two topics
    both = corpus.items_of("finance")[4]
    labeling.submit_label(db, corpus.id, both, classes=["finance", "sports"], annotator="test")
    job = training.request_training(db, corpus.id)
    worker.run_until_idle()
    assert job_state(db, job.id)["status"] == JobStatus.SUCCEEDED
    [version] = model_versions(db, corpus.id)
    assert version["metrics"]["accuracy"] is not None
    # each class's threshold was tuned on the out-of-fold predictions and decides the predictions
    thresholds = version["metrics"]["thresholds"]
    assert len(thresholds) == 3 and all(0.0 < t < 1.0 for t in thresholds)
    stored = predictions(db, corpus.id)
    assert stored
    for row in stored.values():
        probs = np.asarray(row["probs"])
        expected = [
            cid
            for cid, p, t in zip(version["metrics"]["class_ids"], probs, thresholds, strict=True)
            if p >= np.float32(t)
        ]
        assert row["predicted"] == expected
        assert row["confidence"] == pytest.approx(np.maximum(probs, 1 - probs).mean(), abs=1e-5)
    order = queue_order(db, corpus.id)
    assert order and "threshold" in order[0][2]


# -- ranking ------------------------------------------------------------------------------------


def test_cold_start_ranking_is_diverse(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics())
    order = queue_order(db, corpus.id)
    assert len(order) > 3
    assert all(reason.startswith("cold start: cluster") for _, _, reason in order)
    first_three = {corpus.topic_of[item_id] for item_id, _, _ in order[:3]}
    assert first_three == set(TOPICS)
    priorities = [p for _, p, _ in order]
    assert priorities == sorted(priorities, reverse=True)
    assert len(set(priorities)) == len(priorities)


def test_cold_start_is_reproducible(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics())
    first = queue_order(db, corpus.id)
    ranking.rank_project(db, settings, corpus.id)
    assert queue_order(db, corpus.id) == first


def test_margin_ranking_puts_the_least_margin_item_first(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics(strategy="margin"))
    labeled = corpus.label_first(3)
    training.request_training(db, corpus.id)
    worker.run_until_idle()

    order = queue_order(db, corpus.id)
    stored = predictions(db, corpus.id)
    unlabeled = set(corpus.topic_of) - set(labeled)
    assert {item_id for item_id, _, _ in order} == unlabeled  # queue_size exceeds the pool

    def margin(item_id: int) -> float:
        top = sorted(stored[item_id]["probs"], reverse=True)
        return top[0] - top[1]

    margins = [margin(item_id) for item_id, _, _ in order]
    assert margins[0] == pytest.approx(min(margin(i) for i in unlabeled), abs=1e-4)
    assert all(a <= b + 1e-4 for a, b in itertools.pairwise(margins))
    for (_, _, reason), value in zip(order, margins, strict=True):
        assert reason.startswith("margin ")
        assert float(reason.split()[1]) == pytest.approx(value, abs=2e-3)


def test_rank_job_follows_a_strategy_change(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics())
    corpus.label_first(3)
    training.request_training(db, corpus.id)
    worker.run_until_idle()
    project_service.update_project(db, corpus.id, strategy="entropy")
    job = ranking.request_ranking(db, corpus.id)
    worker.run_until_idle()
    state = job_state(db, job.id)
    assert state["status"] == JobStatus.SUCCEEDED, state["error"]
    assert "ranking with 'entropy'" in state["message"]
    order = queue_order(db, corpus.id)
    stored = predictions(db, corpus.id)

    def entropy(item_id: int) -> float:
        p = np.clip(np.asarray(stored[item_id]["probs"]), 1e-12, 1)
        return float(-(p * np.log(p)).sum())

    values = [entropy(item_id) for item_id, _, _ in order]
    assert values == pytest.approx(sorted(values, reverse=True), abs=1e-4)
    assert order[0][2].startswith("entropy ")


def test_every_strategy_ranks_a_trained_project(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics())
    corpus.label_first(3)
    training.request_training(db, corpus.id)
    worker.run_until_idle()
    n_unlabeled = len(corpus.topic_of) - 9
    for name in (
        "random",
        "least_confidence",
        "ratio",
        "exploration_mix",
        "density_weighted",
        "kcenter_greedy",
        "cluster_margin",
        "typiclust",
        "bald",
        "kmeans_cold_start",
    ):
        project_service.update_project(db, corpus.id, strategy=name, strategy_params={})
        result = ranking.rank_project(db, settings, corpus.id)
        assert result.strategy == name
        order = queue_order(db, corpus.id)
        assert 0 < len(order) <= n_unlabeled, name
        assert all(reason for _, _, reason in order), name
        with db.reader() as session:
            statuses = session.scalars(
                select(Item.status).where(Item.id.in_([i for i, _, _ in order]))
            ).all()
        assert set(statuses) == {"unlabeled"}, name


# -- API ----------------------------------------------------------------------------------------


def test_train_models_and_rank_routes(
    client: TestClient, db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics())
    refused = client.post(f"/api/projects/{corpus.id}/train")
    assert refused.status_code == 409
    assert refused.json()["code"] == "not_ready"
    assert "no human labels yet" in refused.json()["detail"]

    corpus.label_first(3)
    accepted = client.post(f"/api/projects/{corpus.id}/train")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["kind"] == "train" and accepted.json()["status"] == "queued"
    # asking again while it is queued returns the same job
    assert client.post(f"/api/projects/{corpus.id}/train").json()["id"] == accepted.json()["id"]
    worker.run_until_idle()
    corpus.label(corpus.items_of("sports")[5])
    client.post(f"/api/projects/{corpus.id}/train")
    worker.run_until_idle()

    models = client.get(f"/api/projects/{corpus.id}/models")
    assert models.status_code == 200
    curve = [(m["version"], m["n_labels"]) for m in models.json()]
    assert curve == [(1, 9), (2, 10)]
    assert all(m["metrics"]["accuracy"] is not None for m in models.json())

    rank = client.post(f"/api/projects/{corpus.id}/rank")
    assert rank.status_code == 202 and rank.json()["kind"] == "rank"
    assert client.post("/api/projects/999/rank").status_code == 404
    assert client.get("/api/projects/999/models").status_code == 404
    assert client.post("/api/projects/999/train").status_code == 404


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_train_waits_for_the_job_and_prints_the_metrics(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    from typer.testing import CliRunner

    from labella.cli.main import app

    env = {
        "LABELLA_DATA_DIR": str(settings.data_dir),
        "LABELLA_DATABASE_URL": settings.resolved_database_url,
        "LABELLA_EMBEDDING_CACHE_DIR": str(settings.embeddings_dir),
    }
    runner = CliRunner()
    unlabeled = topics()
    refused = runner.invoke(app, ["train", str(unlabeled.id)], env=env)
    assert refused.exit_code == 1
    assert refused.output.strip().startswith("error: project")
    assert "no human labels yet" in refused.output
    assert "Traceback" not in refused.output

    corpus = encoded(worker, topics())
    corpus.label_first(3)
    queued = runner.invoke(app, ["train", str(corpus.id), "--no-wait"], env=env)
    assert queued.exit_code == 0, queued.output
    assert "queued training job" in queued.output
    assert model_versions(db, corpus.id) == []

    # --wait (the default) runs the queued job here and reports the new model
    trained = runner.invoke(app, ["train", corpus.project.name], env=env)
    assert trained.exit_code == 0, trained.output
    assert "model v1 trained on 9 labels" in trained.output
    assert "accuracy" in trained.output and "macro F1" in trained.output
    for topic in TOPICS:
        assert topic in trained.output
    assert [v["version"] for v in model_versions(db, corpus.id)] == [1]


def test_cli_train_encodes_waiting_items_first(
    db: Database, settings: Settings, topics: Callable[..., TopicProject]
) -> None:
    from typer.testing import CliRunner

    from labella.cli.main import app

    corpus = topics()
    corpus.label_first(2)
    encode_job = encoding.request_encoding(db, corpus.id)
    env = {
        "LABELLA_DATA_DIR": str(settings.data_dir),
        "LABELLA_DATABASE_URL": settings.resolved_database_url,
        "LABELLA_EMBEDDING_CACHE_DIR": str(settings.embeddings_dir),
    }
    result = CliRunner().invoke(app, ["train", str(corpus.id)], env=env)
    assert result.exit_code == 0, result.output
    assert f"encoding the items of {corpus.project.name!r} first (job {encode_job.id})" in (
        result.output
    )
    assert "model v1 trained on 6 labels" in result.output
    # the training the encode job queued is the one that ran: no second model
    assert [v["version"] for v in model_versions(db, corpus.id)] == [1]
    with db.reader() as session:
        states = session.execute(select(Job.kind, Job.status).order_by(Job.id)).all()
    assert [(k, str(s)) for k, s in states] == [("encode", "succeeded"), ("train", "succeeded")]


def test_no_training_is_queued_for_labels_still_waiting_for_embeddings(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = topics(retrain_every=2)
    # the threshold is passed, but no labeled item is embedded yet: a job would only fail
    corpus.label_first(2, topics=("sports", "cooking"))
    with db.reader() as session:
        assert session.scalar(select(Job.id).where(Job.kind == "train")) is None
    # once encoding is done, the encode job itself queues the first training
    encoded(worker, corpus)
    assert [v["n_labels"] for v in model_versions(db, corpus.id)] == [4]


# -- self-training ------------------------------------------------------------------------------


def eval_sample_ids(db: Database, project_id: int) -> set[int]:
    with db.reader() as session:
        return set(
            session.scalars(
                select(Item.id).where(Item.project_id == project_id, Item.eval_sample.is_(True))
            )
        )


def test_self_training_learns_from_unlabeled_items_but_not_the_evaluation_sample(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    trained = {}
    for self_training in (True, False):
        corpus = encoded(worker, topics(self_training=self_training))
        labeled = corpus.label_first(3)
        job = training.request_training(db, corpus.id)
        worker.run_until_idle()
        assert job_state(db, job.id)["status"] == JobStatus.SUCCEEDED
        [version] = model_versions(db, corpus.id)
        trained[self_training] = (corpus, labeled, version["metrics"])

    corpus, labeled, metrics = trained[True]
    held_out = eval_sample_ids(db, corpus.id)
    assert held_out and not held_out & set(labeled)
    seen = metrics["self_training"]
    assert seen["unlabeled_seen"] == len(corpus.topic_of) - len(labeled) - len(held_out)
    assert 0 < seen["pseudo_labels"] <= seen["unlabeled_seen"]
    assert seen["rounds"] >= 1 and 0 < seen["fraction"] <= 1
    assert "self_training" not in trained[False][2]

    # the self-trained model is another model than the plain one, and still right on the topics
    on, off = (predictions(db, trained[flag][0].id) for flag in (True, False))
    # both projects hold the same sentences in the same order, and the same ones labeled
    probs_on = [on[i]["probs"] for i in sorted(on)]
    probs_off = [off[i]["probs"] for i in sorted(off)]
    assert len(probs_on) == len(probs_off)
    assert not np.allclose(probs_on, probs_off, atol=1e-3)
    correct = sum(
        row["predicted"] == [corpus.class_id[corpus.topic_of[item_id]]]
        for item_id, row in on.items()
    )
    assert correct / len(on) > 0.8


def test_a_self_training_reports_progress_within_its_long_stages(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics())
    corpus.label_first(3)
    seen: list[tuple[int, str]] = []

    def record(done: int, total: int, message: str | None = None, *, force: bool = False) -> None:
        seen.append((round(100 * done / total), message or ""))

    training.train_project(db, settings, corpus.id, progress=record)
    evaluating = [pct for pct, message in seen if "each fold self-training on" in message]
    fitting = [pct for pct, message in seen if message.startswith("training the linear head")]
    # the stage's start, then one report per fold (5) and per fit (first fit + 3 rounds)
    assert len(evaluating) == 1 + 5 and evaluating == sorted(evaluating)
    assert len(fitting) == 1 + 4 and fitting == sorted(fitting)
    assert "self-training on" in next(m for _, m in seen if m.startswith("training the"))
    assert evaluating[-1] <= fitting[0] and fitting[-1] < 100
    assert [pct for pct, _ in seen] == sorted(pct for pct, _ in seen)


def test_multi_label_projects_train_without_self_training(
    db: Database, worker: Worker, topics: Callable[..., TopicProject]
) -> None:
    corpus = encoded(worker, topics(multi_label=True))
    corpus.label_first(3)
    training.request_training(db, corpus.id)
    worker.run_until_idle()
    [version] = model_versions(db, corpus.id)
    assert "self_training" not in version["metrics"]
