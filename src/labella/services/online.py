"""Online updates: the model learns from each label while annotators work, and the queue follows.

A full training (``services.training``) refits the head on every label, cross-validates, predicts
the whole pool and stores a model version; it takes seconds to minutes and runs every
``project.retrain_every`` labels. Between two trainings, each new human label (or each buffer of
``project.online_update_every`` labels) is learned incrementally: the newest version's head, or the
online head that already continues it, takes a ``partial_fit`` step on the new labels' cached
embeddings (Bottou, "Online learning and stochastic approximations", 1998; the heads replay class
prototypes so one label cannot sweep the others away), and the queue is re-ranked with it: the
whole pool is scored again, and the queue's top places (``ranking.PRELABEL_REFRESH``) are
rewritten with their items' prelabels; the places below wait for the next full training.

This runs as a job (kind ``online_update``) on the worker's fast lane, so labeling never waits: the
label's request returns at once and the next item is served from the current ranking, which the
update replaces a fraction of a second later. The job takes only the project id, reads the labels
newer than the online head's watermark, and is safe to re-run: a re-run finds nothing new, or
applies what the interrupted run did not save. The online head lives next to the model versions
(``models/project-N/online.npz``) and is superseded by the next full training: its labels are then
in the new version, and online updates continue from that version's watermark.

The random evaluation sample's labels never train the model (they evaluate it), online or not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labella.config import Settings
from labella.jobs import queue
from labella.jobs.runtime import JobContext, executor
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    Item,
    Job,
    Label,
    LabelSource,
    LabelValue,
    ModelVersion,
    Project,
)

ONLINE_JOB = "online_update"  # jobs.worker.FAST_KINDS runs it on the fast lane
_KEEP_FINISHED_JOBS = 20
"""Finished online-update jobs kept per project (one per label would pile up otherwise)."""


@dataclass(frozen=True)
class OnlineState:
    """Bookkeeping stored with the online head."""

    base_version_id: int
    """The model version the online head continues."""
    watermark: int
    """Every label with an id up to this one has been considered."""
    updates: int
    """Online updates applied since the base version."""
    labels_learned: int
    """Labels learned online since the base version."""


@dataclass(frozen=True)
class OnlineResult:
    applied: int
    """Labels learned by this update (0: nothing to do yet)."""
    waiting: int
    """New labels held back until the buffer (``online_update_every``) is full."""
    updates: int
    model_version: int | None
    n_ranked: int
    seconds: float
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "waiting": self.waiting,
            "updates": self.updates,
            "model_version": self.model_version,
            "n_ranked": self.n_ranked,
            "seconds": round(self.seconds, 4),
            "note": self.note,
        }


def online_head_path(settings: Settings, project_id: int) -> Path:
    return settings.models_dir / f"project-{project_id}" / "online.npz"


# -- scheduling (inside the labeling transaction) -------------------------------------------------


def maybe_schedule_online_update(session: Session, project: Project) -> Job | None:
    """Queue the project's online update after a human label, unless online updates are off or
    there is no model to update yet. A queued one is reused (dedupe), so a burst of labels makes
    one update that learns them all."""
    if project.online_update_every <= 0:
        return None
    has_model = session.scalar(
        select(ModelVersion.id).where(ModelVersion.project_id == project.id).limit(1)
    )
    if has_model is None:
        return None
    return queue.enqueue(session, kind=ONLINE_JOB, project_id=project.id)


# -- state ----------------------------------------------------------------------------------------


def _version_watermark(session: Session, model_version: ModelVersion) -> int:
    """The newest label id the version was trained on; versions trained before watermarks were
    recorded fall back to the labels created before the version."""
    recorded = (model_version.metrics or {}).get("label_watermark")
    if recorded is not None:
        return int(recorded)
    return int(
        session.scalar(
            select(func.max(Label.id)).where(
                Label.project_id == model_version.project_id,
                Label.created_at <= model_version.created_at,
            )
        )
        or 0
    )


def load_online_head(
    session: Session, settings: Settings, project_id: int, model_version: ModelVersion
) -> tuple[Any, OnlineState]:
    """The online head continuing ``model_version`` and its state; the version's own head (and
    watermark) when there is none yet or the stored one continues an older version."""
    from labella.services.training import load_head, read_head

    path = online_head_path(settings, project_id)
    if path.is_file():
        head, extra = read_head(path)
        if int(extra["online_base_version_id"]) == model_version.id:
            return head, OnlineState(
                base_version_id=model_version.id,
                watermark=int(extra["online_watermark"]),
                updates=int(extra["online_updates"]),
                labels_learned=int(extra["online_labels"]),
            )
    return load_head(model_version), OnlineState(
        base_version_id=model_version.id,
        watermark=_version_watermark(session, model_version),
        updates=0,
        labels_learned=0,
    )


def _save_online_head(
    settings: Settings, project_id: int, head: Any, state: OnlineState, *, kind: str
) -> None:
    from labella.services.training import save_head

    save_head(
        head,
        online_head_path(settings, project_id),
        kind=kind,
        class_ids=[int(c) for c in head.classes_],
        extra={
            "online_base_version_id": np.asarray(state.base_version_id),
            "online_watermark": np.asarray(state.watermark),
            "online_updates": np.asarray(state.updates),
            "online_labels": np.asarray(state.labels_learned),
        },
    )


# -- the update -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NewLabels:
    keys: list[str]
    targets: list[list[int]]
    """Head columns of each usable label's classes."""
    newest_id: int
    """The newest label id seen (usable or not)."""


def _new_labels(
    session: Session, project_id: int, after: int, columns: dict[int, int]
) -> _NewLabels:
    """Current human labels newer than ``after`` that can train: not skips, not the evaluation
    sample's, of embedded items, with classes the head has columns for."""
    rows = session.execute(
        select(
            Label.id,
            Label.skipped,
            Label.is_current,
            Label.source,
            Item.content_hash,
            Item.embedded,
            Item.eval_sample,
            LabelValue.class_id,
        )
        .join(Item, Item.id == Label.item_id)
        .outerjoin(LabelValue, LabelValue.label_id == Label.id)
        .where(Label.project_id == project_id, Label.id > after)
        .order_by(Label.id)
    ).all()
    per_label: dict[int, tuple[str, list[int]]] = {}
    newest = after
    for row in rows:
        newest = max(newest, int(row.id))
        usable = (
            row.is_current
            and row.source == LabelSource.HUMAN
            and not row.skipped
            and row.embedded
            and not row.eval_sample
        )
        if not usable:
            continue
        entry = per_label.setdefault(int(row.id), (str(row.content_hash), []))
        if row.class_id is not None and int(row.class_id) in columns:
            entry[1].append(columns[int(row.class_id)])
    keys = [key for key, _ in per_label.values()]
    targets = [cols for _, cols in per_label.values()]
    return _NewLabels(keys=keys, targets=targets, newest_id=newest)


def _target_array(targets: list[list[int]], *, n_classes: int, multi_label: bool) -> np.ndarray:
    if multi_label:
        y = np.zeros((len(targets), n_classes), dtype=np.float64)
        for row, cols in enumerate(targets):
            y[row, cols] = 1.0
        return y
    return np.asarray([cols[0] for cols in targets], dtype=np.int64)


def update_online(db: Database, settings: Settings, project_id: int) -> OnlineResult:
    """Learn the labels added since the last update (once ``online_update_every`` of them are
    in) and re-rank the queue with the updated head."""
    from labella.services.encoding import open_cache
    from labella.services.ranking import rank_project

    started = time.perf_counter()
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        every = project.online_update_every
        head_kind = project.head
        multi_label = bool(project.multi_label)
        model_version = repo.latest_model_version(session, project_id)
        if model_version is None or every <= 0:
            note = "no model yet" if model_version is None else "online updates are off"
            return OnlineResult(0, 0, 0, None, 0, time.perf_counter() - started, note)
        session.expunge(model_version)
        head, state = load_online_head(session, settings, project_id, model_version)
        columns = {int(c): j for j, c in enumerate(head.classes_)}
        new = _new_labels(session, project_id, state.watermark, columns)
    # single-label rows need a class the head knows; multi-label ones may be "none of these"
    usable = [
        (key, cols)
        for key, cols in zip(new.keys, new.targets, strict=True)
        if multi_label or len(cols) == 1
    ]
    if len(usable) < every:
        return OnlineResult(
            0, len(usable), state.updates, model_version.version, 0, time.perf_counter() - started
        )
    _, cache = open_cache(settings, model_version.encoder)
    try:
        X, found = cache.get_many([key for key, _ in usable])
    finally:
        cache.close()
    targets = [cols for (_, cols), ok in zip(usable, found, strict=True) if ok]
    if targets:
        y = _target_array(targets, n_classes=len(columns), multi_label=multi_label)
        head.partial_fit(X[found], y)
    state = OnlineState(
        base_version_id=model_version.id,
        watermark=new.newest_id,
        updates=state.updates + 1,
        labels_learned=state.labels_learned + len(targets),
    )
    _save_online_head(settings, project_id, head, state, kind=head_kind)
    ranked = rank_project(
        db,
        settings,
        project_id,
        model_version=model_version,
        head=head,
        seed_offset=state.updates,
        predict_queue=True,
    )
    _prune_finished_jobs(db, project_id)
    return OnlineResult(
        applied=len(targets),
        waiting=0,
        updates=state.updates,
        model_version=model_version.version,
        n_ranked=ranked.n_ranked,
        seconds=time.perf_counter() - started,
    )


def _prune_finished_jobs(db: Database, project_id: int) -> None:
    from sqlalchemy import delete

    from labella.storage.models import JobStatus

    with db.transaction() as session:
        keep_from = session.scalar(
            select(Job.id)
            .where(
                Job.project_id == project_id,
                Job.kind == ONLINE_JOB,
                Job.status == JobStatus.SUCCEEDED,
            )
            .order_by(Job.id.desc())
            .offset(_KEEP_FINISHED_JOBS)
            .limit(1)
        )
        if keep_from is not None:
            session.execute(
                delete(Job).where(
                    Job.project_id == project_id,
                    Job.kind == ONLINE_JOB,
                    Job.status == JobStatus.SUCCEEDED,
                    Job.id <= keep_from,
                )
            )


@executor(ONLINE_JOB)
def run_online_job(context: JobContext) -> dict[str, Any]:
    if context.project_id is None:
        raise ValueError("an online update needs a project")
    result = update_online(context.db, context.settings, context.project_id)
    if result.applied:
        message = (
            f"online update {result.updates} of model v{result.model_version}: learned "
            f"{result.applied} labels, {result.n_ranked} items re-ranked "
            f"in {result.seconds * 1000:.0f} ms"
        )
    elif result.note:
        message = f"online update skipped: {result.note}"
    else:
        message = f"online update waits for more labels ({result.waiting} so far)"
    return {**result.as_dict(), "message": message}
