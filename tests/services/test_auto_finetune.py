"""The encoder fine-tunes by itself (services.finetuning.maybe_schedule_finetune): at the
project's ``auto_finetune_at`` human labels and each time they double since, never twice at once,
never for a project or encoder that cannot be fine-tuned; its own worker lane, so trainings go on
meanwhile; and a cancel that stops a fine-tuning mid-training and leaves the project's encoder."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from labella.config import Settings
from labella.errors import InvalidInput
from labella.jobs import queue
from labella.jobs.runtime import JobCancelled
from labella.jobs.worker import DEFAULT_LANES, FINETUNE_LANE, MAIN_LANE, Worker
from labella.learners.encoders import MINILM_NAME, TEXT, register_encoder
from labella.services import encoding, finetuning, importing, labeling, training
from labella.services import projects as project_service
from labella.services.importing import content_hash
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import AuditEvent, Item, Job, JobStatus, Project
from tests.services.test_finetuning import COOKING, SPORT, TINY

TOPICS = {"sport": SPORT, "cooking": COOKING}


class Topics:
    """A two-class text project with ``copies`` variants of each sentence, encoded; ``label``
    labels the next items of each class in turn, so the counts stay balanced."""

    def __init__(self, db: Database, worker: Worker, project: Any, *, copies: int) -> None:
        self.db = db
        self.id = project.id
        self.items: dict[str, list[int]] = {topic: [] for topic in TOPICS}
        self.labeled = 0
        with db.transaction() as session:
            for k in range(copies):
                for topic, texts in TOPICS.items():
                    for text in texts:
                        variant = text if k == 0 else f"{text} (report {k})"
                        item = Item(
                            project_id=project.id,
                            text=variant,
                            content_hash=content_hash(variant),
                            random_key=len(self.items[topic]) / 1000,
                        )
                        session.add(item)
                        session.flush()
                        self.items[topic].append(item.id)
        encoding.request_encoding(db, project.id)
        worker.run_until_idle()

    def label(self, n: int) -> list[int | None]:
        """Label ``n`` more items; the training job ids the labels queued (None for none)."""
        jobs = []
        for _ in range(n):
            topic = list(TOPICS)[self.labeled % 2]
            item_id = self.items[topic][self.labeled // 2]
            result = labeling.submit_label(
                self.db, self.id, item_id, classes=[topic], annotator="ann"
            )
            jobs.append(result.training_job_id)
            self.labeled += 1
        return jobs


@pytest.fixture
def topics(db: Database, worker: Worker, make_project: Callable[..., Any]) -> Callable[..., Topics]:
    def factory(*, copies: int = 1, **overrides: Any) -> Topics:
        overrides.setdefault("retrain_every", 1000)
        overrides.setdefault("online_update_every", 0)
        return Topics(db, worker, make_project(tuple(TOPICS), **overrides), copies=copies)

    return factory


def finetune_jobs(db: Database, project_id: int) -> list[Job]:
    with db.reader() as session:
        return list(
            session.scalars(
                select(Job)
                .where(Job.project_id == project_id, Job.kind == finetuning.FINETUNE_JOB)
                .order_by(Job.id)
            )
        )


def audit_events(db: Database, project_id: int, action: str) -> list[AuditEvent]:
    with db.reader() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.project_id == project_id, AuditEvent.action == action)
                .order_by(AuditEvent.id)
            )
        )


def encoder_of(db: Database, project_id: int) -> str:
    with db.reader() as session:
        return repo.get_project(session, project_id).encoder


# -- the policy -----------------------------------------------------------------------------------


def test_a_fine_tuning_is_queued_at_the_threshold_and_only_once(
    db: Database, topics: Callable[..., Topics]
) -> None:
    corpus = topics(copies=2, auto_finetune_at=20)
    corpus.label(19)
    assert finetune_jobs(db, corpus.id) == []  # 19 labels: not yet

    corpus.label(1)
    [job] = finetune_jobs(db, corpus.id)
    assert job.status == JobStatus.QUEUED
    # the defaults of a requested fine-tuning (the classifier method, 8 epochs), queued by no one
    assert job.params == {
        "method": "classifier",
        **finetuning.DEFAULTS,
        "actor": "system",
        "auto_labels": 20,
    }
    assert finetuning.DEFAULTS == {"epochs": 8, "batch_size": 16, "members": 2}
    # ... which the job reads back as its settings (the executor's own check)
    with db.reader() as session:
        project = repo.get_project(session, corpus.id)
    assert finetuning.params_for(project, job.params) == finetuning.FinetuneParams()
    [event] = audit_events(db, corpus.id, "finetune.request")
    assert event.actor == "system"
    assert event.detail["job_id"] == job.id and event.detail["trigger"] == "auto"
    assert event.detail["n_labels"] == 20 and event.detail["auto_finetune_at"] == 20

    # while it is queued (and running), more labels queue nothing more
    corpus.label(2)
    assert [j.id for j in finetune_jobs(db, corpus.id)] == [job.id]
    with db.transaction() as session:
        session.execute(update(Job).where(Job.id == job.id).values(status=JobStatus.RUNNING))
    corpus.label(2)
    assert [j.id for j in finetune_jobs(db, corpus.id)] == [job.id]


def test_it_fine_tunes_again_once_the_labels_have_doubled(
    db: Database, settings: Settings, worker: Worker, topics: Callable[..., Topics]
) -> None:
    corpus = topics(copies=2, auto_finetune_at=0)
    corpus.label(16)
    # a (tiny) fine-tuning on those 16 labels: the project now runs on its encoder
    done = finetuning.request_finetune(db, settings, corpus.id, params=TINY)
    worker.run_until_idle()
    with db.reader() as session:
        assert session.get(Job, done.id).status == JobStatus.SUCCEEDED  # type: ignore[union-attr]
    assert finetuning.parse_encoder_name(encoder_of(db, corpus.id)) == (corpus.id, done.id)

    project_service.update_project(db, corpus.id, auto_finetune_at=16)
    corpus.label(15)  # 31 labels: less than twice the 16 it was fine-tuned on
    assert [j.id for j in finetune_jobs(db, corpus.id)] == [done.id]
    corpus.label(1)  # 32
    first, auto = finetune_jobs(db, corpus.id)
    assert first.id == done.id and auto.status == JobStatus.QUEUED
    assert auto.params["auto_labels"] == 32
    [event] = [e for e in audit_events(db, corpus.id, "finetune.request") if "trigger" in e.detail]
    assert event.actor == "system"
    assert event.detail["previous_labels"] == 16

    # a cancelled automatic fine-tuning is not queued again at the next label, only once the
    # labels have doubled since it was queued
    with db.transaction() as session:
        queue.cancel(session, auto.id)
    corpus.label(2)
    assert len(finetune_jobs(db, corpus.id)) == 2


def test_the_threshold_is_human_labels_and_a_higher_one_waits(
    db: Database, topics: Callable[..., Topics]
) -> None:
    corpus = topics(copies=2, auto_finetune_at=30)
    corpus.label(29)
    assert finetune_jobs(db, corpus.id) == []
    corpus.label(1)
    assert len(finetune_jobs(db, corpus.id)) == 1


def test_off_and_ineligible_projects_and_encoders_queue_nothing(
    db: Database, topics: Callable[..., Topics], make_project: Callable[..., Any]
) -> None:
    off = topics(auto_finetune_at=0)
    off.label(20)
    assert finetune_jobs(db, off.id) == []

    # labels that are not enough to fine-tune (8 per class in 2 classes): skipped, not failed
    lopsided = topics(auto_finetune_at=10)
    for item_id in lopsided.items["sport"][:10] + lopsided.items["cooking"][:3]:
        topic = "sport" if item_id in lopsided.items["sport"] else "cooking"
        labeling.submit_label(db, lopsided.id, item_id, classes=[topic], annotator="ann")
    assert finetune_jobs(db, lopsided.id) == []

    # an encoder that cannot be fine-tuned (a plug-in), set under a project that would be due
    plugin = f"plugin-{uuid.uuid4().hex[:8]}"
    register_encoder(plugin, lambda: None, modality=TEXT)
    foreign = topics(auto_finetune_at=20)
    with db.transaction() as session:
        session.execute(update(Project).where(Project.id == foreign.id).values(encoder=plugin))
    foreign.label(20)
    assert finetune_jobs(db, foreign.id) == []

    # a multi-label project cannot be fine-tuned: even a value stored by hand is ignored
    multi = topics(multi_label=True)
    with db.transaction() as session:
        session.execute(update(Project).where(Project.id == multi.id).values(auto_finetune_at=4))
    multi.label(20)
    assert finetune_jobs(db, multi.id) == []


def test_new_projects_default_by_kind_and_bad_values_are_refused(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    def spec(name: str, **fields: Any) -> project_service.ProjectSpec:
        return project_service.ProjectSpec(
            name=name,
            classes=[project_service.ClassSpec("a"), project_service.ClassSpec("b")],
            **fields,
        )

    custom = settings.model_copy(update={"auto_finetune_at": 123})
    text = project_service.create_project(db, spec("text"), settings=custom)
    assert text.auto_finetune_at == 123
    assert make_project(("x", "y")).auto_finetune_at == 250  # the setting's default
    for fields in (
        {"multi_label": True},
        {"kind": "image_classification"},
        {"kind": "object_detection"},
    ):
        made = project_service.create_project(db, spec(f"off {fields}", **fields), settings=custom)
        assert made.auto_finetune_at == 0, fields
    images = project_service.create_project(
        db, spec("images on", kind="image_classification", auto_finetune_at=300)
    )
    assert images.auto_finetune_at == 300

    with pytest.raises(InvalidInput, match=r"auto_finetune_at must be 0 \(off\) .* object"):
        project_service.create_project(
            db, spec("boxes", kind="object_detection", auto_finetune_at=100)
        )
    with pytest.raises(InvalidInput, match=r"auto_finetune_at must be 0 \(off\) .* multi-label"):
        project_service.create_project(
            db,
            spec("multi images", kind="image_classification", multi_label=True, auto_finetune_at=5),
        )
    plugin = f"plugin-{uuid.uuid4().hex[:8]}"
    register_encoder(plugin, lambda: None, modality=TEXT)
    with pytest.raises(InvalidInput, match=f"encoder '{plugin}' cannot be fine-tuned"):
        project_service.create_project(db, spec("plugin", encoder=plugin, auto_finetune_at=50))
    assert (
        project_service.create_project(db, spec("plugin off", encoder=plugin)).auto_finetune_at == 0
    )
    with pytest.raises(InvalidInput, match="auto_finetune_at must be a whole number"):
        project_service.update_project(db, text.id, auto_finetune_at=-1)
    assert project_service.get_project(db, text.id).auto_finetune_at == 123


def test_the_api_reads_and_writes_the_setting_and_names_it_when_refused(
    client: Any, make_project: Callable[..., Any]
) -> None:
    made = client.post("/api/projects", json={"name": "t", "classes": ["a", "b"]})
    assert made.status_code == 201 and made.json()["auto_finetune_at"] == 250
    pid = made.json()["id"]
    patched = client.patch(f"/api/projects/{pid}", json={"auto_finetune_at": 500})
    assert patched.status_code == 200 and patched.json()["auto_finetune_at"] == 500
    assert client.get(f"/api/projects/{pid}").json()["auto_finetune_at"] == 500

    for body in ({"auto_finetune_at": -1}, {"auto_finetune_at": "lots"}):
        bad = client.patch(f"/api/projects/{pid}", json=body)
        assert bad.status_code == 422 and "auto_finetune_at" in bad.json()["detail"], bad.text
    boxes = client.post(
        "/api/projects",
        json={
            "name": "b",
            "classes": ["car", "person"],
            "kind": "object_detection",
            "auto_finetune_at": 9,
        },
    )
    assert boxes.status_code == 422
    assert "auto_finetune_at must be 0 (off)" in boxes.json()["detail"]
    assert "object detection project" in boxes.json()["detail"]
    multi = client.post(
        "/api/projects",
        json={
            "name": "m",
            "classes": ["a", "b"],
            "kind": "image_classification",
            "multi_label": True,
        },
    )
    assert multi.status_code == 201 and multi.json()["auto_finetune_at"] == 0
    refused = client.patch(f"/api/projects/{multi.json()['id']}", json={"auto_finetune_at": 40})
    assert refused.status_code == 422 and "multi-label" in refused.json()["detail"]
    assert client.get(f"/api/projects/{multi.json()['id']}").json()["auto_finetune_at"] == 0
    assert client.get(f"/api/projects/{pid}").json()["auto_finetune_at"] == 500


# -- the lane -------------------------------------------------------------------------------------


@pytest.fixture
def running_worker(db: Database, settings: Settings) -> Iterator[Worker]:
    """The worker as a server runs it: one thread per default lane."""
    from labella.jobs import executors  # noqa: F401

    threaded = Worker(db, settings, worker_id="threaded-test-worker:0")
    yield threaded
    threaded.stop(timeout=120)


def wait_for(condition: Callable[[], bool], *, seconds: float = 240, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def job(db: Database, job_id: int) -> Job:
    with db.reader() as session:
        found = session.get(Job, job_id)
        assert found is not None
        return found


def test_the_default_lanes_give_fine_tunings_their_own_thread() -> None:
    assert FINETUNE_LANE in DEFAULT_LANES and MAIN_LANE in DEFAULT_LANES
    assert FINETUNE_LANE.kinds == (finetuning.FINETUNE_JOB,)
    assert finetuning.FINETUNE_JOB in MAIN_LANE.exclude_kinds
    assert training.TRAIN_JOB not in (FINETUNE_LANE.kinds or ())


def test_a_training_runs_while_another_project_fine_tunes(
    db: Database, settings: Settings, topics: Callable[..., Topics], running_worker: Worker
) -> None:
    tuned, other = topics(), topics()
    tuned.label(16)
    other.label(16)
    # queued first: with one lane for both, the training would wait for the whole fine-tuning
    fine = finetuning.request_finetune(db, settings, tuned.id, params={**TINY, "max_pairs": 64})
    train = training.request_training(db, other.id)
    running_worker.start()
    wait_for(
        lambda: (
            job(db, fine.id).status == JobStatus.SUCCEEDED
            and job(db, train.id).status == JobStatus.SUCCEEDED
        ),
        what="the fine-tuning and the training",
    )
    fine_job, train_job = job(db, fine.id), job(db, train.id)
    assert fine_job.worker == train_job.worker == "threaded-test-worker:0"
    assert fine_job.started_at and fine_job.finished_at
    assert train_job.started_at and train_job.finished_at
    # they overlapped: each started before the other finished
    assert train_job.started_at < fine_job.finished_at
    assert fine_job.started_at < train_job.finished_at
    assert train_job.finished_at < fine_job.finished_at


# -- cancelling -----------------------------------------------------------------------------------


def test_cancelling_over_the_api_stops_a_fine_tuning_mid_training(
    client: Any,
    db: Database,
    settings: Settings,
    topics: Callable[..., Topics],
    running_worker: Worker,
) -> None:
    corpus = topics()
    corpus.label(16)
    # 100 rounds of pairs: 3,200 pairs, 200 optimiser steps, minutes on this CPU if not stopped
    asked = client.post(
        f"/api/projects/{corpus.id}/finetune", json={"n_iterations": 100, "max_pairs": 100_000}
    )
    assert asked.status_code == 202, asked.text
    job_id = asked.json()["id"]
    running_worker.start()
    wait_for(lambda: "fine-tuning all-MiniLM-L6-v2: step" in job(db, job_id).message, what="steps")

    answer = client.post(f"/api/jobs/{job_id}/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    # the lane stops within an optimiser step or two; without the cancel it would still be
    # training long after this wait
    running_worker.stop(timeout=60)
    alive = [t for t in threading.enumerate() if t.name == FINETUNE_LANE.name and t.is_alive()]
    assert alive == [], "the fine-tuning lane is still training after the cancel"

    stopped = job(db, job_id)
    assert stopped.status == JobStatus.CANCELLED
    assert stopped.progress_done < 70  # it never reached the encoding of the items
    assert encoder_of(db, corpus.id) == MINILM_NAME
    assert not finetuning.encoder_dir(settings, corpus.id, job_id).exists()
    assert audit_events(db, corpus.id, "encoder.finetune") == []
    assert [e.detail["job_id"] for e in audit_events(db, corpus.id, "job.cancel")] == [job_id]


def test_a_cancel_that_arrives_after_training_still_keeps_the_encoder(
    db: Database, settings: Settings, topics: Callable[..., Topics]
) -> None:
    corpus = topics()
    corpus.label(16)
    queued = finetuning.request_finetune(db, settings, corpus.id, params=TINY)
    with db.transaction() as session:
        queue.cancel(session, queued.id)
    # run as a worker would have before the cancel, reporting nothing: the switch refuses
    with pytest.raises(JobCancelled):
        finetuning.finetune_project(
            db,
            settings,
            corpus.id,
            job_id=queued.id,
            params=finetuning.FinetuneParams.checked(TINY),
        )
    assert encoder_of(db, corpus.id) == MINILM_NAME
    assert audit_events(db, corpus.id, "encoder.finetune") == []


# -- from the command line ------------------------------------------------------------------------


def test_the_cli_sets_it_at_creation_or_says_why_it_cannot(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, embedding_cache_dir: Any
) -> None:
    from typer.testing import CliRunner

    from labella.cli.main import app

    monkeypatch.setenv("LABELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELLA_EMBEDDING_CACHE_DIR", str(embedding_cache_dir))
    monkeypatch.setenv("LABELLA_AUTO_FINETUNE_AT", "150")
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    runner = CliRunner()
    made = runner.invoke(app, ["project", "create", "plain", "--classes", "a,b"])
    assert made.exit_code == 0, made.output
    chosen = runner.invoke(
        app, ["project", "create", "chosen", "--classes", "a,b", "--auto-finetune-at", "0"]
    )
    assert chosen.exit_code == 0, chosen.output
    refused = runner.invoke(
        app,
        [
            *("project", "create", "boxes", "--classes", "car,bus"),
            *("--kind", "object_detection", "--auto-finetune-at", "50"),
        ],
    )
    assert refused.exit_code == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: auto_finetune_at must be 0 (off) for project 'boxes'")

    settings = Settings(
        data_dir=tmp_path / "data",
        embedding_cache_dir=embedding_cache_dir,
        _env_file=None,  # type: ignore[call-arg]
    )
    db = Database.from_settings(settings)
    try:
        by_name = {p.name: p.auto_finetune_at for p in project_service.list_projects(db)}
    finally:
        db.dispose()
    assert by_name == {"plain": 150, "chosen": 0}  # LABELLA_AUTO_FINETUNE_AT, then the option


def test_imported_labels_queue_it_once_their_items_are_embedded(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project(tuple(TOPICS), auto_finetune_at=20, retrain_every=1000)
    rows = ["text,label"] + [
        f'"{text} (report {k})",{topic}'
        for k in range(2)
        for topic, texts in TOPICS.items()
        for text in texts
    ]
    report = importing.import_file(
        db, settings, project.id, io.BytesIO("\n".join(rows).encode()), filename="labels.csv"
    )
    assert report.labels_created >= 20
    assert finetune_jobs(db, project.id) == []  # nothing is embedded yet
    encoding.encode_project(db, settings, project.id)
    [job] = finetune_jobs(db, project.id)
    assert job.status == JobStatus.QUEUED
    assert job.params["auto_labels"] == report.labels_created
    # embedding more items (or re-running the encode job) queues no second one
    encoding.encode_project(db, settings, project.id)
    assert len(finetune_jobs(db, project.id)) == 1
