"""Honest evaluation: the random evaluation sample, its serving, held-out metrics, calibrated
auto-label to a target precision, and the stopping signal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update

from labella.config import Settings
from labella.errors import NotReady
from labella.jobs.worker import Worker
from labella.services import autolabel, evaluation, labeling, training
from labella.storage.db import Database
from labella.storage.models import Item, Label, LabelSource, ModelVersion
from tests.services.labeling_data import add_items, plant_model
from tests.services.test_training import TOPICS, encoded, topics  # noqa: F401  (fixture)


def eval_ids(db: Database, project_id: int) -> list[int]:
    with db.reader() as session:
        return list(
            session.scalars(
                select(Item.id)
                .where(Item.project_id == project_id, Item.eval_sample.is_(True))
                .order_by(Item.id)
            )
        )


# -- the sample -----------------------------------------------------------------------------------


def test_draw_is_uniform_over_unlabeled_items_and_idempotent(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    pid = make_project().id
    ids = add_items(db, pid, 1000)
    labeled = ids[:100]
    with db.transaction() as session:
        session.execute(update(Item).where(Item.id.in_(labeled)).values(status="labeled"))

    assert evaluation.draw_eval_sample(db, settings, pid, size=200) == 200
    assert evaluation.draw_eval_sample(db, settings, pid, size=200) == 0  # already full
    drawn = eval_ids(db, pid)
    assert len(drawn) == 200
    assert not set(drawn) & set(labeled)
    # uniform over the 900 unlabeled items: each ninth of them holds about 200 / 9 = 22
    position = {item_id: i for i, item_id in enumerate(ids[100:])}
    counts = np.bincount([position[i] * 9 // 900 for i in drawn], minlength=9)
    assert counts.min() >= 10 and counts.max() <= 36, counts
    # topping up keeps the items drawn and adds only the difference
    assert evaluation.draw_eval_sample(db, settings, pid, size=250) == 50
    assert set(drawn) < set(eval_ids(db, pid))
    status = evaluation.eval_sample_status(db, pid)
    assert (status.size, status.unlabeled, status.labeled) == (250, 250, 0)


def test_next_batch_serves_an_eval_item_every_fifth_slot(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    pid = make_project().id
    ids = add_items(db, pid, 40, priorities=[float(40 - i) for i in range(40)])
    evaluation.draw_eval_sample(db, settings, pid, size=6)
    sample = set(eval_ids(db, pid))
    assert settings.eval_every == 5

    batch = labeling.next_batch(db, settings, pid, n=10, annotator="alice")
    served = [item.item_id for item in batch]
    assert [i for i, item_id in enumerate(served) if item_id in sample] == [4, 9]
    for i, item in enumerate(batch):
        if i in (4, 9):
            assert item.reason == evaluation.EVAL_REASON
        else:
            assert item.reason.startswith("planted")
    # the rest is the ranked queue in order, the sample left out of it
    ranked = [item_id for item_id in ids if item_id not in sample]
    assert [s for s in served if s not in sample] == ranked[:8]
    # the eval items come in random_key order (a uniform order), not by priority
    with db.reader() as session:
        by_key = list(
            session.scalars(
                select(Item.id).where(Item.id.in_(sample)).order_by(Item.random_key, Item.id)
            )
        )
    assert [served[4], served[9]] == by_key[:2]
    # a refresh gives the same batch back
    again = labeling.next_batch(db, settings, pid, n=10, annotator="alice")
    assert {item.item_id for item in again} == set(served)
    # slots are counted over the project's labels, so batches of one get theirs too
    reasons = []
    for _ in range(5):
        item = labeling.next_batch(db, settings, pid, n=1, annotator="bob")[0]
        reasons.append(item.reason)
        labeling.submit_label(db, pid, item.item_id, classes=["negative"], annotator="bob")
    assert [r == evaluation.EVAL_REASON for r in reasons] == [False] * 4 + [True]


def test_eval_items_fill_the_batch_when_the_queue_is_empty(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    pid = make_project().id
    add_items(db, pid, 3)
    evaluation.draw_eval_sample(db, settings, pid, size=3)
    batch = labeling.next_batch(db, settings, pid, n=10)
    assert len(batch) == 3
    assert {item.reason for item in batch} == {evaluation.EVAL_REASON}


# -- held-out metrics (real MiniLM embeddings) ----------------------------------------------------


def test_training_holds_the_eval_sample_out_and_reports_it_with_an_interval(
    db: Database,
    settings: Settings,
    worker: Worker,
    topics: Callable[..., Any],  # noqa: F811
) -> None:
    corpus = encoded(worker, topics())
    small = settings.model_copy(update={"eval_sample_size": 15})
    evaluation.draw_eval_sample(db, small, corpus.id, size=15)
    sample = set(eval_ids(db, corpus.id))
    train_ids = [
        item_id
        for topic in TOPICS
        for item_id in [i for i in corpus.items_of(topic) if i not in sample][:3]
    ]
    for item_id in [*train_ids, *sorted(sample)]:
        corpus.label(item_id)

    first = training.train_project(db, small, corpus.id)
    metrics = first.metrics
    # the model was trained without the 15 eval labels
    assert first.n_labels == metrics["n_labels"] == len(train_ids) == 9
    assert metrics["method"].startswith(evaluation.CV_BIASED_METHOD)
    report = metrics["evaluation"]
    assert report["method"] == evaluation.EVAL_METHOD
    assert report["n"] == 15
    assert 0.0 <= report["ci_low"] <= report["accuracy"] <= report["ci_high"] <= 1.0
    assert report["ci_high"] - report["ci_low"] > 0.05  # 15 items: an honest, wide interval
    assert report["accuracy"] >= 0.8  # three clearly separated topics
    assert set(report["per_class"]) == set(TOPICS)
    assert sorted(metrics["evaluation_sample"]["item_ids"]) == sorted(sample)
    assert metrics["agreement_with_previous"] is None  # nothing to compare with yet

    # a second model: the share of unlabeled items whose predicted topic did not change
    for topic in TOPICS:
        corpus.label([i for i in corpus.items_of(topic) if i not in sample][3])
    second = training.train_project(db, small, corpus.id)
    assert second.n_labels == 12
    agreement = second.metrics["agreement_with_previous"]
    assert agreement is not None and 0.5 <= agreement <= 1.0


def test_eval_labels_still_train_while_too_few_to_evaluate(
    db: Database,
    settings: Settings,
    worker: Worker,
    topics: Callable[..., Any],  # noqa: F811
) -> None:
    corpus = encoded(worker, topics())
    small = settings.model_copy(update={"eval_sample_size": 15})
    evaluation.draw_eval_sample(db, small, corpus.id, size=15)
    sample = sorted(eval_ids(db, corpus.id))
    labeled = corpus.label_first(2)
    extra = [i for i in sample if i not in labeled][:3]
    for item_id in extra:
        corpus.label(item_id)
    result = training.train_project(db, small, corpus.id)
    assert result.n_labels == len(set(labeled) | set(extra))
    assert "evaluation" not in result.metrics


# -- calibrated auto-label (planted probabilities) ------------------------------------------------


def plant_overconfident_model(
    db: Database,
    make_project: Callable[..., Any],
    *,
    n_eval: int = 400,
    n_pool: int = 3000,
    sharpen: float = 2.5,
    seed: int = 7,
) -> tuple[int, dict[int, int]]:
    """A binary project whose model's probabilities are over-confident: the true probability
    of class 1 is sigmoid(z), the model says sigmoid(sharpen * z). Its evaluation sample (stored
    with the model, as training stores it) has labels drawn from the true probabilities, and
    so do the unlabeled items (their truth is returned, never stored)."""
    rng = np.random.default_rng(seed)
    project = make_project()
    pid = project.id

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        z = rng.normal(0.0, 2.5, size=n)
        truth = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
        raw = 1 / (1 + np.exp(-sharpen * z))
        return np.stack([1 - raw, raw], axis=1), truth

    pool_probs, pool_truth = draw(n_pool)
    eval_probs, eval_truth = draw(n_eval)
    ids = add_items(db, pid, n_pool)
    model = plant_model(db, pid, {i: p.tolist() for i, p in zip(ids, pool_probs, strict=True)})
    with db.transaction() as session:
        stored = session.get(ModelVersion, model.id)
        assert stored is not None
        stored.metrics = {
            **stored.metrics,
            "evaluation_sample": {
                "item_ids": [],
                "probs": eval_probs.round(6).tolist(),
                "targets": eval_truth.tolist(),
            },
        }
    class_ids = [c.id for c in sorted(project.classes, key=lambda c: c.position)]
    return pid, {i: class_ids[t] for i, t in zip(ids, pool_truth, strict=True)}


def current_model_labels(db: Database, project_id: int) -> dict[int, int]:
    with db.reader() as session:
        labels = session.scalars(
            select(Label).where(
                Label.project_id == project_id,
                Label.is_current.is_(True),
                Label.source == LabelSource.MODEL,
            )
        ).all()
        return {label.item_id: label.values[0].class_id for label in labels}


def test_calibrated_preview_interval_holds_the_measured_precision(
    db: Database, make_project: Callable[..., Any]
) -> None:
    pid, truth = plant_overconfident_model(db, make_project)
    plan = autolabel.preview_precision(db, pid, target_precision=0.95)
    assert plan.calibrated and plan.temperature > 1.5  # it softened the over-confident model
    assert plan.count > 100 and plan.threshold is not None
    assert plan.estimated_precision is not None and plan.estimated_precision >= 0.95
    assert plan.ci_low <= plan.estimated_precision <= plan.ci_high
    assert plan.eval_n > 20

    result = autolabel.apply_precision(db, pid, target_precision=0.95)
    assert result.labeled == plan.count
    labels = current_model_labels(db, pid)
    assert sorted(labels) == plan.item_ids
    measured = np.mean([labels[i] == truth[i] for i in labels])
    assert plan.ci_low <= measured <= plan.ci_high, (plan, measured)
    assert abs(measured - 0.95) < 0.03
    # the raw probabilities would have promised far more than was delivered
    with db.reader() as session:
        raw = session.scalars(
            select(Label.confidence).where(Label.item_id.in_(plan.item_ids))
        ).all()
    assert float(np.mean([float(c or 0.0) for c in raw])) > measured + 0.02
    # applying again labels nothing more
    assert autolabel.apply_precision(db, pid, target_precision=0.95).labeled == 0


def test_precision_needs_a_labeled_eval_sample(
    db: Database, make_project: Callable[..., Any]
) -> None:
    pid = make_project().id
    ids = add_items(db, pid, 5)
    plant_model(db, pid, {i: [0.1, 0.9] for i in ids})
    with pytest.raises(NotReady, match="evaluation sample"):
        autolabel.preview_precision(db, pid, target_precision=0.9)


def test_precision_cut_picks_the_lowest_threshold_meeting_the_target() -> None:
    conf = np.asarray([0.99, 0.97, 0.95, 0.90, 0.80, 0.60])
    threshold, chosen = autolabel._precision_cut(conf, 0.95)
    # means of the top k: 0.99, 0.98, 0.97, 0.9525, 0.922 -> the top 4
    assert threshold == 0.90 and sorted(chosen.tolist()) == [0, 1, 2, 3]
    assert autolabel._precision_cut(conf, 0.995)[0] is None


def test_precision_warnings_name_the_evaluation_items_the_target_needs() -> None:
    # 60 evaluation items above the threshold, 57 right: the interval cannot confirm 95%
    low, high = evaluation.wilson_interval(57, 60)
    assert low < 0.95
    (warning,) = autolabel.precision_warnings(
        target=0.95, count=500, estimated=0.962, ci_low=low, ci_high=high, eval_n=60
    )
    needed = autolabel.eval_items_needed(0.962, 0.95)
    assert needed is not None and needed > 60
    # the smallest n whose interval, at the estimated precision, reaches the target
    assert evaluation.wilson_interval(round(0.962 * needed), needed)[0] >= 0.95
    assert evaluation.wilson_interval(round(0.962 * (needed - 1)), needed - 1)[0] < 0.95
    assert f"about {needed:,} such items" in warning
    assert f"its 60 items at or above the threshold put the precision there at {low:.1%}" in warning
    assert "95.0% target" in warning and "96.2%" in warning and f"{high:.1%}" in warning
    assert "evaluation-sample" in warning and "lower the target" in warning
    assert "too few" not in warning  # 60 items are enough to measure, not to confirm


def test_precision_warnings_fold_in_too_few_items_and_skip_unreachable_counts() -> None:
    low, high = evaluation.wilson_interval(12, 12)
    (warning,) = autolabel.precision_warnings(
        target=0.95, count=40, estimated=0.97, ci_low=low, ci_high=high, eval_n=12
    )
    assert "its 12 items" in warning and "too few to measure it" in warning
    assert "such items" in warning
    # an estimate at the target can never be confirmed: no count is promised
    (warning,) = autolabel.precision_warnings(
        target=0.95, count=40, estimated=0.95, ci_low=low, ci_high=high, eval_n=12
    )
    assert "too few" in warning and "such items" not in warning
    assert autolabel.eval_items_needed(0.95, 0.95) is None
    assert autolabel.eval_items_needed(0.9501, 0.95) is None  # past the 100,000 cap


def test_precision_warnings_stay_quiet_when_the_sample_backs_the_target() -> None:
    low, high = evaluation.wilson_interval(398, 400)
    assert low >= 0.98
    assert not autolabel.precision_warnings(
        target=0.98, count=500, estimated=0.99, ci_low=low, ci_high=high, eval_n=400
    )
    # nothing would be labeled: the preview already says so
    assert not autolabel.precision_warnings(
        target=0.95, count=0, estimated=None, ci_low=0.0, ci_high=1.0, eval_n=0
    )


def test_preview_warns_when_the_evaluation_sample_is_too_small(
    db: Database, make_project: Callable[..., Any]
) -> None:
    # 40 evaluation items: even all right, their interval's lower end stays under 95%
    pid, _ = plant_overconfident_model(db, make_project, n_eval=40, n_pool=1500)
    plan = autolabel.preview_precision(db, pid, target_precision=0.95)
    assert plan.count > 50 and plan.eval_n < 30
    assert plan.ci_low < 0.95
    (warning,) = plan.warnings
    assert f"its {plan.eval_n} items" in warning and "too few to measure it" in warning
    assert f"{plan.ci_low:.1%}–{plan.ci_high:.1%}" in warning
    assert plan.estimated_precision is not None
    needed = autolabel.eval_items_needed(plan.estimated_precision, 0.95)
    assert needed is None or f"about {needed:,} such items" in warning


# -- stopping signal ------------------------------------------------------------------------------


def plant_versions(
    db: Database, project_id: int, curve: list[tuple[int, float]], *, agreement: float | None
) -> None:
    with db.transaction() as session:
        for version, (n_labels, accuracy) in enumerate(curve, start=1):
            session.add(
                ModelVersion(
                    project_id=project_id,
                    version=version,
                    head="linear",
                    encoder="planted",
                    n_labels=n_labels,
                    metrics={
                        "accuracy": accuracy - 0.1,  # the biased CV number, lower
                        "evaluation": {"accuracy": accuracy, "n": 100},
                        "agreement_with_previous": agreement if version > 1 else None,
                    },
                    artifact_path="planted",
                )
            )


def test_stopping_signal_fires_on_a_plateau(db: Database, make_project: Callable[..., Any]) -> None:
    pid = make_project(cost_per_label=0.35).id
    add_items(db, pid, 50)
    plant_versions(
        db, pid, [(100, 0.80), (200, 0.900), (300, 0.902), (400, 0.903)], agreement=0.995
    )
    signal = evaluation.stopping_signal(db, pid)
    assert signal.stop, signal
    assert signal.metric == evaluation.EVAL_METHOD
    assert signal.gain_per_100_labels == pytest.approx(0.15)
    assert signal.estimated_labels_saved == 50
    assert signal.estimated_cost_saved == pytest.approx(17.5)  # 50 labels at 0.35


def test_stopping_signal_stays_off_while_accuracy_rises(
    db: Database, make_project: Callable[..., Any]
) -> None:
    pid = make_project().id
    add_items(db, pid, 50)
    plant_versions(db, pid, [(100, 0.70), (200, 0.80), (300, 0.86)], agreement=0.995)
    signal = evaluation.stopping_signal(db, pid)
    assert not signal.stop
    assert signal.gain_per_100_labels == pytest.approx(8.0)
    assert signal.estimated_labels_saved == 0
    assert signal.estimated_cost_saved is None  # no cost per label set
    assert "still rises by 8.00 points per 100 labels" in signal.reason


def test_a_rise_over_few_labels_is_told_as_it_is(
    db: Database, make_project: Callable[..., Any]
) -> None:
    pid = make_project().id
    add_items(db, pid, 50)
    plant_versions(db, pid, [(10, 0.40), (20, 0.80), (30, 1.0)], agreement=0.9)
    signal = evaluation.stopping_signal(db, pid)
    assert not signal.stop
    assert "rose 60.0 points over the last 20 labels" in signal.reason  # not "300 per 100"


def test_stopping_signal_waits_for_stable_predictions(
    db: Database, make_project: Callable[..., Any]
) -> None:
    pid = make_project().id
    plant_versions(db, pid, [(100, 0.90), (200, 0.901), (300, 0.901)], agreement=0.9)
    signal = evaluation.stopping_signal(db, pid)
    assert not signal.stop and "changed" in signal.reason
    assert not evaluation.stopping_signal(db, make_project().id).stop  # no model at all


def test_held_out_eval_labels_do_not_make_every_label_retrain(
    db: Database, make_project: Callable[..., Any]
) -> None:
    pid = make_project(retrain_every=50).id
    ids = add_items(db, pid, 80)
    # a model trained on 10 labels that held 60 evaluation labels out (70 labels seen)
    plant_versions(db, pid, [(10, 0.9)], agreement=None)
    with db.transaction() as session:
        model = session.scalar(select(ModelVersion).where(ModelVersion.project_id == pid))
        assert model is not None
        model.metrics = {**model.metrics, "evaluation": {"accuracy": 0.9, "n": 60}}
    jobs = [
        labeling.submit_label(
            db, pid, item_id, classes=["negative" if i % 2 else "positive"]
        ).training_job_id
        for i, item_id in enumerate(ids)
    ]
    # 80 labels < 70 seen + 50; counting only the 10 trained on would have retrained at 60
    assert jobs == [None] * 80


def test_overlapped_items_someone_answered_stay_out_of_the_sample(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    from labella.services import projects

    project = make_project()
    projects.update_project(db, project.id, overlap=2)
    items = add_items(db, project.id, 6)
    answered = items[0]
    labeling.submit_label(db, project.id, answered, classes=["positive"], annotator="u1")
    evaluation.draw_eval_sample(db, settings, project.id, size=6)
    with db.reader() as session:
        sample = set(session.scalars(select(Item.id).where(Item.eval_sample.is_(True))))
    assert sample == set(items) - {answered}
