"""The train_detector job end to end on a tiny real detection project (synthetic shapes imported
from VOC files), on SQLite and PostgreSQL: a model version with mAP metrics, prediction rows with
boxes for every image, a safe re-run, the next version continuing from the last, scheduling
through the classification entry points, and clear failures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from labella.config import Settings
from labella.errors import InvalidInput, NotReady
from labella.jobs import queue
from labella.jobs.worker import Lane, Worker
from labella.services import detection_training, training
from labella.services.detection_import import import_folder
from labella.services.detection_training import (
    BIASED,
    EVAL_SAMPLE,
    TRAIN_DETECTOR_JOB,
    detector_dir,
    enqueue_detector_training,
    load_version_detector,
    prune_detector_weights,
    request_detector_training,
)
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import Item, Job, JobStatus, ModelVersion, Prediction
from tests.learners.shapes import write_shapes_folder

CLASSES = ("square", "circle")
# a few steps on small inputs: the job's plumbing is under test here, the detector's skill in
# tests/learners/test_detector.py
FAST = {"input_size": 64, "batch_size": 4, "max_steps": 4, "min_steps": 0, "epochs": 1}
DETECTOR_LANE = Lane("detector", kinds=(TRAIN_DETECTOR_JOB,))


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    settings.detector_params = dict(FAST)
    return settings


@pytest.fixture
def shapes_project(
    db: Database, fast_settings: Settings, make_project: Callable[..., Any], tmp_path: Path
) -> Any:
    project = make_project(CLASSES, kind="object_detection")
    folder = write_shapes_folder(tmp_path / "shapes", 12, classes=CLASSES)
    report = import_folder(db, fast_settings, project.id, folder, roots=[tmp_path])
    assert report.labels_created == 12
    return project


def run_detector_jobs(worker: Worker) -> int:
    count = 0
    while worker.run_once(DETECTOR_LANE):
        count += 1
    return count


def job_row(db: Database, job_id: int) -> Job:
    with db.reader() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def versions(db: Database, project_id: int) -> list[ModelVersion]:
    with db.reader() as session:
        rows = list(
            session.scalars(
                select(ModelVersion)
                .where(ModelVersion.project_id == project_id)
                .order_by(ModelVersion.version)
            )
        )
        for row in rows:
            session.expunge(row)
        return rows


def predictions(db: Database, project_id: int) -> dict[int, Prediction]:
    with db.reader() as session:
        rows = list(session.scalars(select(Prediction).where(Prediction.project_id == project_id)))
        for row in rows:
            session.expunge(row)
        return {row.item_id: row for row in rows}


def test_train_detector_job_stores_a_version_with_map_and_boxes_for_every_image(
    db: Database, fast_settings: Settings, worker: Worker, shapes_project: Any, client: Any
) -> None:
    project = shapes_project
    with db.transaction() as session:  # three labeled images of the evaluation sample
        first = select(Item.id).where(Item.project_id == project.id).order_by(Item.id).limit(3)
        session.execute(update(Item).where(Item.id.in_(first)).values(eval_sample=True))
    job = training.request_training(db, project.id)  # the classification entry point routes
    assert job.kind == TRAIN_DETECTOR_JOB
    assert run_detector_jobs(worker) == 1
    done = job_row(db, job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert "detector v1 trained on" in done.message
    assert "mAP@0.5" in done.message

    (version,) = versions(db, project.id)
    assert (version.head, version.encoder) == ("centernet", "efficientnet-lite0")
    metrics = version.metrics
    assert metrics["evaluated_on"] == EVAL_SAMPLE
    with db.reader() as session:
        n_eval = len(
            session.scalars(
                select(Item.id).where(Item.project_id == project.id, Item.eval_sample.is_(True))
            ).all()
        )
    assert n_eval == 3 and metrics["n_eval"] == n_eval
    assert version.n_labels == 12 - n_eval
    assert 0.0 <= metrics["map50"] <= 1.0 and 0.0 <= metrics["map50_95"] <= metrics["map50"]
    assert set(metrics["per_class"]) <= set(CLASSES)
    assert metrics["per_class"]
    for scores in metrics["per_class"].values():
        assert {"ap50", "ap50_95"} <= set(scores)
    assert Path(version.artifact_path, "detector.json").is_file()

    class_ids = [c.id for c in sorted(project.classes, key=lambda c: c.position)]
    assert metrics["class_ids"] == class_ids
    rows = predictions(db, project.id)
    with db.reader() as session:
        item_ids = set(session.scalars(select(Item.id).where(Item.project_id == project.id)))
    assert set(rows) == item_ids  # every image, labeled ones too
    for row in rows.values():
        assert row.model_version_id == version.id
        assert isinstance(row.boxes, list)
        assert len(row.probs) == len(CLASSES)
        assert 0.0 <= row.confidence <= 1.0
        for box in row.boxes:
            assert box["class_id"] in class_ids
            assert 0 <= box["x_min"] < box["x_max"] <= 96 and 0 <= box["y_min"] < box["y_max"] <= 96
            assert box["score"] >= 0.05
        shown = sorted({b["class_id"] for b in row.boxes if b["score"] >= 0.3})
        assert row.predicted == shown

    listed = client.get(f"/api/projects/{project.id}/models")
    assert listed.status_code == 200
    (shown_version,) = listed.json()
    assert shown_version["metrics"]["map50"] == metrics["map50"]
    assert shown_version["metrics"]["evaluated_on"] == EVAL_SAMPLE

    # re-run of the same job (a restart): same version, predictions kept, no second version
    with db.transaction() as session:
        session.execute(
            update(Job).where(Job.id == job.id).values(status=JobStatus.QUEUED, attempts=1)
        )
    assert run_detector_jobs(worker) == 1
    assert job_row(db, job.id).status == JobStatus.SUCCEEDED
    assert [v.id for v in versions(db, project.id)] == [version.id]
    assert set(predictions(db, project.id)) == item_ids

    # the next version continues from this one's weights
    second = training.request_training(db, project.id)
    run_detector_jobs(worker)
    assert job_row(db, second.id).status == JobStatus.SUCCEEDED
    latest = versions(db, project.id)[-1]
    assert latest.version == 2 and latest.metrics["init_from_version"] == 1
    assert {p.model_version_id for p in predictions(db, project.id).values()} == {latest.id}

    # keeping only the newest version's weights: once v3 is stored, v1's and v2's are removed;
    # they keep their metrics, and loading one says what is missing
    fast_settings.detector_versions_kept = 1
    third = training.request_training(db, project.id)
    run_detector_jobs(worker)
    assert job_row(db, third.id).status == JobStatus.SUCCEEDED
    first, second_version, third_version = versions(db, project.id)
    kept = [Path(v.artifact_path).is_dir() for v in (first, second_version, third_version)]
    assert kept == [False, False, True]
    assert third_version.metrics["init_from_version"] == 2  # loaded before v2's were removed
    assert first.metrics["map50"] == metrics["map50"]
    with pytest.raises(NotReady, match="model version 1 is missing"):
        load_version_detector(first, fast_settings)


def test_without_evaluation_labels_a_held_out_part_evaluates_and_says_biased(
    db: Database, fast_settings: Settings, worker: Worker, shapes_project: Any
) -> None:
    fast_settings.eval_sample_size = 0
    request_detector_training(db, shapes_project.id)
    run_detector_jobs(worker)
    (version,) = versions(db, shapes_project.id)
    assert version.metrics["evaluated_on"] == BIASED
    assert version.metrics["n_eval"] == round(0.2 * 12)
    assert version.n_labels == 12 - round(0.2 * 12)
    assert version.metrics["map50"] is not None


def test_labels_schedule_a_detector_training_not_a_classification_one(
    db: Database, fast_settings: Settings, shapes_project: Any
) -> None:
    with db.transaction() as session:
        project = repo.get_project(session, shapes_project.id)
        project.retrain_every = 5
        job = training.maybe_schedule_training(session, project)
        assert job is not None and job.kind == TRAIN_DETECTOR_JOB
        # one queued is enough
        assert training.maybe_schedule_training(session, project) is None
        kinds = session.scalars(select(Job.kind).where(Job.project_id == project.id)).all()
    assert "train" not in kinds and "online_update" not in kinds


def test_no_labeled_images_is_a_clear_refusal_and_a_clear_job_failure(
    db: Database, fast_settings: Settings, worker: Worker, make_project: Callable[..., Any]
) -> None:
    project = make_project(CLASSES, kind="object_detection")
    with pytest.raises(NotReady, match="has no labeled images yet"):
        training.request_training(db, project.id)
    with db.transaction() as session:
        job = enqueue_detector_training(session, project.id, reason="test")
    run_detector_jobs(worker)
    failed = job_row(db, job.id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None and "has no labeled images yet" in failed.error
    assert "Traceback" not in failed.error


def test_a_classification_project_is_refused(
    db: Database, fast_settings: Settings, worker: Worker, make_project: Callable[..., Any]
) -> None:
    project = make_project(("a", "b"))
    with pytest.raises(InvalidInput, match="object-detection projects"):
        request_detector_training(db, project.id)
    with db.transaction() as session:
        job = queue.enqueue(session, kind=TRAIN_DETECTOR_JOB, project_id=project.id)
    run_detector_jobs(worker)
    failed = job_row(db, job.id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None and "not an object-detection project" in failed.error


def test_a_bad_detector_setting_fails_the_job_with_its_reason(
    db: Database, fast_settings: Settings, worker: Worker, shapes_project: Any
) -> None:
    fast_settings.detector_params = {"input_size": 100}
    job = request_detector_training(db, shapes_project.id)
    run_detector_jobs(worker)
    failed = job_row(db, job.id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.startswith("the detector cannot train: input_size must be a multiple")
    assert versions(db, shapes_project.id) == []


def test_prune_keeps_the_newest_weights_and_logs_a_folder_it_cannot_delete(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings.detector_versions_kept = 2
    folders = {v: detector_dir(settings, 7, v) for v in (1, 2, 3, 4)}
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "weights.pt").write_bytes(b"w")
    stuck = folders[1]
    real_rmtree = detection_training.shutil.rmtree

    def rmtree_failing_on_stuck(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path) == stuck:  # e.g. a file held open on Windows, or a read-only mount
            raise PermissionError(13, "Permission denied", str(path))
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(detection_training.shutil, "rmtree", rmtree_failing_on_stuck)
    with caplog.at_level("WARNING", logger=detection_training.__name__):
        assert prune_detector_weights(settings, 7, newest=4) == [2]
    assert [folders[v].is_dir() for v in (1, 2, 3, 4)] == [True, False, True, True]
    assert f"could not delete {stuck}" in caplog.text and "Permission denied" in caplog.text

    monkeypatch.setattr(detection_training.shutil, "rmtree", real_rmtree)
    assert prune_detector_weights(settings, 7, newest=4) == [1]  # the next prune retries it
    assert not stuck.exists()
