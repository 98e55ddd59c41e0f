"""Training: fit the project's head on the embeddings of its human-labeled items, evaluate it by
cross-validation, store it as a new model version, predict every unlabeled item and re-rank.

Training runs in a background job (kind "train"), on demand and automatically every
``project.retrain_every`` new human labels (:func:`maybe_schedule_training`, called by the labeling
service inside its own transaction).

Head columns: column ``j`` of a head belongs to the ``j``-th class of the project ordered by
position at training time. The artifact (and ``metrics["class_ids"]``) records these class ids, and
``Prediction.probs[j]`` is the probability of ``class_ids[j]``; a class added later has no column,
so its probability is 0 until the next training.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from labella.config import Settings
from labella.errors import NotReady
from labella.jobs import queue
from labella.jobs.runtime import JobContext, executor
from labella.services.encoding import (
    ENCODE_JOB,
    ProgressReporter,
    _no_progress,
    open_cache,
    resume_note,
)
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    Item,
    ItemStatus,
    Job,
    JobStatus,
    Label,
    LabelSource,
    LabelValue,
    ModelVersion,
    Prediction,
    Project,
    ProjectKind,
)

TRAIN_JOB = "train"
CV_FOLDS = 5
PREDICT_CHUNK = 2000
# Statuses whose items get a prediction: everything no human has decided yet.
PREDICTED_STATUSES = (ItemStatus.UNLABELED, ItemStatus.SKIPPED, ItemStatus.AUTO)
_IN_BATCH = 500
_MIN_LABELS = 2
_PREDICTIONS = Prediction.metadata.tables[Prediction.__tablename__]


# -- labeled data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabeledRows:
    """The current human labels of a project, as training targets over head columns."""

    class_ids: list[int]
    class_names: list[str]
    item_ids: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    columns: list[list[int]] = field(default_factory=list)
    """Head column indices of each usable item's classes (one for single-label)."""
    n_human: int = 0
    """Items with a current human label, embedded or not."""
    n_unembedded: int = 0

    @property
    def n_usable(self) -> int:
        return len(self.item_ids)

    def class_counts(self) -> list[int]:
        counts = [0] * len(self.class_ids)
        for cols in self.columns:
            for column in cols:
                counts[column] += 1
        return counts


def load_labeled_rows(session: Session, project: Project) -> LabeledRows:
    """Every item whose current label is a human's (skips excluded), grouped per item."""
    classes = sorted(project.classes, key=lambda c: c.position)
    class_ids = [c.id for c in classes]
    column_of = {class_id: j for j, class_id in enumerate(class_ids)}
    rows = session.execute(
        select(Label.item_id, Item.content_hash, Item.embedded, LabelValue.class_id)
        .join(Item, Item.id == Label.item_id)
        .outerjoin(LabelValue, LabelValue.label_id == Label.id)
        .where(
            Label.project_id == project.id,
            Label.is_current.is_(True),
            Label.source == LabelSource.HUMAN,
            Label.skipped.is_(False),
        )
        .order_by(Label.item_id)
    ).all()
    per_item: dict[int, tuple[str, bool, set[int]]] = {}
    for item_id, key, embedded, class_id in rows:
        entry = per_item.setdefault(int(item_id), (str(key), bool(embedded), set()))
        if class_id is not None and class_id in column_of:
            entry[2].add(column_of[class_id])
    item_ids: list[int] = []
    keys: list[str] = []
    columns: list[list[int]] = []
    n_unembedded = 0
    for item_id, (key, embedded, cols) in per_item.items():
        if not embedded:
            n_unembedded += 1
            continue
        if not project.multi_label and not cols:
            continue  # a single-label label without a class cannot be a target
        item_ids.append(item_id)
        keys.append(key)
        # A single-label item should have exactly one class; if not, the first by position wins.
        columns.append(sorted(cols) if project.multi_label else [min(cols)])
    return LabeledRows(
        class_ids=class_ids,
        class_names=[c.name for c in classes],
        item_ids=item_ids,
        keys=keys,
        columns=columns,
        n_human=len(per_item),
        n_unembedded=n_unembedded,
    )


def readiness_problem(rows: LabeledRows, project: Project) -> str | None:
    """Why the labels cannot train a model yet, in words; None when they can."""
    waiting = (
        f" ({rows.n_unembedded} labeled items are still being encoded; they count once the "
        "encode job has embedded them)"
        if rows.n_unembedded
        else ""
    )
    if rows.n_human == 0:
        return (
            f"project {project.name!r} has no human labels yet; label at least {_MIN_LABELS} "
            "items of 2 different classes before training"
        )
    if rows.n_usable < _MIN_LABELS:
        return (
            f"training needs at least {_MIN_LABELS} labeled, embedded items; project "
            f"{project.name!r} has {rows.n_usable}{waiting}"
        )
    counts = rows.class_counts()
    present = [name for name, n in zip(rows.class_names, counts, strict=True) if n]
    if project.multi_label:
        distinct = {tuple(cols) for cols in rows.columns}
        if not present or len(distinct) < 2:
            return (
                "training needs labels that differ: so far every labeled item has the same "
                f"classes ({', '.join(present) or 'none'}){waiting}"
            )
        return None
    if len(present) < 2:
        return (
            "training needs labels of at least 2 different classes; so far only "
            f"{present[0]!r} is labeled ({counts[rows.class_names.index(present[0])]} items)"
            f"{waiting}"
        )
    return None


def _targets(rows: LabeledRows, *, multi_label: bool) -> np.ndarray:
    if multi_label:
        indicator = np.zeros((rows.n_usable, len(rows.class_ids)), dtype=bool)
        for i, cols in enumerate(rows.columns):
            indicator[i, cols] = True
        return indicator
    return np.asarray([cols[0] for cols in rows.columns], dtype=np.int64)


# -- scheduling -----------------------------------------------------------------------------------


def active_job(session: Session, project_id: int, kind: str) -> Job | None:
    """The project's oldest queued or running job of ``kind`` (a training), if any."""
    return session.scalar(
        select(Job)
        .where(
            Job.project_id == project_id,
            Job.kind == kind,
            Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
        )
        .order_by(Job.id)
        .limit(1)
    )


def enqueue_training(session: Session, project_id: int, *, reason: str) -> Job:
    project = session.get(Project, project_id)
    if project is not None and project.kind == ProjectKind.OBJECT_DETECTION:
        # a detection project trains a detector on its boxes, not a head on embeddings
        from labella.services.detection_training import enqueue_detector_training

        return enqueue_detector_training(session, project_id, reason=reason)
    return queue.enqueue(session, kind=TRAIN_JOB, project_id=project_id, params={"reason": reason})


def _usable_label_stats(session: Session, project_id: int) -> tuple[int, int]:
    """Items with a current human label that are embedded, and the classes those labels use."""
    row = session.execute(
        select(
            func.count(func.distinct(Label.item_id)),
            func.count(func.distinct(LabelValue.class_id)),
        )
        .select_from(Label)
        .join(Item, Item.id == Label.item_id)
        .outerjoin(LabelValue, LabelValue.label_id == Label.id)
        .where(
            Label.project_id == project_id,
            Label.is_current.is_(True),
            Label.source == LabelSource.HUMAN,
            Label.skipped.is_(False),
            Item.embedded.is_(True),
        )
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


def maybe_schedule_training(session: Session, project: Project) -> Job | None:
    """Queue a training job when ``project.retrain_every`` human labels were added since the last
    model and none is queued or running; returns the new job, else None.

    Runs inside the caller's transaction (the labeling service, after each label). It does not
    queue a job that is bound to fail: a single-label project needs two labeled classes among
    its embedded items first.

    It also queues the project's online update (services.online), which learns from the new
    label within a second instead of waiting for the next training.
    """
    from labella.services.finetuning import maybe_schedule_finetune
    from labella.services.online import maybe_schedule_online_update

    if project.kind == ProjectKind.OBJECT_DETECTION:
        # no online update (it updates a head on embeddings); the detector retrains instead
        from labella.services.detection_training import maybe_schedule_detector_training

        return maybe_schedule_detector_training(session, project)
    maybe_schedule_online_update(session, project)
    n_labels = repo.count_human_labels(session, project.id)
    # the encoder fine-tunes itself at project.auto_finetune_at labels (services.finetuning)
    maybe_schedule_finetune(session, project, n_labels=n_labels)
    latest = repo.latest_model_version(session, project.id)
    # held-out evaluation labels count as seen: else, once they outnumber retrain_every, every
    # new label would schedule a training
    trained_on = 0
    if latest is not None:
        from labella.services.evaluation import held_out_labels

        trained_on = latest.n_labels + held_out_labels(latest)
    if n_labels - trained_on < project.retrain_every or n_labels < _MIN_LABELS:
        return None
    if active_job(session, project.id, TRAIN_JOB) is not None:
        return None
    # Only labels of embedded items train; a job bound to fail is not queued (the next label, or
    # the end of the encode job, tries again).
    usable, n_classes = _usable_label_stats(session, project.id)
    if usable < _MIN_LABELS or n_classes < (1 if project.multi_label else 2):
        return None
    return enqueue_training(
        session, project.id, reason=f"{n_labels - trained_on} new labels since the last model"
    )


def request_training(db: Database, project_id: int, *, actor: str = "system") -> Job:
    """Queue a training job now; NotReady (409) says what is missing when the labels cannot
    train a model yet."""
    with db.transaction() as session:
        project = repo.get_project(session, project_id, for_update=True)
        if project.kind == ProjectKind.OBJECT_DETECTION:  # queues a train_detector job
            from labella.services import detection_training as detection

            problem = detection.readiness_problem(
                detection.load_detection_labels(session, project), project
            )
        else:
            problem = readiness_problem(load_labeled_rows(session, project), project)
        if problem is not None:
            raise NotReady(problem)
        job = enqueue_training(session, project_id, reason="requested")
        from labella.services import audit

        audit.record(
            session,
            actor=actor,
            action="train.request",
            project_id=project_id,
            detail={"job_id": job.id},
        )
        return job


def list_model_versions(db: Database, project_id: int) -> list[ModelVersion]:
    """Every model version of the project, oldest first (the learning curve)."""
    with db.reader() as session:
        repo.get_project(session, project_id)
        return list(
            session.scalars(
                select(ModelVersion)
                .where(ModelVersion.project_id == project_id)
                .order_by(ModelVersion.version)
            )
        )


# -- artifacts ------------------------------------------------------------------------------------


def artifact_path(settings: Settings, project_id: int, version: int) -> Path:
    return settings.models_dir / f"project-{project_id}" / f"v{version}.npz"


_STATE_PREFIX = "state_"


def save_head(
    head: Any,
    path: Path,
    *,
    kind: str,
    class_ids: Sequence[int],
    extra: dict[str, np.ndarray] | None = None,
) -> None:
    """Write the head's learned arrays (and ``extra`` bookkeeping arrays) with np.savez,
    atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "kind": np.asarray(kind),
        "class_ids": np.asarray(class_ids, dtype=np.int64),
        "multi_label": np.asarray(bool(head.multi_label)),
        # readable without labella: the weights as scikit-learn names them
        "coef": np.asarray(head.coef_),
        "intercept": np.asarray(head.intercept_),
    }
    arrays.update({f"{_STATE_PREFIX}{name}": value for name, value in head.get_state().items()})
    arrays.update(extra or {})
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as stream:
        np.savez(stream, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


def load_head(model_version: ModelVersion) -> Any:
    """The fitted head of a model version, read back from its artifact.

    Its ``classes_`` holds the project class ids of its columns (scikit-learn's convention).
    """
    path = Path(model_version.artifact_path)
    if not path.is_file():
        raise NotReady(
            f"the artifact of model version {model_version.version} is missing ({path}); "
            "train the model again"
        )
    head, _ = read_head(path)
    return head


def read_head(path: Path) -> tuple[Any, dict[str, np.ndarray]]:
    """The head stored at ``path`` by :func:`save_head`, and the file's other arrays."""
    from labella.learners.heads import make_head

    with np.load(path, allow_pickle=False) as data:
        class_ids = data["class_ids"].astype(np.int64)
        multi_label = bool(data["multi_label"])
        head: Any = make_head(
            str(data["kind"]),
            n_classes=len(class_ids),
            multi_label=multi_label,
            random_state=None,
        )
        state = {
            name.removeprefix(_STATE_PREFIX): data[name]
            for name in data.files
            if name.startswith(_STATE_PREFIX)
        }
        others = {name: data[name] for name in data.files if not name.startswith(_STATE_PREFIX)}
    head.set_state(state)
    head.classes_ = class_ids
    return head, others


# -- predictions ----------------------------------------------------------------------------------


def summarise_probs(
    probs: np.ndarray, class_ids: np.ndarray, *, multi_label: bool, thresholds: np.ndarray | None
) -> tuple[list[list[int]], np.ndarray]:
    """Predicted class ids per row and a confidence per row.

    Single-label: the argmax class, confidence = its probability. Multi-label: every class at or
    above its threshold, confidence = mean over classes of max(p, 1 - p).
    """
    if multi_label:
        cut = thresholds if thresholds is not None else np.full(probs.shape[1], 0.5)
        chosen = probs >= cut.astype(np.float32)
        predicted = [class_ids[row].tolist() for row in chosen]
        confidence = np.maximum(probs, 1.0 - probs).mean(axis=1)
        return predicted, confidence
    top = probs.argmax(axis=1)
    return [[int(class_ids[j])] for j in top], probs.max(axis=1)


def _needs_prediction(project_id: int, model_version_id: int) -> Any:
    return (
        select(Item.id, Item.content_hash)
        .outerjoin(Prediction, Prediction.item_id == Item.id)
        .where(
            Item.project_id == project_id,
            Item.embedded.is_(True),
            Item.status.in_(list(PREDICTED_STATUSES)),
            # rows of older models only: a newer model's predictions are never overwritten
            or_(Prediction.item_id.is_(None), Prediction.model_version_id < model_version_id),
        )
    )


def unflag_lost_embeddings(db: Database, project_id: int, item_ids: Sequence[int]) -> None:
    """Items flagged embedded whose vectors are not in the cache (a deleted cache directory):
    flag them unembedded and queue an encode job, so they are encoded again."""
    if not item_ids:
        return
    with db.transaction() as session:
        for start in range(0, len(item_ids), _IN_BATCH):
            batch = list(item_ids[start : start + _IN_BATCH])
            session.execute(update(Item).where(Item.id.in_(batch)).values(embedded=False))
        queue.enqueue(session, kind=ENCODE_JOB, project_id=project_id)


def count_rows(db: Database, statement: Any) -> int:
    """How many rows ``statement`` (a select) returns, for a progress total."""
    with db.reader() as session:
        return int(session.scalar(select(func.count()).select_from(statement.subquery())) or 0)


def chunks_by_item_id(db: Database, statement: Any, *, size: int) -> Iterator[Sequence[Any]]:
    """The rows of ``statement`` (a select of ``Item.id`` and more) in item-id order, ``size`` at
    a time, each chunk read in its own short transaction: what the caller writes between chunks
    commits as it goes, so a re-run continues where it stopped."""
    last_id = 0
    while True:
        with db.reader() as session:
            chunk = session.execute(
                statement.where(Item.id > last_id).order_by(Item.id).limit(size)
            ).all()
        if not chunk:
            return
        last_id = int(chunk[-1].id)
        yield chunk


def drop_older_predictions(db: Database, project_id: int, model_version_id: int) -> None:
    """Delete the project's predictions from versions older than ``model_version_id``, once that
    version has written its own (what is left of the old ones belongs to items it skips)."""
    with db.transaction() as session:
        session.execute(
            delete(Prediction).where(
                Prediction.project_id == project_id,
                Prediction.model_version_id < model_version_id,
            )
        )


def write_predictions(
    db: Database,
    settings: Settings,
    project_id: int,
    model_version: ModelVersion,
    *,
    head: Any | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Store the model's prediction for every embedded item no human has labeled that has none
    from this model version (or a newer one) yet, so a re-run continues where it stopped; then
    drop the predictions of older versions (items labeled since keep none). Each chunk is
    replaced in its own short transaction. Returns the number of items predicted."""
    head = head if head is not None else load_head(model_version)
    pending = _needs_prediction(project_id, model_version.id)
    todo = count_rows(db, pending)
    _, cache = open_cache(settings, model_version.encoder)
    done = 0
    lost: list[int] = []
    try:
        for chunk in chunks_by_item_id(db, pending, size=PREDICT_CHUNK):
            ids = np.asarray([row.id for row in chunk], dtype=np.int64)
            vectors, found = cache.get_many([row.content_hash for row in chunk])
            lost.extend(ids[~found].tolist())
            ids, vectors = ids[found], vectors[found]
            if len(ids):
                replace_predictions_for(
                    db, project_id, model_version.id, head, ids, head.predict_proba(vectors)
                )
            done += len(chunk)
            if progress is not None:
                progress(done, max(todo, done))
    finally:
        cache.close()
    drop_older_predictions(db, project_id, model_version.id)
    unflag_lost_embeddings(db, project_id, lost)
    return done - len(lost)


PREDICTION_COLUMNS = ("project_id", "model_version_id", "probs", "predicted", "confidence")
"""The columns of a ``prediction`` row (besides ``item_id``) that a new prediction overwrites."""


def upsert_prediction_rows(
    db: Database, rows: list[dict[str, Any]], *, columns: Sequence[str] = PREDICTION_COLUMNS
) -> None:
    """Insert the items' predictions, or overwrite ``columns`` of the ones they have, in one
    statement (INSERT .. ON CONFLICT); of two rows for one item the last wins.

    A delete-then-insert races on PostgreSQL: under READ COMMITTED a second writer's DELETE
    misses the row the first one just inserted, and its INSERT then hits the primary key.
    """
    if not rows:
        return
    unique = list({row["item_id"]: row for row in rows}.values())
    from sqlalchemy.dialects import postgresql, sqlite

    with db.transaction() as session:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        statement: Any = dialect.insert(_PREDICTIONS)
        statement = statement.on_conflict_do_update(
            index_elements=[_PREDICTIONS.c.item_id],
            set_={column: statement.excluded[column] for column in columns},
        )
        session.execute(statement, unique)


def replace_predictions_for(
    db: Database,
    project_id: int,
    model_version_id: int,
    head: Any,
    item_ids: np.ndarray,
    probs: np.ndarray,
) -> None:
    """Store ``probs`` (rows of ``head``'s columns) as the predictions of ``item_ids``, filed under
    ``model_version_id``: an online update refreshes the prelabels of the queued items this way."""
    class_ids = np.asarray(head.classes_, dtype=np.int64)
    thresholds = getattr(head, "thresholds_", None) if head.multi_label else None
    predicted, confidence = summarise_probs(
        probs, class_ids, multi_label=head.multi_label, thresholds=thresholds
    )
    rows = [
        {
            "item_id": item_id,
            "project_id": project_id,
            "model_version_id": model_version_id,
            "probs": prob_row,
            "predicted": predicted_ids,
            "confidence": conf,
        }
        for item_id, prob_row, predicted_ids, conf in zip(
            item_ids.tolist(),
            np.round(probs.astype(np.float64), 6).tolist(),
            predicted,
            confidence.tolist(),
            strict=True,
        )
    ]
    upsert_prediction_rows(db, rows)


def predict_missing(
    db: Database, settings: Settings, project_id: int, model_version: ModelVersion
) -> int:
    """Predictions for items embedded after the model was trained (new imports)."""
    if (model_version.metrics or {}).get("detector"):
        from labella.services.detection_training import predict_missing_images

        return predict_missing_images(db, settings, project_id, model_version)
    return write_predictions(db, settings, project_id, model_version)


# -- training -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    """What a training job reports; the detector's (services.detection_training) has this shape
    too, with its own headline metrics."""

    model_version_id: int
    version: int
    n_labels: int
    metrics: dict[str, Any]
    n_predicted: int
    n_ranked: int
    seconds: float
    reused: bool = False
    # the entries of ``metrics`` the job's result shows
    summary_metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")

    @classmethod
    def from_version(
        cls,
        model_version: ModelVersion,
        *,
        n_predicted: int,
        n_ranked: int,
        started: float,
        reused: bool,
    ) -> Self:
        """The result of a training that stored (or, re-run, reused) ``model_version``;
        ``started`` is the training's ``time.perf_counter()`` at its start."""
        return cls(
            model_version_id=model_version.id,
            version=model_version.version,
            n_labels=model_version.n_labels,
            metrics=dict(model_version.metrics),
            n_predicted=n_predicted,
            n_ranked=n_ranked,
            seconds=time.perf_counter() - started,
            reused=reused,
        )

    def headline(self) -> str:
        """The job's message, after its resume note."""
        accuracy = self.metrics.get("accuracy")
        quality = (
            f", cross-validated accuracy {accuracy:.3f}" if isinstance(accuracy, float) else ""
        )
        return (
            f"model v{self.version} trained on {self.n_labels} labels{quality}; "
            f"{self.n_predicted} items predicted, {self.n_ranked} ranked"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_version_id": self.model_version_id,
            "version": self.version,
            "n_labels": self.n_labels,
            **{key: self.metrics.get(key) for key in self.summary_metrics},
            "n_predicted": self.n_predicted,
            "n_ranked": self.n_ranked,
            "seconds": round(self.seconds, 3),
        }


_STAGES = {"load": 5, "evaluate": 30, "fit": 10, "predict": 45, "rank": 10}


class TrainingStages:
    """Maps each stage's own (done, total) onto one 0..100 progress scale: ``weights`` lists the
    stages in order with their share of it (a classifier's or a detector's training)."""

    def __init__(self, progress: ProgressReporter, note: str, *, weights: dict[str, int]) -> None:
        self.progress = progress
        self.note = note
        self.weights = weights

    def begin(self, stage: str, message: str) -> None:
        self.progress(self._offset(stage), 100, f"{self.note}{message}", force=True)

    def _offset(self, stage: str) -> int:
        total = 0
        for name, weight in self.weights.items():
            if name == stage:
                return total
            total += weight
        raise KeyError(stage)

    def within(self, stage: str, message: str) -> Callable[[int, int], None]:
        offset, weight = self._offset(stage), self.weights[stage]

        def report(done: int, total: int) -> None:
            fraction = done / total if total else 1.0
            self.progress(offset + int(weight * fraction), 100, f"{self.note}{message}")

        return report


def uses_self_training(project: Project) -> bool:
    """Whether the project's training learns from pseudo-labels too: its setting, for the
    single-label classification projects it applies to."""
    return bool(project.self_training) and not project.multi_label


def self_training_pool(db: Database, settings: Settings, project: Project) -> np.ndarray:
    """Embeddings of the unlabeled items a training may pseudo-label: at most
    ``learners.self_training.MAX_UNLABELED`` of them, a seeded sample. The random evaluation
    sample is left out even while unlabeled: it measures the model, so the model must not have
    fitted anything to it, not even its own guesses."""
    from labella.learners.self_training import sample_rows
    from labella.services.ranking import load_pool

    pool = load_pool(db, settings, project.id, project.encoder)
    with db.reader() as session:
        eval_ids = session.scalars(
            select(Item.id).where(Item.project_id == project.id, Item.eval_sample.is_(True))
        ).all()
    open_rows = np.flatnonzero(
        ~pool.labeled & ~np.isin(pool.item_ids, np.asarray(eval_ids, dtype=np.int64))
    )
    return pool.embeddings[sample_rows(open_rows, random_state=settings.random_seed)]


def _fit_model(
    rows: LabeledRows,
    X: np.ndarray,
    project: Project,
    settings: Settings,
    stages: TrainingStages,
    *,
    unlabeled: np.ndarray | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The project's head fitted on the labels, and its cross-validated metrics. With
    ``unlabeled`` rows the head self-trains on them (learners.self_training), and so does each
    cross-validation fold, so that the metrics measure what is stored."""
    from labella.learners.evaluation import cross_validated_metrics
    from labella.learners.heads import make_head
    from labella.learners.self_training import SelfTrainedHead

    n_classes = len(rows.class_ids)
    y = _targets(rows, multi_label=project.multi_label)
    seed = settings.random_seed

    def plain_head() -> Any:
        return make_head(
            project.head, n_classes=n_classes, multi_label=project.multi_label, random_state=seed
        )

    def new_head(on_round: Callable[[int, int], None] | None = None) -> Any:
        if unlabeled is None:
            return plain_head()
        return SelfTrainedHead(plain_head, unlabeled, on_round=on_round)

    # self-training makes each fold, and the final fit, several fits on up to 20,000 rows: the
    # messages say so and the progress moves within them, so a long stage does not look stuck
    also = "" if unlabeled is None else f", self-training on {len(unlabeled):,} unlabeled items"
    evaluating = f"cross-validating on {rows.n_usable} labels"
    if unlabeled is not None:
        evaluating += f" (each fold self-training on {len(unlabeled):,} unlabeled items)"
    stages.begin("evaluate", evaluating)
    started = time.perf_counter()
    metrics = dict(
        cross_validated_metrics(
            new_head,
            X,
            y,
            n_classes=n_classes,
            multi_label=project.multi_label,
            folds=CV_FOLDS,
            random_state=seed,
            class_names=rows.class_names,
            tune_thresholds=project.multi_label,
            on_fold=stages.within("evaluate", evaluating),
        )
    )
    cv_seconds = time.perf_counter() - started
    fitting = f"training the {project.head} head on {rows.n_usable} labels{also}"
    stages.begin("fit", fitting)
    started = time.perf_counter()
    head = new_head(on_round=stages.within("fit", fitting)).fit(X, y)
    if isinstance(head, SelfTrainedHead):
        metrics["self_training"] = {
            "pseudo_labels": head.n_pseudo_labels_,
            "unlabeled_seen": len(head.unlabeled),
            "rounds": head.rounds,
            "fraction": head.fraction,
        }
        head = head.head_
    head.classes_ = np.asarray(rows.class_ids, dtype=np.int64)
    if project.multi_label and metrics.get("thresholds") is not None:
        # each class's cut where its out-of-fold F1 peaks: rare classes get far from 0.5
        head.thresholds_ = np.asarray(metrics["thresholds"], dtype=np.float64)
    metrics.update(
        {
            "n_labels": rows.n_usable,
            "class_ids": rows.class_ids,
            "class_names": rows.class_names,
            "class_counts": rows.class_counts(),
            "train_seconds": round(time.perf_counter() - started, 4),
            "cv_seconds": round(cv_seconds, 4),
        }
    )
    return head, json_safe(metrics)


def json_safe(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON (NaN as null), so the metrics store on any backend."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _store_model_version(
    db: Database,
    settings: Settings,
    project: Project,
    head: Any,
    metrics: dict[str, Any],
    *,
    n_labels: int,
    job_id: int | None,
    class_ids: list[int],
) -> ModelVersion:
    def save(version: int) -> Path:
        path = artifact_path(settings, project.id, version).resolve()
        save_head(head, path, kind=project.head, class_ids=class_ids)
        return path

    return store_model_version(
        db,
        project.id,
        save=save,
        head=project.head,
        encoder=project.encoder,
        n_labels=n_labels,
        metrics=metrics,
        job_id=job_id,
    )


def store_model_version(
    db: Database,
    project_id: int,
    *,
    save: Callable[[int], Path],
    head: str,
    encoder: str,
    n_labels: int,
    metrics: dict[str, Any],
    job_id: int | None,
) -> ModelVersion:
    """Store the project's next model version; ``save`` writes the artifact of that version
    number and returns its path."""
    with db.transaction() as session:
        # The project lock (PostgreSQL) or the write lock (SQLite) keeps two trainings of one
        # project from taking the same version number.
        repo.get_project(session, project_id, for_update=True)
        latest = repo.latest_model_version(session, project_id)
        version = (latest.version if latest is not None else 0) + 1
        path = save(version)
        model_version = ModelVersion(
            project_id=project_id,
            version=version,
            head=head,
            encoder=encoder,
            n_labels=n_labels,
            metrics=metrics,
            artifact_path=str(path),
            job_id=job_id,
        )
        session.add(model_version)
        session.flush()
        return model_version


def version_of_job(session: Session, job_id: int | None) -> ModelVersion | None:
    """The model version a training job already stored (a re-run after a restart reuses it)."""
    if job_id is None:
        return None
    return session.scalar(select(ModelVersion).where(ModelVersion.job_id == job_id))


def newest_label_id(session: Session, project_id: int) -> int:
    """The project's highest label id (0 without labels): a version records it as the
    ``label_watermark`` of the labels it has seen."""
    return int(
        session.scalar(select(func.max(Label.id)).where(Label.project_id == project_id)) or 0
    )


def train_project(
    db: Database,
    settings: Settings,
    project_id: int,
    *,
    job_id: int | None = None,
    progress: ProgressReporter = _no_progress,
    note: str = "",
) -> TrainResult:
    """Train a new model version on the current human labels, predict the rest and re-rank.

    A re-run of the same job (after a restart) reuses the model version the job already stored
    and only finishes its predictions and ranking.
    """
    from labella.services import evaluation
    from labella.services.ranking import rank_project

    started = time.perf_counter()
    stages = TrainingStages(progress, note, weights=_STAGES)
    stages.begin("load", "loading labels and embeddings")
    evaluation.ensure_eval_sample(db, settings, project_id)
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        existing = version_of_job(session, job_id)
        label_watermark = newest_label_id(session, project_id)
        rows = load_labeled_rows(session, project)
        # the random evaluation sample's labels evaluate the model, so they must not train it
        rows, eval_rows = evaluation.split_eval_rows(session, project, rows)
    reused = existing is not None
    if existing is not None:
        model_version = existing
        head = load_head(existing)
    else:
        problem = readiness_problem(rows, project)
        if problem is not None:
            raise NotReady(problem)
        _, cache = open_cache(settings, project.encoder)
        try:
            X, found = cache.get_many(rows.keys)
        finally:
            cache.close()
        if not found.all():
            lost = [item_id for item_id, ok in zip(rows.item_ids, found, strict=True) if not ok]
            unflag_lost_embeddings(db, project_id, lost)
            raise NotReady(
                f"the embeddings of {len(lost)} labeled items are missing from the cache; they "
                "are being encoded again, train once that job has finished"
            )
        unlabeled = (
            self_training_pool(db, settings, project) if uses_self_training(project) else None
        )
        head, metrics = _fit_model(rows, X, project, settings, stages, unlabeled=unlabeled)
        # the labels this version has seen, for the online updates that follow it
        metrics["label_watermark"] = label_watermark
        # which vectors it learned from; a fine-tuned encoder also says which job made it
        from labella.services.finetuning import encoder_metrics

        metrics.update(encoder_metrics(settings, project.encoder))
        metrics = json_safe(
            evaluation.add_sample_metrics(
                metrics, head, eval_rows, settings, project, rows.class_names
            )
        )
        model_version = _store_model_version(
            db,
            settings,
            project,
            head,
            metrics,
            n_labels=rows.n_usable,
            job_id=job_id,
            class_ids=rows.class_ids,
        )
    stages.begin("predict", f"predicting unlabeled items with model v{model_version.version}")
    # a re-run has already replaced some predictions, so it cannot measure the agreement
    previous = None if reused else evaluation.snapshot_predictions(db, project_id)
    n_predicted = write_predictions(
        db,
        settings,
        project_id,
        model_version,
        head=head,
        progress=stages.within("predict", f"predicting with model v{model_version.version}"),
    )
    if previous is not None:
        evaluation.record_agreement(db, project_id, model_version, previous)
    stages.begin("rank", f"ranking the queue with strategy {project.strategy!r}")
    ranked = rank_project(db, settings, project_id, model_version=model_version)
    # label QA (review queue of suspect labels); it logs its own failures, never failing training
    from labella.services.label_qa import flag_after_training

    flag_after_training(db, settings, project_id, model_version.id)
    progress(100, 100, f"{note}model v{model_version.version} ready", force=True)
    return TrainResult.from_version(
        model_version,
        n_predicted=n_predicted,
        n_ranked=ranked.n_ranked,
        started=started,
        reused=reused,
    )


def run_training_job(
    context: JobContext, project_id: int, train: Callable[..., TrainResult]
) -> dict[str, Any]:
    """Run ``train`` (:func:`train_project` or the detector's) as the job ``context`` runs, and
    return the job's result: the training's summary and its message."""
    note = resume_note(context)
    result = train(
        context.db,
        context.settings,
        project_id,
        job_id=context.job_id,
        progress=context.progress,
        note=note,
    )
    return {**result.as_dict(), "message": f"{note}{result.headline()}"}


@executor(TRAIN_JOB)
def run_train_job(context: JobContext) -> dict[str, Any]:
    if context.project_id is None:
        raise ValueError("a train job needs a project")
    return run_training_job(context, context.project_id, train_project)
