"""Detector training for object-detection projects: fit the project's detector on its human box
labels, measure mAP on the evaluation sample, store a model version, predict every image's boxes
and re-rank the queue.

Training runs in a background job (kind ``train_detector``), on demand (``training.
request_training`` hands detection projects here) and automatically every ``project.
retrain_every`` new human labels (``training.maybe_schedule_training`` hands them here).

* The detector is ``settings.detector`` (a name in the registry of ``learners.detector``) with
  ``settings.detector_params``; each version starts from the previous version's weights when it
  is the same detector (incremental), else from ImageNet's.
* Metrics (``model_version.metrics``): ``map50`` (VOC) and ``map50_95`` (COCO), overall and per
  class name in ``per_class``, on the project's evaluation sample (its items with ``eval_sample``
  set and a human label; they never train the detector): ``evaluated_on`` = "evaluation sample".
  Before any evaluation image is labeled, a fifth of the labeled images (at least one) is held
  out of training instead and ``evaluated_on`` says "AL-picked labels (biased)": active learning
  picked them, so they are harder (or easier) than the pool.
* Predictions: one ``prediction`` row per image of the project (labeled ones too: the auto-label
  audit compares boxes with the evaluation sample's), ``boxes`` in original-image pixels with the
  project's class ids, and the image-level summary of ``learners.detector.summarise_boxes``;
  ``probs[j]`` belongs to ``metrics["class_ids"][j]``.

A re-run of the same job (after a restart) reuses the model version the job already stored and
only finishes its predictions and ranking.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from labella.config import Settings
from labella.errors import InvalidInput, NotFound, NotReady
from labella.jobs import queue
from labella.jobs.runtime import JobContext, executor
from labella.services.encoding import ProgressReporter, _no_progress
from labella.services.training import (
    PREDICTION_COLUMNS,
    TrainingStages,
    TrainResult,
    active_job,
    chunks_by_item_id,
    count_rows,
    drop_older_predictions,
    json_safe,
    newest_label_id,
    run_training_job,
    store_model_version,
    upsert_prediction_rows,
    version_of_job,
)
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    Item,
    Job,
    Label,
    LabelBox,
    LabelKind,
    LabelSource,
    ModelVersion,
    Prediction,
    Project,
    ProjectKind,
)

log = logging.getLogger(__name__)

TRAIN_DETECTOR_JOB = "train_detector"
EVAL_SAMPLE = "evaluation sample"
BIASED = "AL-picked labels (biased)"
MIN_IMAGES = 2
HOLD_OUT_SHARE = 0.2
PREDICT_CHUNK = 32
_IN_BATCH = 500

Progress = Callable[[int, int], None]


# -- labels ---------------------------------------------------------------------------------------


@dataclass
class DetectionLabels:
    """The current human box labels of a project (skips excluded), one entry per image."""

    class_ids: list[int]
    class_names: list[str]
    item_ids: list[int] = field(default_factory=list)
    media: list[tuple[str | None, str]] = field(default_factory=list)  # (media_uri, content hash)
    eval_sample: list[bool] = field(default_factory=list)
    boxes: list[list[tuple[int, float, float, float, float]]] = field(default_factory=list)
    """Per image: (class index, x_min, y_min, x_max, y_max) in image pixels."""

    @property
    def n_images(self) -> int:
        return len(self.item_ids)

    @property
    def n_boxes(self) -> int:
        return sum(len(b) for b in self.boxes)

    def subset(self, rows: Sequence[int]) -> DetectionLabels:
        return DetectionLabels(
            class_ids=self.class_ids,
            class_names=self.class_names,
            item_ids=[self.item_ids[i] for i in rows],
            media=[self.media[i] for i in rows],
            eval_sample=[self.eval_sample[i] for i in rows],
            boxes=[self.boxes[i] for i in rows],
        )

    def class_counts(self) -> list[int]:
        counts = [0] * len(self.class_ids)
        for boxes in self.boxes:
            for box in boxes:
                counts[box[0]] += 1
        return counts


def _classes(project: Project) -> tuple[list[int], list[str]]:
    ordered = sorted(project.classes, key=lambda c: c.position)
    return [c.id for c in ordered], [c.name for c in ordered]


def load_detection_labels(session: Session, project: Project) -> DetectionLabels:
    """Every image whose current label is a human's, with its boxes (an image may have none)."""
    class_ids, class_names = _classes(project)
    index_of = {class_id: j for j, class_id in enumerate(class_ids)}
    rows = session.execute(
        select(
            Label.id,
            Label.item_id,
            Item.media_uri,
            Item.content_hash,
            Item.eval_sample,
            LabelBox.class_id,
            LabelBox.x_min,
            LabelBox.y_min,
            LabelBox.x_max,
            LabelBox.y_max,
        )
        .join(Item, Item.id == Label.item_id)
        .outerjoin(LabelBox, LabelBox.label_id == Label.id)
        .where(
            Label.project_id == project.id,
            Label.is_current.is_(True),
            Label.source == LabelSource.HUMAN,
            Label.skipped.is_(False),
            Label.kind == LabelKind.LABEL,
        )
        .order_by(Label.item_id, LabelBox.id)
    ).all()
    labels = DetectionLabels(class_ids=class_ids, class_names=class_names)
    position: dict[int, int] = {}
    for _label_id, item_id, uri, digest, in_eval, class_id, x0, y0, x1, y1 in rows:
        row = position.get(int(item_id))
        if row is None:
            row = position[int(item_id)] = labels.n_images
            labels.item_ids.append(int(item_id))
            labels.media.append((uri, str(digest)))
            labels.eval_sample.append(bool(in_eval))
            labels.boxes.append([])
        if class_id is not None and class_id in index_of:
            labels.boxes[row].append(
                (index_of[class_id], float(x0), float(y0), float(x1), float(y1))
            )
    return labels


def readiness_problem(labels: DetectionLabels, project: Project) -> str | None:
    """Why the labels cannot train a detector yet, in words; None when they can."""
    if labels.n_images == 0:
        return (
            f"project {project.name!r} has no labeled images yet; draw the boxes of at least "
            f"{MIN_IMAGES} images before training the detector"
        )
    if labels.n_images < MIN_IMAGES:
        return (
            f"training the detector needs at least {MIN_IMAGES} labeled images; project "
            f"{project.name!r} has {labels.n_images}"
        )
    if labels.n_boxes == 0:
        return (
            f"the {labels.n_images} labeled images of project {project.name!r} have no boxes; "
            "a detector needs at least one box to learn from"
        )
    return None


def split_for_evaluation(
    labels: DetectionLabels, *, seed: int
) -> tuple[DetectionLabels, DetectionLabels, str | None]:
    """(training images, evaluation images, what the evaluation is on).

    The labeled evaluation-sample images evaluate; the rest train. Without any, a fifth of the
    labels (at least one, seeded) is held out and the result is labelled biased; with too few
    labels to spare one (fewer than 3 images, or no box left to train on) nothing is evaluated.
    """
    in_eval = [i for i, flag in enumerate(labels.eval_sample) if flag]
    rest = [i for i, flag in enumerate(labels.eval_sample) if not flag]
    if in_eval and rest:
        return labels.subset(rest), labels.subset(in_eval), EVAL_SAMPLE
    if in_eval:  # every label is an evaluation label: train on them, evaluate nothing
        return labels, labels.subset([]), None
    if labels.n_images < 3:
        return labels, labels.subset([]), None
    rng = np.random.default_rng(seed)
    order = rng.permutation(labels.n_images)
    n_out = max(1, round(HOLD_OUT_SHARE * labels.n_images))
    held, kept = sorted(order[:n_out].tolist()), sorted(order[n_out:].tolist())
    train = labels.subset(kept)
    if train.n_boxes == 0:
        return labels, labels.subset([]), None
    return train, labels.subset(held), BIASED


# -- scheduling -----------------------------------------------------------------------------------


def is_detection(project: Project) -> bool:
    return bool(project.kind == ProjectKind.OBJECT_DETECTION)


def active_detector_training(session: Session, project_id: int) -> Job | None:
    return active_job(session, project_id, TRAIN_DETECTOR_JOB)


def enqueue_detector_training(session: Session, project_id: int, *, reason: str) -> Job:
    return queue.enqueue(
        session, kind=TRAIN_DETECTOR_JOB, project_id=project_id, params={"reason": reason}
    )


def labels_seen(model_version: ModelVersion) -> int:
    """Human labels a detector version saw: trained on, or held out to evaluate it."""
    metrics = model_version.metrics or {}
    return int(model_version.n_labels) + int(metrics.get("n_eval") or 0)


def maybe_schedule_detector_training(session: Session, project: Project) -> Job | None:
    """Queue a detector training when ``project.retrain_every`` human labels were added since the
    last version and none is queued or running; inside the caller's transaction."""
    n_labels = repo.count_human_labels(session, project.id)
    latest = repo.latest_model_version(session, project.id)
    trained_on = labels_seen(latest) if latest is not None else 0
    if n_labels - trained_on < project.retrain_every or n_labels < MIN_IMAGES:
        return None
    if active_detector_training(session, project.id) is not None:
        return None
    return enqueue_detector_training(
        session, project.id, reason=f"{n_labels - trained_on} new labels since the last detector"
    )


def request_detector_training(db: Database, project_id: int, *, actor: str = "system") -> Job:
    """Queue a detector training now (``training.request_training`` for a detection project);
    NotReady (409) says what is missing, InvalidInput a project of another kind."""
    from labella.services.training import request_training

    with db.reader() as session:
        project = repo.get_project(session, project_id)
        if not is_detection(project):
            raise InvalidInput(
                f"project {project.name!r} is a {project.kind.replace('_', ' ')} project; "
                "a detector trains on object-detection projects"
            )
    return request_training(db, project_id, actor=actor)


# -- images ---------------------------------------------------------------------------------------


def read_images(
    settings: Settings, media: Sequence[tuple[str | None, str]]
) -> tuple[list[np.ndarray | None], list[str]]:
    """Decoded RGB arrays of the images (None where one cannot be read) and the problems."""
    from labella.images import ImageProblem
    from labella.learners.detector import to_rgb_array
    from labella.storage.media import MediaStore

    store = MediaStore(settings)
    arrays: list[np.ndarray | None] = []
    problems: list[str] = []
    for uri, digest in media:
        if not uri:
            arrays.append(None)
            problems.append("an item has no image file")
            continue
        try:
            data = store.read(uri, expected_hash=digest)
            arrays.append(to_rgb_array(data))
        except (NotFound, InvalidInput, ImageProblem) as exc:
            arrays.append(None)
            problems.append(str(exc))
    return arrays, problems


# -- artifacts ------------------------------------------------------------------------------------


def detector_dir(settings: Settings, project_id: int, version: int) -> Path:
    return settings.models_dir / f"project-{project_id}" / f"v{version}-detector"


def prune_detector_weights(settings: Settings, project_id: int, newest: int) -> list[int]:
    """Delete the weights of the project's versions older than the newest
    ``settings.detector_versions_kept``; returns their version numbers.

    Only the newest version's detector is ever loaded again (to predict new images and to start
    the next training from); the older ones' metrics and predictions live in the database, so
    their weights would only fill the disk. A version whose weights are gone says so when loaded
    (:func:`load_version_detector`). A folder that cannot be deleted is logged and left for the
    next training's prune; it is not among the returned versions."""
    keep_from = newest - settings.detector_versions_kept + 1
    removed = []
    for path in (settings.models_dir / f"project-{project_id}").glob("v*-detector"):
        match = re.fullmatch(r"v(\d+)-detector", path.name)
        if match is not None and int(match.group(1)) < keep_from and path.is_dir():
            try:
                shutil.rmtree(path)
            except OSError as exc:
                # the training succeeded; old weights that cannot go yet are tried again after
                # the next one, and the log says which and why
                log.warning("project %s: could not delete %s: %s", project_id, path, exc)
                continue
            removed.append(int(match.group(1)))
    return sorted(removed)


def new_detector(settings: Settings) -> Any:
    from labella.learners.detector import make_detector

    try:
        return make_detector(settings.detector, **dict(settings.detector_params))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"the detector setting ({settings.detector!r} with {settings.detector_params}) is "
            f"not usable: {exc}"
        ) from exc


def load_version_detector(model_version: ModelVersion, settings: Settings) -> Any:
    """The fitted detector of a model version, read back from its artifact directory."""
    from labella.learners.detector import load_detector

    path = Path(model_version.artifact_path)
    if not path.is_dir():
        raise NotReady(
            f"the detector of model version {model_version.version} is missing ({path}); "
            "train the detector again"
        )
    # the machine's own choices (device, threads) come from the settings, not the artifact
    machine = {k: v for k, v in settings.detector_params.items() if k in ("device", "num_threads")}
    try:
        return load_detector(path, **machine)
    except (OSError, ValueError, RuntimeError) as exc:
        raise NotReady(
            f"the detector of model version {model_version.version} cannot be loaded ({exc}); "
            "train the detector again"
        ) from exc


def _previous_detector(
    session: Session, settings: Settings, project_id: int
) -> tuple[Any, int | None]:
    """The newest version's detector to continue from, when it is the configured one."""
    from labella.learners.detector import read_config

    latest = repo.latest_model_version(session, project_id)
    if latest is None or not (latest.metrics or {}).get("detector"):
        return None, None
    path = Path(latest.artifact_path)
    try:
        if read_config(path).get("name") != settings.detector:
            return None, None
        return load_version_detector(latest, settings), latest.version
    except (OSError, ValueError, NotReady) as exc:
        log.warning("project %s: starting the detector afresh: %s", project_id, exc)
        return None, None


# -- predictions ----------------------------------------------------------------------------------


def _needs_prediction(project_id: int, model_version_id: int) -> Any:
    return (
        select(Item.id, Item.media_uri, Item.content_hash)
        .outerjoin(Prediction, Prediction.item_id == Item.id)
        .where(
            Item.project_id == project_id,
            or_(Prediction.item_id.is_(None), Prediction.model_version_id < model_version_id),
        )
    )


def prediction_rows(
    boxes_per_image: Sequence[Sequence[dict[str, Any]]],
    item_ids: Sequence[int],
    *,
    project_id: int,
    model_version_id: int,
    class_ids: Sequence[int],
    display_floor: float,
) -> list[dict[str, Any]]:
    """``prediction`` rows: boxes with project class ids and the image-level summary."""
    from labella.learners.detector import summarise_boxes

    rows = []
    for item_id, found in zip(item_ids, boxes_per_image, strict=True):
        kept = [b for b in found if 0 <= int(b["class_index"]) < len(class_ids)]
        predicted, probs, confidence = summarise_boxes(
            kept, len(class_ids), display_floor=display_floor
        )
        rows.append(
            {
                "item_id": int(item_id),
                "project_id": project_id,
                "model_version_id": model_version_id,
                "probs": [round(p, 6) for p in probs],
                "predicted": sorted(int(class_ids[j]) for j in predicted),
                "confidence": float(confidence),
                "boxes": [
                    {
                        "class_id": int(class_ids[int(b["class_index"])]),
                        "x_min": float(b["x_min"]),
                        "y_min": float(b["y_min"]),
                        "x_max": float(b["x_max"]),
                        "y_max": float(b["y_max"]),
                        "score": float(b["score"]),
                    }
                    for b in kept
                ],
            }
        )
    return rows


def upsert_predictions(db: Database, rows: list[dict[str, Any]]) -> None:
    """Insert or overwrite the items' predictions in one statement (INSERT .. ON CONFLICT), as
    ``training.upsert_prediction_rows`` does, with the boxes."""
    upsert_prediction_rows(db, rows, columns=(*PREDICTION_COLUMNS, "boxes"))


def write_detector_predictions(
    db: Database,
    settings: Settings,
    project_id: int,
    model_version: ModelVersion,
    detector: Any,
    *,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Predict every image of the project that has no prediction of this version (or a newer
    one) yet, a chunk per short transaction, so a re-run continues where it stopped; then drop
    older versions' predictions. Returns (images predicted, images that could not be read)."""
    metrics = model_version.metrics or {}
    class_ids = [int(c) for c in metrics.get("class_ids", [])]
    floor = float(getattr(detector, "display_floor", 0.3))
    pending = _needs_prediction(project_id, model_version.id)
    todo = count_rows(db, pending)
    done = unreadable = 0
    for chunk in chunks_by_item_id(db, pending, size=PREDICT_CHUNK):
        arrays, _ = read_images(settings, [(row.media_uri, row.content_hash) for row in chunk])
        readable = [i for i, a in enumerate(arrays) if a is not None]
        unreadable += len(chunk) - len(readable)
        if readable:
            found = detector.predict([arrays[i] for i in readable])
            upsert_predictions(
                db,
                prediction_rows(
                    found,
                    [chunk[i].id for i in readable],
                    project_id=project_id,
                    model_version_id=model_version.id,
                    class_ids=class_ids,
                    display_floor=floor,
                ),
            )
        done += len(chunk)
        if progress is not None:
            progress(done, max(todo, done))
    drop_older_predictions(db, project_id, model_version.id)
    return done - unreadable, unreadable


def predict_missing_images(
    db: Database, settings: Settings, project_id: int, model_version: ModelVersion
) -> int:
    """Boxes for images imported after the detector was trained."""
    detector = load_version_detector(model_version, settings)
    return write_detector_predictions(db, settings, project_id, model_version, detector)[0]


# -- evaluation -----------------------------------------------------------------------------------


def evaluate(
    detector: Any, images: Sequence[np.ndarray], labels: DetectionLabels
) -> dict[str, Any]:
    """mAP@0.5 and mAP@0.5:0.95 of ``detector`` on labeled images, overall and per class name."""
    from labella.learners.detection_metrics import evaluate_detections

    names = labels.class_names
    found = detector.predict(list(images)) if len(images) else []
    truth: dict[Hashable, Any] = {
        i: [(names[c], x0, y0, x1, y1) for c, x0, y0, x1, y1 in boxes]
        for i, boxes in enumerate(labels.boxes)
    }
    detections: dict[Hashable, Any] = {
        i: [
            (names[b["class_index"]], b["x_min"], b["y_min"], b["x_max"], b["y_max"], b["score"])
            for b in boxes
            if 0 <= int(b["class_index"]) < len(names)
        ]
        for i, boxes in enumerate(found)
    }
    result = evaluate_detections(truth, detections)
    return {
        "map50": result.map50,
        "map50_95": result.map50_95,
        "per_class": {
            str(name): {
                "ap50": c.ap50,
                "ap50_95": c.ap50_95,
                "n_ground_truth": c.n_ground_truth,
                "n_detections": c.n_detections,
            }
            for name, c in result.per_class.items()
        },
    }


# -- training -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorTrainResult(TrainResult):
    summary_metrics: ClassVar[tuple[str, ...]] = ("map50", "map50_95", "evaluated_on")

    def headline(self) -> str:
        score = self.metrics.get("map50")
        quality = (
            f", mAP@0.5 {score:.3f} on the {self.metrics.get('evaluated_on')}"
            if isinstance(score, float)
            else ""
        )
        return (
            f"detector v{self.version} trained on {self.n_labels} images{quality}; "
            f"{self.n_predicted} images predicted, {self.n_ranked} ranked"
        )


# ranking, which has no progress of its own, takes the last 5
_STAGES = {"load": 5, "fit": 60, "evaluate": 5, "predict": 25, "rank": 5}


def _store_version(
    db: Database,
    settings: Settings,
    project_id: int,
    detector: Any,
    metrics: dict[str, Any],
    *,
    n_labels: int,
    job_id: int | None,
) -> ModelVersion:
    def save(version: int) -> Path:
        path = detector_dir(settings, project_id, version).resolve()
        detector.save(path)
        return path

    return store_model_version(
        db,
        project_id,
        save=save,
        head=str(getattr(detector, "head", "detector")),
        encoder=str(getattr(detector, "backbone", "efficientnet-lite0")),
        n_labels=n_labels,
        metrics=metrics,
        job_id=job_id,
    )


def train_detector_project(
    db: Database,
    settings: Settings,
    project_id: int,
    *,
    job_id: int | None = None,
    progress: ProgressReporter = _no_progress,
    note: str = "",
) -> DetectorTrainResult:
    """Train a new detector version on the current human boxes, evaluate it, predict every image
    and re-rank (see the module docstring)."""
    from labella.services import evaluation

    started = time.perf_counter()
    stages = TrainingStages(progress, note, weights=_STAGES)
    stages.begin("load", "loading the labeled images")
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        if not is_detection(project):
            raise InvalidInput(
                f"project {project.name!r} is not an object-detection project; it trains with "
                "the 'train' job"
            )
    evaluation.ensure_eval_sample(db, settings, project_id)
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        existing = version_of_job(session, job_id)
        label_watermark = newest_label_id(session, project_id)
        labels = load_detection_labels(session, project)
        previous, previous_version = (
            _previous_detector(session, settings, project_id) if existing is None else (None, None)
        )
    reused = existing is not None
    if existing is not None:
        model_version = existing
        detector = load_version_detector(existing, settings)
    else:
        problem = readiness_problem(labels, project)
        if problem is not None:
            raise NotReady(problem)
        train, held, evaluated_on = split_for_evaluation(labels, seed=settings.random_seed)
        arrays, problems = read_images(settings, train.media)
        usable = [i for i, a in enumerate(arrays) if a is not None]
        if not usable:
            raise NotReady(
                f"none of the {train.n_images} labeled images can be read ({problems[0]}); "
                "import them again"
            )
        detector = new_detector(settings)
        if previous is not None and getattr(previous, "n_classes_", None) is None:
            previous = None
        message = f"training the detector on {len(usable)} images" + (
            f" from model v{previous_version}" if previous is not None else ""
        )
        stages.begin("fit", message)
        fit_started = time.perf_counter()
        try:
            detector.fit(
                [arrays[i] for i in usable],
                [train.boxes[i] for i in usable],
                len(labels.class_ids),
                progress=stages.within("fit", message),
                init_from=previous,
            )
        except ValueError as exc:  # a detector's refusal of its settings or of a box, in words
            raise InvalidInput(f"the detector cannot train: {exc}") from exc
        fit_seconds = time.perf_counter() - fit_started
        stages.begin("evaluate", f"evaluating on {held.n_images} images ({evaluated_on})")
        held_arrays, held_problems = read_images(settings, held.media)
        readable = [i for i, a in enumerate(held_arrays) if a is not None]
        scores: dict[str, Any] = {"map50": None, "map50_95": None, "per_class": {}}
        if evaluated_on is not None and readable:
            eval_arrays = [a for a in held_arrays if a is not None]
            scores = evaluate(detector, eval_arrays, held.subset(readable))
        metrics = {
            **scores,
            "n_eval": held.n_images,
            "evaluated_on": evaluated_on or "none (too few labels to hold any out)",
            "detector": str(getattr(detector, "name", settings.detector)),
            "params": json_safe(detector.get_params()) if hasattr(detector, "get_params") else {},
            "init_from_version": previous_version if previous is not None else None,
            "n_labels": len(usable),
            "n_boxes": sum(len(train.boxes[i]) for i in usable),
            "n_unreadable": len(problems) + len(held_problems),
            "class_ids": labels.class_ids,
            "class_names": labels.class_names,
            "class_counts": train.subset(usable).class_counts(),
            "train_seconds": round(fit_seconds, 3),
            "n_steps": getattr(detector, "n_steps_", None),
            "label_watermark": label_watermark,
        }
        model_version = _store_version(
            db,
            settings,
            project_id,
            detector,
            json_safe(metrics),
            n_labels=len(usable),
            job_id=job_id,
        )
        # after the commit: a version that failed to store must not cost the previous weights
        pruned = prune_detector_weights(settings, project_id, model_version.version)
        if pruned:
            log.info("project %s: removed the detector weights of versions %s", project_id, pruned)
    stages.begin("predict", f"predicting boxes with detector v{model_version.version}")
    n_predicted, _ = write_detector_predictions(
        db,
        settings,
        project_id,
        model_version,
        detector,
        progress=stages.within("predict", f"predicting with detector v{model_version.version}"),
    )
    stages.begin("rank", "ranking the queue")
    from labella.services.detection_ranking import rank_detection_project

    ranked = rank_detection_project(db, settings, project_id, model_version=model_version)
    progress(100, 100, f"{note}detector v{model_version.version} ready", force=True)
    return DetectorTrainResult.from_version(
        model_version,
        n_predicted=n_predicted,
        n_ranked=ranked.n_ranked,
        started=started,
        reused=reused,
    )


@executor(TRAIN_DETECTOR_JOB)
def run_train_detector_job(context: JobContext) -> dict[str, Any]:
    if context.project_id is None:
        raise InvalidInput("a train_detector job needs a project")
    return run_training_job(context, context.project_id, train_detector_project)
