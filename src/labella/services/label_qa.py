"""Label QA: find human labels the model confidently disagrees with, and queue them for review.

After each training, every current human label is predicted out of fold (k-fold, the project's
head on cached embeddings), confident learning picks the labels that look wrong, and they replace
the project's open review flags of this kind ("suspect_label"). Reviewers see them in the review
queue next to the other kinds and approve or change the labels there (services.review).

Single-label projects only: confident learning's per-class thresholds compare one given class with
one alternative; multi-label projects are skipped (no flags are written).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from sqlalchemy import delete, select

from labella.config import Settings
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    FlagStatus,
    Label,
    LabelFlag,
    ModelVersion,
    Project,
)

log = logging.getLogger(__name__)

FLAG_KIND = "suspect_label"
QA_FOLDS = 5
MAX_REVIEW_PAGE = 500
# Below this many labels the out-of-fold model is too weak for its disagreement to mean much.
MIN_LABELS_FOR_QA = 10
RankBy = Literal["margin", "self_confidence"]
ReviewAction = Literal["keep", "change"]


# -- the algorithm (pure numpy) --------------------------------------------------------------------
class LabelIssues(NamedTuple):
    """Suspected label errors, most suspicious first."""

    indices: np.ndarray  # int64 row indices into the labels
    scores: np.ndarray  # float64, higher is more suspicious
    suggested: np.ndarray  # int64 class the model believes instead


def find_label_issues(
    oof_probs: np.ndarray, y: np.ndarray, *, rank_by: RankBy = "self_confidence"
) -> LabelIssues:
    """Labels that out-of-fold predictions confidently contradict (confident learning).

    Northcutt, Jiang & Chuang, 2021, "Confident Learning: Estimating Uncertainty in Dataset
    Labels": class ``j``'s threshold ``t_j`` is the mean predicted probability of ``j`` over the
    items labeled ``j``. An item labeled ``i`` is counted for class ``j`` (a cell of the confident
    joint) when ``j`` is the most probable among the classes whose probability reaches their
    threshold; it is an issue when that ``j`` is not ``i``. Issues are ranked by the normalised
    margin ``p_j - p_i`` (``rank_by="margin"``, highest first) or by low self-confidence ``p_i``
    (``"self_confidence"``; its score is ``1 - p_i``). ``oof_probs`` must be out of sample: an
    in-sample fit agrees with its own labels, noise included.
    """
    probs = np.asarray(oof_probs, dtype=np.float64)
    labels = np.asarray(y)
    if probs.ndim != 2:
        raise ValueError(f"oof_probs must be 2-d (n_samples, n_classes), got shape {probs.shape}")
    if labels.ndim != 1 or len(labels) != len(probs):
        raise ValueError(f"y must be 1-d with {len(probs)} labels, got shape {labels.shape}")
    if rank_by not in ("margin", "self_confidence"):
        raise ValueError(f"rank_by must be 'margin' or 'self_confidence', got {rank_by!r}")
    n, n_classes = probs.shape
    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return LabelIssues(empty, np.empty(0), empty)
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got {labels.min()}..{labels.max()}")
    thresholds = per_class_thresholds(probs, labels)
    above = probs >= thresholds[None, :]
    # argmax among the classes above their threshold; rows with none above stay off the joint
    masked = np.where(above, probs, -np.inf)
    best = masked.argmax(axis=1)
    issue = above.any(axis=1) & (best != labels)
    rows = np.flatnonzero(issue)
    given = probs[rows, labels[rows]]
    scores = probs[rows, best[rows]] - given if rank_by == "margin" else 1.0 - given
    # stable sort: ties keep row order, so the ranking is deterministic
    order = np.argsort(-scores, kind="stable")
    return LabelIssues(
        rows[order].astype(np.int64), scores[order], best[rows][order].astype(np.int64)
    )


def per_class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean self-confidence per class; a class nobody labeled gets +inf (never suggested)."""
    n_classes = probs.shape[1]
    thresholds = np.full(n_classes, np.inf)
    for j in range(n_classes):
        members = labels == j
        if members.any():
            thresholds[j] = probs[members, j].mean()
    return thresholds


def out_of_fold_probs(
    new_head: Any, X: np.ndarray, y: np.ndarray, *, n_classes: int, folds: int, random_state: int
) -> np.ndarray:
    """Each row's class probabilities from a head (``new_head()``) fitted on the other folds."""
    from labella.learners.evaluation import stratified_folds

    n_folds = max(2, min(folds, len(y)))
    fold_of = stratified_folds(y, n_folds, np.random.default_rng(random_state))
    probs = np.zeros((len(y), n_classes), dtype=np.float64)
    for fold in range(n_folds):
        held_out = fold_of == fold
        if not held_out.any():
            continue
        head = new_head()
        head.fit(X[~held_out], y[~held_out])
        probs[held_out] = head.predict_proba(X[held_out])
    return probs


# -- flagging after training -----------------------------------------------------------------------
@dataclass(frozen=True)
class _QAInput:
    project: Project
    class_ids: list[int]
    item_ids: list[int]
    label_ids: list[int]
    keys: list[str]
    y: np.ndarray


def flag_label_issues(
    db: Database, settings: Settings, project_id: int, model_version_id: int | None
) -> int:
    """Replace the project's open review flags with the labels confident learning now suspects;
    returns how many were flagged.

    Flags already resolved stay as history, and a label a reviewer kept is never flagged again.
    Labels changed while this ran are not flagged (their flag would point at a superseded label).
    """
    from labella.learners.heads import make_head

    qa = _load_qa_input(db, project_id)
    if qa is None:
        return 0
    X = _embeddings(settings, qa)
    if X is None:
        return 0
    seed = settings.random_seed
    n_classes = len(qa.class_ids)

    def new_head() -> Any:
        return make_head(qa.project.head, n_classes=n_classes, multi_label=False, random_state=seed)

    probs = out_of_fold_probs(
        new_head, X, qa.y, n_classes=n_classes, folds=QA_FOLDS, random_state=seed
    )
    issues = find_label_issues(probs, qa.y)
    return _replace_open_flags(db, qa, issues, model_version_id)


def flag_after_training(
    db: Database, settings: Settings, project_id: int, model_version_id: int
) -> int | None:
    """:func:`flag_label_issues`, but a QA failure is logged instead of failing the training that
    called it (the model is already stored and ranked; QA is a bonus). None when it failed."""
    try:
        return flag_label_issues(db, settings, project_id, model_version_id)
    except Exception:  # any QA failure must leave the training succeeded
        log.exception("label QA failed for project %s; the training itself succeeded", project_id)
        return None


def _load_qa_input(db: Database, project_id: int) -> _QAInput | None:
    from labella.services.training import load_labeled_rows

    with db.reader() as session:
        project = repo.get_project(session, project_id)
        if project.multi_label:
            return None  # confident learning here is single-label only (see module docstring)
        rows = load_labeled_rows(session, project)
        if rows.n_usable < MIN_LABELS_FOR_QA:
            return None
        current = dict(
            session.execute(
                select(Label.item_id, Label.id).where(
                    Label.project_id == project_id, Label.is_current.is_(True)
                )
            ).all()
        )
        session.expunge(project)
    y = np.asarray([cols[0] for cols in rows.columns], dtype=np.int64)
    if len(np.unique(y)) < 2:
        return None
    return _QAInput(
        project=project,
        class_ids=rows.class_ids,
        item_ids=rows.item_ids,
        label_ids=[int(current[item_id]) for item_id in rows.item_ids],
        keys=rows.keys,
        y=y,
    )


def _embeddings(settings: Settings, qa: _QAInput) -> np.ndarray | None:
    from labella.services.encoding import open_cache

    _, cache = open_cache(settings, qa.project.encoder)
    try:
        X, found = cache.get_many(qa.keys)
    finally:
        cache.close()
    # training has just read the same vectors; a miss means the cache changed under us, and the
    # next training (after the re-encode it schedules) will run QA again
    return X if found.all() else None


def _replace_open_flags(
    db: Database, qa: _QAInput, issues: LabelIssues, model_version_id: int | None
) -> int:
    with db.transaction() as session:
        repo.get_project(session, qa.project.id, for_update=True)
        # only this kind: disagreements and work samples (services.review) are not the model's
        session.execute(
            delete(LabelFlag).where(
                LabelFlag.project_id == qa.project.id,
                LabelFlag.status == FlagStatus.OPEN,
                LabelFlag.kind == FLAG_KIND,
            )
        )
        candidate_labels = [qa.label_ids[i] for i in issues.indices.tolist()]
        still_current = set(
            session.scalars(
                select(Label.id).where(Label.id.in_(candidate_labels), Label.is_current.is_(True))
            )
        )
        # a label a reviewer approved (in any kind of review) is not flagged again
        kept = set(
            session.scalars(
                select(LabelFlag.label_id).where(
                    LabelFlag.project_id == qa.project.id, LabelFlag.status == FlagStatus.KEPT
                )
            )
        )
        if model_version_id is not None and session.get(ModelVersion, model_version_id) is None:
            model_version_id = None
        flags = [
            LabelFlag(
                project_id=qa.project.id,
                item_id=qa.item_ids[row],
                label_id=qa.label_ids[row],
                model_version_id=model_version_id,
                kind=FLAG_KIND,
                score=float(score),
                suggested_class_id=qa.class_ids[suggested],
                status=FlagStatus.OPEN,
            )
            for row, score, suggested in zip(
                issues.indices.tolist(),
                issues.scores.tolist(),
                issues.suggested.tolist(),
                strict=True,
            )
            if qa.label_ids[row] in still_current and qa.label_ids[row] not in kept
        ]
        session.add_all(flags)
        return len(flags)
