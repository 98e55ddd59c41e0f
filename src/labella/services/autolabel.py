"""Auto-label ("flush"): label every remaining item the model is sure about.

An item qualifies when the latest model version's prediction for it has a confidence at or above
the threshold and nobody has labeled it: items with a human label or a skip are never touched.
Each qualifying item gets a ``model`` label (the predicted classes, the confidence, the model
version, no annotator) and the status ``auto``; a human label submitted later supersedes it.

Re-running is safe. An item already auto-labeled by the latest model version is left alone, so
applying twice labels nothing the second time. An item auto-labeled by an *older* version is
labeled again when the newest version also clears the threshold: its previous model label is kept
in the history, superseded, so the current label always carries the newest confident prediction.
Auto labels are never withdrawn: an older auto label stays when the newer model is less sure.

The work is done with bulk statements in chunks, each chunk its own transaction (100,000 items take
seconds and annotators are not blocked meanwhile); every chunk re-checks the item statuses under
lock, so a human label that arrives mid-way is never overwritten.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select, true
from sqlalchemy.orm import Session

from labella.errors import Conflict, InvalidInput, NotReady
from labella.services import labeling
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    Item,
    ItemStatus,
    Label,
    ModelVersion,
    Prediction,
    Project,
    ProjectKind,
)

DEFAULT_CHUNK = 5000
MIN_EVAL_ABOVE = 30
"""Fewer labeled evaluation items than this at or above the threshold cannot measure it there."""
MAX_EVAL_NEEDED = 100_000
"""How far :func:`eval_items_needed` searches before calling the target out of reach."""


@dataclass(frozen=True)
class AutolabelPreview:
    threshold: float
    count: int
    by_class: dict[str, int]  # class name -> items the model would give it
    model_version: int


@dataclass(frozen=True)
class AutolabelResult:
    threshold: float
    labeled: int
    model_version: int


def preview(db: Database, project_id: int, *, threshold: float) -> AutolabelPreview:
    """How many items :func:`apply` would label at this threshold, in total and per class."""
    threshold = _check_threshold(threshold)
    with db.reader() as session:
        project = _classification_project(session, project_id)
        model = _latest_model(session, project)
        names = {cls.id: cls.name for cls in project.classes}
        by_class: Counter[str] = Counter()
        count = 0
        query = _candidates(project.id, model.id, threshold).with_only_columns(Prediction.predicted)
        for (predicted,) in session.execute(query.execution_options(yield_per=DEFAULT_CHUNK)):
            class_ids = [int(c) for c in predicted or []]
            if not _all_known(class_ids, names):
                continue
            count += 1
            by_class.update(names[c] for c in class_ids)
        ordered = {cls.name: by_class.get(cls.name, 0) for cls in project.classes}
        return AutolabelPreview(
            threshold=threshold, count=count, by_class=ordered, model_version=model.version
        )


def apply(
    db: Database,
    project_id: int,
    *,
    threshold: float,
    chunk: int = DEFAULT_CHUNK,
    actor: str = "system",
) -> AutolabelResult:
    """Give every qualifying item a ``model`` label; returns how many were labeled."""
    threshold = _check_threshold(threshold)
    if chunk < 1:
        raise InvalidInput("chunk must be at least 1")
    with db.reader() as session:
        project = _classification_project(session, project_id)
        model = _latest_model(session, project)
        model_id, version = model.id, model.version
        known = {cls.id: cls.name for cls in project.classes}
    labeled = 0
    after = 0
    while True:
        with db.transaction() as session:
            done, last_seen = _label_chunk(
                session, project_id, model_id, threshold, known, after=after, chunk=chunk
            )
        labeled += done
        if last_seen is None:
            break
        after = last_seen
    _record_run(
        db,
        project_id,
        actor,
        {"threshold": threshold, "labeled": labeled, "model_version": version},
    )
    return AutolabelResult(threshold=threshold, labeled=labeled, model_version=version)


def _record_run(db: Database, project_id: int, actor: str, detail: dict[str, Any]) -> None:
    # The labels themselves are in the label history (source model, with their model version);
    # this records who started the run (classification or detection) and with what setting.
    from labella.services import audit

    with db.transaction() as session:
        audit.record(
            session, actor=actor, action="autolabel.run", project_id=project_id, detail=detail
        )


def _label_chunk(
    session: Session,
    project_id: int,
    model_version_id: int,
    threshold: float,
    known: dict[int, str],
    *,
    after: int,
    chunk: int,
    only_ids: list[int] | None = None,
) -> tuple[int, int | None]:
    """Label the next ``chunk`` qualifying items with id > ``after`` (and among ``only_ids`` when
    given); (labeled, last id seen or None when no candidate was left)."""
    query = (
        _candidates(project_id, model_version_id, threshold)
        .with_only_columns(Prediction.item_id, Prediction.predicted, Prediction.confidence)
        .where(Prediction.item_id > after)
        .where(Prediction.item_id.in_(only_ids) if only_ids is not None else true())
        .order_by(Prediction.item_id)
        .limit(chunk)
        # PostgreSQL: lock the items so a concurrent human label waits for this chunk (and then
        # supersedes it) instead of being superseded by it
        .with_for_update(of=Item)
    )
    rows = session.execute(query).all()
    if not rows:
        return 0, None
    last_seen = int(rows[-1].item_id)
    rows = [row for row in rows if _all_known([int(c) for c in row.predicted or []], known)]
    labeling.write_model_labels(
        session,
        project_id,
        model_version_id,
        [
            labeling.ModelLabel(
                item_id=int(row.item_id),
                confidence=float(row.confidence),
                class_ids=[int(c) for c in row.predicted or []],
            )
            for row in rows
        ],
    )
    return len(rows), last_seen


def _candidates(project_id: int, model_version_id: int, threshold: float) -> Select[Any]:
    """Predictions of this model version that clear the threshold, for items no human has
    labeled or skipped and that this version has not auto-labeled already."""
    labeled_by_this_version = exists().where(
        Label.item_id == Item.id,
        Label.is_current.is_(True),
        Label.model_version_id == model_version_id,
    )
    open_item: ColumnElement[bool] = or_(
        Item.status == ItemStatus.UNLABELED.value,
        and_(Item.status == ItemStatus.AUTO.value, ~labeled_by_this_version),
    )
    return (
        select(Prediction.item_id)
        .join(Item, Item.id == Prediction.item_id)
        .where(
            Prediction.project_id == project_id,
            Prediction.model_version_id == model_version_id,
            Prediction.confidence >= threshold,
            Item.project_id == project_id,
            open_item,
        )
    )


def _all_known(class_ids: list[int], known: dict[int, Any]) -> bool:
    # a prediction naming a class deleted since its training cannot become a label; the next
    # training's predictions will
    return all(c in known for c in class_ids)


def _classification_project(session: Session, project_id: int) -> Project:
    project = repo.get_project(session, project_id)
    if project.kind == ProjectKind.OBJECT_DETECTION:
        # a label here would carry classes without boxes, which reads as "nothing in the image"
        raise InvalidInput(
            f"project {project.name!r} is an object-detection project: auto-label its boxes "
            "with /detections/autolabel"
        )
    return project


def _latest_model(session: Session, project: Project) -> ModelVersion:
    model = repo.latest_model_version(session, project.id)
    if model is None:
        raise NotReady(
            f"project {project.name!r} has no trained model yet; label some items and train "
            "before auto-labeling"
        )
    return model


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InvalidInput(f"threshold must be a number in (0, 1], got {threshold!r}")
    value = float(threshold)
    if math.isnan(value) or not 0.0 < value <= 1.0:
        raise InvalidInput(f"threshold must be in (0, 1] (a probability), got {threshold!r}")
    return value


# -- a target precision (calibrated on the random evaluation sample) ------------------------------


@dataclass(frozen=True)
class PrecisionPreview:
    """What :func:`apply_precision` would label for a target precision."""

    target_precision: float
    count: int
    threshold: float | None
    """The smallest calibrated confidence that is labeled (None: no item qualifies)."""
    estimated_precision: float | None
    """Mean calibrated confidence of the items that would be labeled."""
    ci_low: float
    ci_high: float
    """Wilson 95% interval of the accuracy of the evaluation items at or above the threshold."""
    eval_n: int
    """Labeled evaluation items at or above the threshold (the interval's evidence)."""
    calibrated: bool
    temperature: float
    model_version: int
    item_ids: list[int]
    warnings: list[str] = field(default_factory=list)
    """Why the evaluation sample cannot back the target (empty when it can)."""


def preview_precision(
    db: Database, project_id: int, *, target_precision: float
) -> PrecisionPreview:
    """The items whose *calibrated* confidence reaches ``target_precision`` on average.

    The latest model's probabilities are calibrated by temperature scaling (Guo et al., 2017)
    fitted on its predictions for the random evaluation sample (which did not train it), and the
    confidence of each item's predicted class is then recalibrated on the same sample by
    top-label calibration (:class:`~labella.learners.calibration.TopLabelCalibrator`): the
    temperature alone over-promised the precision of the items it selects. Then the threshold is
    the smallest calibrated confidence ``t`` such that the mean calibrated confidence of the
    unlabeled items at or above ``t``, the expected precision of labeling them all, is at least
    the target.
    """
    import numpy as np

    from labella.learners.calibration import ConfidenceCalibrator
    from labella.services.evaluation import MIN_CALIBRATION_LABELS, wilson_interval

    target = _check_target(target_precision)
    with db.reader() as session:
        project = _classification_project(session, project_id)
        if project.multi_label:
            raise InvalidInput(
                "auto-labeling to a target precision supports single-label projects only; "
                "use a threshold for multi-label projects"
            )
        model = _latest_model(session, project)
        sample = (model.metrics or {}).get("evaluation_sample") or {}
        known = {cls.id: cls.name for cls in project.classes}
        rows = session.execute(
            _candidates(project.id, model.id, 0.0).with_only_columns(
                Prediction.item_id, Prediction.probs, Prediction.predicted
            )
        ).all()
    eval_probs = np.asarray(sample.get("probs") or [], dtype=np.float64)
    eval_targets = np.asarray(sample.get("targets") or [], dtype=np.int64)
    if len(eval_targets) < MIN_CALIBRATION_LABELS:
        raise NotReady(
            f"calibrating for a target precision needs at least {MIN_CALIBRATION_LABELS} labeled "
            f"items of the random evaluation sample behind the latest model (v{model.version} "
            f"has {len(eval_targets)}); label the items served as 'evaluation sample (random)' "
            "and train again"
        )
    calibrator = ConfidenceCalibrator().fit(eval_probs, eval_targets)
    eval_conf = calibrator.transform(eval_probs)
    eval_correct = eval_probs.argmax(axis=1) == eval_targets
    n_cols = eval_probs.shape[1]
    rows = [
        r
        for r in rows
        if len(r.probs or []) == n_cols and _all_known([int(c) for c in r.predicted or []], known)
    ]
    conf = calibrator.transform(
        np.asarray([r.probs for r in rows], dtype=np.float64).reshape(-1, n_cols)
    )
    threshold, chosen = _precision_cut(conf, target)
    if threshold is None:
        low, high, n_eval = 0.0, 1.0, 0
    else:
        above = eval_conf >= threshold
        n_eval = int(above.sum())
        low, high = wilson_interval(int(eval_correct[above].sum()), n_eval)
    estimated = float(conf[chosen].mean()) if len(chosen) else None
    return PrecisionPreview(
        target_precision=target,
        count=len(chosen),
        threshold=threshold,
        estimated_precision=estimated,
        ci_low=low,
        ci_high=high,
        eval_n=n_eval,
        calibrated=True,
        temperature=calibrator.scaler_.temperature_,
        model_version=model.version,
        item_ids=sorted(int(rows[i].item_id) for i in chosen),
        warnings=precision_warnings(
            target=target,
            count=len(chosen),
            estimated=estimated,
            ci_low=low,
            ci_high=high,
            eval_n=n_eval,
        ),
    )


def precision_warnings(
    *,
    target: float,
    count: int,
    estimated: float | None,
    ci_low: float,
    ci_high: float,
    eval_n: int,
) -> list[str]:
    """Sentences telling the user that the evaluation sample cannot back ``target``: the Wilson
    interval's lower end ``ci_low`` falls short of it (so too, folded in, when fewer than
    :data:`MIN_EVAL_ABOVE` evaluation items lie at or above the threshold). Empty when nothing
    would be labeled or the interval already confirms the target."""
    if count <= 0 or ci_low >= target:
        return []
    if eval_n == 0:
        evidence = (
            "no labeled item of it lies at or above the threshold, so the precision there is "
            "unmeasured"
        )
    else:
        items = "item" if eval_n == 1 else "items"
        put = "puts" if eval_n == 1 else "put"
        evidence = (
            f"its {eval_n:,} {items} at or above the threshold {put} the precision there at "
            f"{ci_low:.1%}–{ci_high:.1%}"
        )
        if eval_n < MIN_EVAL_ABOVE:
            evidence += f", too few to measure it (that takes at least {MIN_EVAL_ABOVE})"
    needed = eval_items_needed(estimated, target) if estimated is not None else None
    reach = ""
    if needed is not None and needed > eval_n:
        reach = f"; at the estimated {estimated:.1%} it takes about {needed:,} such items"
    elif needed is not None:
        # enough items for the estimate, yet the interval misses: they measured worse than it
        reach = f", under what the estimated {estimated:.1%} would give: it may be optimistic"
    # No count when the estimate sits on the target (the cut stops where the mean meets it):
    # then no sample could confirm it, and the advice below is all there is to say.
    return [
        f"The random evaluation sample cannot confirm the {target:.1%} target: {evidence}{reach}. "
        "Label a larger random evaluation sample (POST /api/projects/<id>/evaluation-sample with "
        "a size, or the LABELLA_EVAL_SAMPLE_SIZE setting) and train again, or lower the target."
    ]


def eval_items_needed(estimated: float, target: float, *, cap: int = MAX_EVAL_NEEDED) -> int | None:
    """The smallest n (searched by doubling, then bisection) such that the Wilson 95% lower
    bound of round(estimated * n) successes in n reaches ``target``: how many evaluation items
    at or above the threshold would confirm the target if the precision there is ``estimated``.
    None when no n up to ``cap`` does (always so when ``estimated <= target``)."""
    from labella.services.evaluation import wilson_interval

    if not estimated > target:
        return None

    def confirms(n: int) -> bool:
        return wilson_interval(round(estimated * n), n)[0] >= target

    below, above = 0, 1
    while not confirms(above):
        if above >= cap:
            return None
        below, above = above, min(2 * above, cap)
    while above - below > 1:
        middle = (below + above) // 2
        if confirms(middle):
            above = middle
        else:
            below = middle
    return above


def apply_precision(
    db: Database,
    project_id: int,
    *,
    target_precision: float,
    chunk: int = DEFAULT_CHUNK,
    actor: str = "system",
) -> AutolabelResult:
    """Auto-label exactly the items :func:`preview_precision` selects; the result's threshold is
    the calibrated one."""
    plan = preview_precision(db, project_id, target_precision=target_precision)
    if chunk < 1:
        raise InvalidInput("chunk must be at least 1")
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        model = _latest_model(session, project)
        model_id = model.id
        known = {cls.id: cls.name for cls in project.classes}
    if model.version != plan.model_version:
        raise Conflict("a new model version arrived while planning; preview again")
    labeled = 0
    for start in range(0, len(plan.item_ids), chunk):
        batch = plan.item_ids[start : start + chunk]
        with db.transaction() as session:
            # threshold 0: the calibrated selection already decided; the chunk re-checks statuses
            done, _ = _label_chunk(
                session, project_id, model_id, 0.0, known, after=0, chunk=len(batch), only_ids=batch
            )
        labeled += done
    _record_run(
        db,
        project_id,
        actor,
        {
            "target_precision": target_precision,
            "threshold": plan.threshold or 1.0,
            "labeled": labeled,
            "model_version": plan.model_version,
        },
    )
    return AutolabelResult(
        threshold=plan.threshold if plan.threshold is not None else 1.0,
        labeled=labeled,
        model_version=plan.model_version,
    )


def _precision_cut(conf: Any, target: float) -> tuple[float | None, Any]:
    """(threshold, indices of ``conf`` at or above it): the lowest threshold whose selected
    items have a mean confidence of at least ``target``."""
    import numpy as np

    order = np.argsort(-conf, kind="stable")
    ranked = conf[order]
    if len(ranked) == 0:
        return None, order
    running = np.cumsum(ranked) / np.arange(1, len(ranked) + 1)
    # the running mean over a descending list never rises, so the good prefixes come first
    k = int((running >= target).sum())
    while k > 0:
        threshold = float(ranked[k - 1])
        chosen = np.flatnonzero(conf >= threshold)
        # ties at the threshold come in together; back off when they pull the mean too low
        if conf[chosen].mean() >= target:
            return threshold, chosen
        k = int((ranked > threshold).sum())
    return None, order[:0]


def _check_target(target_precision: float) -> float:
    if isinstance(target_precision, bool) or not isinstance(target_precision, int | float):
        raise InvalidInput(f"target_precision must be a number in (0, 1), got {target_precision!r}")
    value = float(target_precision)
    if math.isnan(value) or not 0.0 < value < 1.0:
        raise InvalidInput(
            f"target_precision must be in (0, 1) (e.g. 0.98 for 98%), got {target_precision!r}"
        )
    return value
