"""Honest evaluation: a uniformly random evaluation sample, metrics on it, and a stopping signal.

Items picked by active learning are biased (the strategy seeks the hard ones), so metrics computed
only on them say little about the model on the whole pool. A small evaluation sample, drawn
uniformly from the pool's unlabeled items, is labeled like any other item (``next_batch`` serves
one every ``settings.eval_every`` slots, with the reason :data:`EVAL_REASON`) and never trains the
model that it evaluates.

Where the sample is drawn: at the start of every training (:func:`ensure_eval_sample` tops it up
to ``settings.eval_sample_size``, at most a fifth of the project's items; idempotent). Training is
a background job, so the draw costs the labeling hot path nothing, and the first model (the first
point where an evaluation could matter) is when the sample starts being served. ``POST
/api/projects/{id}/evaluation-sample`` draws it earlier on request. Items imported after the draw
are not in it; a later top-up draws from the pool as it is then.

Training (``services.training``) uses three helpers from here: :func:`split_eval_rows` takes the
sample's labels out of the training set once there are :data:`MIN_EVAL_LABELS` of them,
:func:`add_sample_metrics` adds ``metrics["evaluation"]`` (with a Wilson interval) and labels the
cross-validation as biased, and :func:`snapshot_predictions` / :func:`record_agreement` measure how
many unlabeled items' predicted classes the new model left unchanged (the stopping signal's
stability half).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Integer, Select, and_, bindparam, exists, func, or_, select, update
from sqlalchemy.orm import Session

from labella.config import Settings
from labella.errors import InvalidInput
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    Item,
    ItemAssignment,
    ItemStatus,
    ModelVersion,
    Prediction,
    Project,
)

if TYPE_CHECKING:
    from labella.services.training import LabeledRows

EVAL_REASON = "evaluation sample (random)"
EVAL_METHOD = "random evaluation sample"
CV_BIASED_METHOD = "cross-validation on actively picked labels (biased)"
MIN_EVAL_LABELS = 10
"""Labeled evaluation items needed before they are held out and reported."""
MIN_CALIBRATION_LABELS = 20
"""Labeled evaluation items needed to calibrate probabilities for a target precision."""
_IN_BATCH = 500
EVAL_KEY_OFFSET = 2.0
"""Added to an evaluation item's ``random_key`` (otherwise in [0, 1)) when it is drawn. The sample
is served only through its own slots, so its keys are free to move: shifted past every other key,
the sample is one contiguous range of ``ix_item_random`` (project, status, random_key), and
serving it is an index range seek instead of a walk over the whole pool (no schema change); its
order among itself stays the uniform random order."""
_Z95 = 1.959963984540054


# -- statistics -----------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, *, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson, 1927, "Probable Inference, the Law
    of Succession, and Statistical Inference"); unlike the normal interval it stays inside [0, 1]
    and is sensible for small n and proportions near 0 or 1. n = 0 gives (0, 1)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# -- the sample -----------------------------------------------------------------------------------


def draw_eval_sample(
    db: Database, settings: Settings, project_id: int, *, size: int, actor: str | None = None
) -> int:
    """Mark unlabeled items of the project, drawn uniformly at random, as the evaluation sample
    until it holds ``size`` items (labeled ones included); returns how many were newly drawn.

    Idempotent: a sample that is already full draws nothing. The draw is seeded by
    ``settings.random_seed``, the project and the sample's current size.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidInput(f"evaluation sample size must be a whole number >= 0, got {size!r}")
    with db.transaction() as session:
        # the project lock keeps two concurrent draws from both topping the sample up
        repo.get_project(session, project_id, for_update=True)
        have = int(
            session.scalar(
                select(func.count()).where(
                    Item.project_id == project_id, Item.eval_sample.is_(True)
                )
            )
            or 0
        )
        need = size - have
        if need <= 0:
            return 0
        candidates = select(Item.id).where(
            Item.project_id == project_id,
            Item.status == ItemStatus.UNLABELED.value,
            Item.eval_sample.is_(False),
            # an overlapped item some annotators hold or answered stays theirs: as an
            # evaluation item it would be served again to one who already answered
            ~exists().where(ItemAssignment.item_id == Item.id),
        )
        chosen = repo.mark_random_items(
            session,
            candidates,
            need=need,
            seed=[settings.random_seed, project_id, have],
            values={"eval_sample": True, "random_key": Item.random_key + EVAL_KEY_OFFSET},
        )
        if not chosen:
            return 0
        if actor is not None:  # a person's request; the automatic top-up after training is not
            from labella.services import audit

            audit.record(
                session,
                actor=actor,
                action="eval_sample.draw",
                project_id=project_id,
                detail={"size": size, "drawn": len(chosen)},
            )
        return len(chosen)


def ensure_eval_sample(db: Database, settings: Settings, project_id: int) -> int:
    """Top the sample up to ``settings.eval_sample_size``, but to at most a fifth of the project's
    items, so that a small project keeps most of its pool for active learning; returns how many
    items were newly drawn."""
    with db.reader() as session:
        n_items = int(
            session.scalar(select(func.count()).where(Item.project_id == project_id)) or 0
        )
    return draw_eval_sample(
        db, settings, project_id, size=min(settings.eval_sample_size, n_items // 5)
    )


def held_out_labels(model_version: ModelVersion) -> int:
    """Evaluation labels a model version saw (held out, so not in its ``n_labels``)."""
    report = (model_version.metrics or {}).get("evaluation") or {}
    return int(report.get("n") or 0)


@dataclasses.dataclass(frozen=True)
class EvalSampleStatus:
    project_id: int
    size: int
    labeled: int
    unlabeled: int


def eval_sample_status(db: Database, project_id: int) -> EvalSampleStatus:
    with db.reader() as session:
        repo.get_project(session, project_id)
        counts = dict(
            session.execute(
                select(Item.status, func.count())
                .where(Item.project_id == project_id, Item.eval_sample.is_(True))
                .group_by(Item.status)
            ).all()
        )
    return EvalSampleStatus(
        project_id=project_id,
        size=int(sum(counts.values())),
        labeled=int(counts.get(ItemStatus.LABELED.value, 0)),
        unlabeled=int(counts.get(ItemStatus.UNLABELED.value, 0)),
    )


# -- serving (called by labeling.next_batch) -------------------------------------------------------


@functools.cache
def _eval_query(dialect: str) -> Select:
    """Unlabeled evaluation items servable to ``annotator`` in ``random_key`` order (a uniform
    order, so the labeled part of the sample stays a uniform subsample of it)."""
    now = bindparam("now", type_=Item.lease_until.type)
    annotator = bindparam("annotator", type_=Item.leased_by.type)
    mine = and_(Item.leased_by == annotator, Item.lease_until > now)
    query = (
        select(Item.id, mine)
        .where(
            Item.project_id == bindparam("project_id"),
            Item.status == ItemStatus.UNLABELED.value,
            Item.random_key >= EVAL_KEY_OFFSET,
            Item.eval_sample.is_(True),
            or_(Item.lease_until.is_(None), Item.lease_until <= now, Item.leased_by == annotator),
        )
        .order_by(Item.random_key, Item.id)
        .limit(bindparam("limit", type_=Integer))
    )
    if dialect == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Item)
    return query


def interleave_eval_items(
    session: Session,
    project_id: int,
    picked: list[tuple[int, bool]],
    *,
    n: int,
    every: int,
    params: dict[str, Any],
) -> list[tuple[int, bool]]:
    """Put one evaluation item in every ``every``-th slot of the batch, counted over the
    project's human labels so that batches of one still get theirs; an annotator's own leased
    evaluation items come back (a refresh is idempotent), and evaluation items fill the batch when
    the rest of the queue has run out. ``picked`` is the queue's (id, mine) in order, without
    evaluation items."""
    offset = repo.count_human_labels(session, project_id)
    slots = {i for i in range(n) if (offset + i + 1) % every == 0}
    if not slots and len(picked) >= n:
        # nothing to interleave in this batch: spare the hot path the evaluation query
        return picked
    rows = [
        (int(item_id), bool(mine))
        for item_id, mine in session.execute(
            _eval_query(session.get_bind().dialect.name), {**params, "limit": n}
        )
    ]
    if not rows:
        return picked
    ordered = [r for r in rows if r[1]] + [r for r in rows if not r[1]]
    n_mine = sum(1 for r in rows if r[1])
    chosen, spare = ordered[: max(len(slots), n_mine)], ordered[max(len(slots), n_mine) :]
    normal = list(picked)
    out: list[tuple[int, bool]] = []
    for i in range(n):
        if chosen and (i in slots or not normal):
            out.append(chosen.pop(0))
        elif normal:
            out.append(normal.pop(0))
        elif spare:
            out.append(spare.pop(0))
    return out


# -- training (called by training.train_project) ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvalRows:
    item_ids: list[int]
    keys: list[str]
    columns: list[list[int]]


def split_eval_rows(
    session: Session, project: Project, rows: LabeledRows
) -> tuple[LabeledRows, EvalRows | None]:
    """(training rows, evaluation rows): the evaluation sample's labels are held out once there
    are ``MIN_EVAL_LABELS`` of them and the rest can still train a model; before that they train
    like any label (too few to evaluate on, and a first model needs every label)."""
    from labella.services.training import readiness_problem

    eval_ids: set[int] = set()
    for start in range(0, len(rows.item_ids), _IN_BATCH):
        batch = rows.item_ids[start : start + _IN_BATCH]
        eval_ids.update(
            int(i)
            for i in session.scalars(
                select(Item.id).where(Item.id.in_(batch), Item.eval_sample.is_(True))
            )
        )
    if len(eval_ids) < MIN_EVAL_LABELS:
        return rows, None
    keep = [i for i, item_id in enumerate(rows.item_ids) if item_id not in eval_ids]
    held = [i for i, item_id in enumerate(rows.item_ids) if item_id in eval_ids]
    train = dataclasses.replace(
        rows,
        item_ids=[rows.item_ids[i] for i in keep],
        keys=[rows.keys[i] for i in keep],
        columns=[rows.columns[i] for i in keep],
        n_human=rows.n_human - len(held),
    )
    if readiness_problem(train, project) is not None:
        return rows, None
    return train, EvalRows(
        item_ids=[rows.item_ids[i] for i in held],
        keys=[rows.keys[i] for i in held],
        columns=[rows.columns[i] for i in held],
    )


def add_sample_metrics(
    metrics: dict[str, Any],
    head: Any,
    eval_rows: EvalRows | None,
    settings: Settings,
    project: Project,
    class_names: list[str],
) -> dict[str, Any]:
    """The training metrics with the cross-validation labelled as biased and, when the
    evaluation sample was held out, ``evaluation`` (its scores with a Wilson 95% interval for the
    accuracy) and ``evaluation_sample`` (its probabilities and labels, for calibration)."""
    from labella.learners.evaluation import holdout_metrics
    from labella.services.encoding import open_cache

    out = dict(metrics)
    if out.get("method"):
        out["method"] = f"{CV_BIASED_METHOD}: {out['method']}"
    if eval_rows is None or not eval_rows.item_ids:
        return out
    _, cache = open_cache(settings, project.encoder)
    try:
        X, found = cache.get_many(eval_rows.keys)
    finally:
        cache.close()
    keep = np.flatnonzero(found)
    if len(keep) < MIN_EVAL_LABELS:
        return out
    X = X[keep]
    columns = [eval_rows.columns[i] for i in keep]
    n_classes = len(class_names)
    probs = np.asarray(head.predict_proba(X), dtype=np.float64)
    if project.multi_label:
        y: np.ndarray = np.zeros((len(keep), n_classes), dtype=bool)
        for r, cols in enumerate(columns):
            y[r, cols] = True
    else:
        y = np.asarray([cols[0] for cols in columns], dtype=np.int64)
    scores = holdout_metrics(
        y,
        probs,
        n_classes=n_classes,
        multi_label=project.multi_label,
        class_names=class_names,
        thresholds=getattr(head, "thresholds_", None) if project.multi_label else None,
    )
    n = len(keep)
    accuracy = scores.get("accuracy")
    low, high = (
        wilson_interval(round(float(accuracy) * n), n) if accuracy is not None else (None, None)
    )
    out["evaluation"] = {
        "accuracy": accuracy,
        "macro_f1": scores.get("macro_f1"),
        "per_class": scores.get("per_class"),
        "n": n,
        "ci_low": low,
        "ci_high": high,
        "method": EVAL_METHOD,
    }
    out["evaluation_sample"] = {
        "item_ids": [eval_rows.item_ids[i] for i in keep],
        "probs": np.round(probs, 6).tolist(),
        "targets": y.astype(int).tolist(),
    }
    return out


def snapshot_predictions(db: Database, project_id: int) -> dict[int, tuple[int, ...]]:
    """The predicted classes of every unlabeled item now (before a new model replaces them)."""
    with db.reader() as session:
        rows = session.execute(
            select(Prediction.item_id, Prediction.predicted)
            .join(Item, Item.id == Prediction.item_id)
            .where(
                Prediction.project_id == project_id,
                Item.status == ItemStatus.UNLABELED.value,
            )
        )
        return {int(item_id): tuple(sorted(predicted or [])) for item_id, predicted in rows}


def record_agreement(
    db: Database,
    project_id: int,
    model_version: ModelVersion,
    previous: dict[int, tuple[int, ...]],
) -> float | None:
    """Share of unlabeled items whose predicted classes the new model left unchanged; stored as
    ``metrics["agreement_with_previous"]`` (None without earlier predictions to compare)."""
    agreement: float | None = None
    if previous:
        now = snapshot_predictions(db, project_id)
        common = [item_id for item_id in now if item_id in previous]
        if common:
            same = sum(1 for item_id in common if now[item_id] == previous[item_id])
            agreement = round(same / len(common), 6)
    metrics = {**(model_version.metrics or {}), "agreement_with_previous": agreement}
    with db.transaction() as session:
        session.execute(
            update(ModelVersion).where(ModelVersion.id == model_version.id).values(metrics=metrics)
        )
    model_version.metrics = metrics
    return agreement


# -- stopping -------------------------------------------------------------------------------------


def _rising(points: float, added: int, gain: float, min_gain_points: float) -> str:
    """Why to go on; over fewer than 100 labels the raw rise reads better than a per-100 rate
    extrapolated from it (40 points over 20 labels is not "200 points per 100 labels")."""
    if added < 100:
        return (
            f"accuracy rose {points * 100:.1f} points over the last {added} labels "
            f"(stop below {min_gain_points:g} points per 100 labels)"
        )
    return (
        f"accuracy still rises by {gain:.2f} points per 100 labels (stop below {min_gain_points:g})"
    )


@dataclasses.dataclass(frozen=True)
class StoppingSignal:
    stop: bool
    reason: str
    gain_per_100_labels: float | None
    """Accuracy points gained per 100 labels over the last model versions."""
    agreement_with_previous: float | None
    labels: int
    estimated_labels_saved: int
    """Unlabeled items nobody needs to label if labeling stops now (0 when it should go on)."""
    metric: str
    cost_per_label: float = 0.0
    estimated_cost_saved: float | None = None
    """``estimated_labels_saved`` at the project's cost per label (None when it is not set)."""


def stopping_signal(
    db: Database,
    project_id: int,
    *,
    window: int = 3,
    min_gain_points: float = 0.5,
    min_agreement: float = 0.98,
) -> StoppingSignal:
    """Whether more labels are still worth it: stop when the accuracy of the last ``window``
    model versions rose by less than ``min_gain_points`` accuracy points per 100 labels and the
    newest model changed the predicted class of at most ``1 - min_agreement`` of the unlabeled
    items (a stabilising-predictions criterion in the spirit of Bloodgood & Vijay-Shanker, 2009,
    "A Method for Stopping Active Learning Based on Stabilizing Predictions").

    Accuracy comes from the random evaluation sample when every version in the window has it,
    else from cross-validation (biased towards hard items, so it is flagged in ``metric``).
    """
    if window < 2:
        raise InvalidInput(f"window must be at least 2, got {window}")
    with db.reader() as session:
        cost_per_label = float(repo.get_project(session, project_id).cost_per_label or 0.0)
        versions = list(
            session.scalars(
                select(ModelVersion)
                .where(ModelVersion.project_id == project_id)
                .order_by(ModelVersion.version)
            )
        )
        labels = repo.count_human_labels(session, project_id)
        unlabeled = int(
            session.scalar(
                select(func.count()).where(
                    Item.project_id == project_id, Item.status == ItemStatus.UNLABELED.value
                )
            )
            or 0
        )
    recent = versions[-window:]
    agreement = (recent[-1].metrics or {}).get("agreement_with_previous") if recent else None

    def signal(stop: bool, reason: str, gain: float | None, metric: str) -> StoppingSignal:
        saved = unlabeled if stop else 0
        return StoppingSignal(
            stop=stop,
            reason=reason,
            gain_per_100_labels=None if gain is None else round(gain, 4),
            agreement_with_previous=agreement,
            labels=labels,
            estimated_labels_saved=saved,
            metric=metric,
            cost_per_label=cost_per_label,
            estimated_cost_saved=round(saved * cost_per_label, 2) if cost_per_label > 0 else None,
        )

    if len(recent) < 2:
        return signal(False, "need at least 2 model versions to see a trend", None, "none")
    evaluated = [(m.metrics or {}).get("evaluation") or {} for m in recent]
    if all(e.get("accuracy") is not None for e in evaluated):
        metric = EVAL_METHOD
        accuracies = [float(e["accuracy"]) for e in evaluated]
    else:
        metric = CV_BIASED_METHOD
        raw = [(m.metrics or {}).get("accuracy") for m in recent]
        if any(a is None for a in raw):
            return signal(False, "some model versions have no accuracy yet", None, metric)
        accuracies = [float(a) for a in raw if a is not None]
    added = recent[-1].n_labels - recent[0].n_labels
    if added <= 0:
        return signal(False, "the last model versions were trained on no new labels", None, metric)
    gain = (accuracies[-1] - accuracies[0]) * 100.0 / added * 100.0
    if gain >= min_gain_points:
        return signal(
            False,
            _rising(accuracies[-1] - accuracies[0], added, gain, min_gain_points),
            gain,
            metric,
        )
    if agreement is None:
        return signal(
            False,
            f"accuracy has plateaued ({gain:.2f} points per 100 labels) but the prediction "
            "stability of the newest model is unknown; train once more",
            gain,
            metric,
        )
    if float(agreement) < min_agreement:
        return signal(
            False,
            f"accuracy has plateaued ({gain:.2f} points per 100 labels) but the newest model "
            f"still changed {1 - float(agreement):.1%} of the predictions",
            gain,
            metric,
        )
    return signal(
        True,
        f"accuracy gains {gain:.2f} points per 100 labels (below {min_gain_points:g}) and the "
        f"newest model kept {float(agreement):.1%} of the predictions: more labels add little",
        gain,
        metric,
    )
