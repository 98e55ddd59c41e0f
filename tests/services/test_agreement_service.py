"""Agreement and the annotator dashboard over real overlap answers, against numbers worked out by
hand (the coefficients themselves are checked on textbook cases in tests/quality)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from labella.services import agreement, labeling, projects, review
from labella.storage.db import Database
from labella.storage.models import Label, utcnow
from tests.services.labeling_data import add_items

# Krippendorff (2011) example A as alice and bob on ten items (1 = "yes"), carol on the first four.
ALICE = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
BOB = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
CAROL = [1, 1, 0, 0]
CLASSES = ("no", "yes")


def answered_project(db: Database, make_project: Callable[..., Any]) -> tuple[Any, list[int]]:
    project = make_project(CLASSES)
    projects.update_project(db, project.id, overlap=3)
    ids = add_items(db, project.id, 10)
    for name, answers in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
        for item_id, value in zip(ids, answers, strict=False):
            labeling.submit_label(db, project.id, item_id, classes=[CLASSES[value]], annotator=name)
    return project, ids


def test_project_and_pair_agreement_match_the_hand_computed_numbers(
    db: Database, make_project: Callable[..., Any]
) -> None:
    project, _ = answered_project(db, make_project)
    result = agreement.project_agreement(db, project.id)
    assert (result.items, result.annotators, result.answers) == (10, 3, 24)
    pairs = {(p.annotator_a, p.annotator_b): p for p in result.pairs}
    ab = pairs[("alice", "bob")]
    # alice-bob: both yes 1, alice yes / bob no 1, alice no / bob yes 3, both no 5: p_o = 0.6;
    # p_e = 0.2 * 0.4 + 0.8 * 0.6 = 0.56, kappa = 0.04 / 0.44
    assert ab.items == 10 and ab.percent_agreement == pytest.approx(0.6)
    assert ab.cohen_kappa == pytest.approx(0.04 / 0.44)
    # alice-carol on items 1-4: (0,1) (1,1) (0,0) (0,0): p_o = .75, p_e = .25*.5 + .75*.5 = .5
    ac = pairs[("alice", "carol")]
    assert ac.items == 4 and ac.percent_agreement == pytest.approx(0.75)
    assert ac.cohen_kappa == pytest.approx(0.5)
    # bob-carol: (1,1) (1,1) (1,0) (0,0): p_o = .75, p_e = .75*.5 + .25*.5 = .5
    assert pairs[("bob", "carol")].cohen_kappa == pytest.approx(0.5)
    # percent agreement over all: items 1-4 have three answers (agreeing pairs 1/3, 1, 1/3, 1),
    # items 5-10 two (1, 0, 1, 1, 0, 1)
    assert result.percent_agreement == pytest.approx((1 / 3 + 1 + 1 / 3 + 1 + 4) / 10)
    # items 1-4 got their third answer: 2 and 4 unanimous, 1 and 3 two against one
    assert result.decided_by == {"consensus": 2, "majority": 2} and result.in_review == 0
    # Krippendorff's alpha by hand, the coincidence matrix built item by item (weights 1/(m-1)):
    #   item 1 (0,1,1): o01 += 2/2, o11 += 2/2; item 3 (0,1,0): o01 += 2/2, o00 += 2/2
    #   item 2 (1,1,1): o11 += 6/2; item 4 (0,0,0): o00 += 6/2
    #   items 5,7,8,10 (0,0): o00 += 2 each; items 6, 9 (0,1)/(1,0): o01 += 1 each
    #   o00 = 1 + 3 + 8 = 12, o11 = 1 + 3 = 4, o01 = o10 = 1 + 1 + 2 = 4; n0 = 16, n1 = 8, n = 24
    #   alpha = 1 - (n - 1) * (o01 + o10) / (2 * n0 * n1) = 1 - 23 * 8 / 256
    assert result.krippendorff_alpha == pytest.approx(1 - 23 * 8 / 256)


def test_two_annotators_reproduce_krippendorffs_binary_example(
    db: Database, make_project: Callable[..., Any]
) -> None:
    project = make_project(CLASSES)
    projects.update_project(db, project.id, overlap=2)
    ids = add_items(db, project.id, 10)
    for name, answers in (("alice", ALICE), ("bob", BOB)):
        for item_id, value in zip(ids, answers, strict=True):
            labeling.submit_label(db, project.id, item_id, classes=[CLASSES[value]], annotator=name)
    result = agreement.project_agreement(db, project.id)
    assert result.krippendorff_alpha == pytest.approx(1 - 19 * 8 / (2 * 14 * 6))  # 0.095
    # Fleiss with two raters pools their marginals: p_yes = 6/20, P_e = .09 + .49 = .58
    assert result.fleiss_kappa == pytest.approx((0.6 - 0.58) / 0.42)
    assert result.percent_agreement == pytest.approx(0.6)
    # four items disagree two against nobody: no majority, they wait for a reviewer
    assert result.in_review == 4 and result.decided_by == {"consensus": 6}


def test_multi_label_agreement_is_per_class(db: Database, make_project: Callable[..., Any]) -> None:
    project = make_project(("red", "green", "blue"), multi_label=True)
    projects.update_project(db, project.id, overlap=2)
    ids = add_items(db, project.id, 4)
    alice = [["red"], ["red", "green"], [], ["green"]]
    bob = [["red"], ["red"], [], ["green"]]
    for name, answers in (("alice", alice), ("bob", bob)):
        for item_id, classes in zip(ids, answers, strict=True):
            labeling.submit_label(db, project.id, item_id, classes=list(classes), annotator=name)
    result = agreement.project_agreement(db, project.id)
    # whole sets: items 1, 3, 4 agree
    assert result.percent_agreement == pytest.approx(0.75)
    # red: alice 1,1,0,0 bob 1,1,0,0 -> kappa 1; green: alice 0,1,0,1 bob 0,0,0,1 -> p_o .75,
    # p_e = .5*.25 + .5*.75 = .5 -> .5; blue: never used -> undefined, left out: mean .75
    [pair] = result.pairs
    assert pair.cohen_kappa == pytest.approx(0.75)


def test_the_annotator_dashboard(db: Database, make_project: Callable[..., Any]) -> None:
    project, ids = answered_project(db, make_project)
    # alice's ten answers planted 30 s apart, with an hour's pause after the fifth
    start = utcnow() - timedelta(hours=2)
    with db.transaction() as session:
        alice_labels = session.scalars(
            select(Label.id).where(Label.annotator == "alice").order_by(Label.id)
        ).all()
        for n, label_id in enumerate(alice_labels):
            at = start + timedelta(seconds=30 * n) + (timedelta(hours=1) if n >= 5 else timedelta())
            session.execute(update(Label).where(Label.id == label_id).values(created_at=at))
    # the reviewer approves item 1's majority ("yes", which alice did not give)
    [flag] = [f for f in review.review_queue(db, project.id) if f.item_id == ids[0]]
    review.resolve_flag(db, project.id, flag.id, action="approve", reviewer="rita")

    stats = {s.annotator: s for s in agreement.annotator_stats(db, project.id, window_hours=24)}
    alice, carol = stats["alice"], stats["carol"]
    assert (alice.labels, alice.skips, alice.recent_labels) == (10, 0, 10)
    # 8 gaps of 30 s and one pause counted as 5 minutes: 9 labels' worth of gaps in 540 s
    assert alice.active_hours == pytest.approx(540 / 3600)
    assert alice.labels_per_hour == pytest.approx(9 * 3600 / 540)
    # carol against the others on items 1-4: (1 vs 0, 1), (1 vs 1, 1), (0 vs 0, 1), (0 vs 0, 0)
    assert carol.shared_items == 4 and carol.agreement_with_others == pytest.approx(6 / 8)
    assert (carol.reviewed, carol.agreement_with_review) == (1, 1.0)
    assert (alice.reviewed, alice.agreement_with_review) == (1, 0.0)
    # alice against the others: bob on 10 items (6 agree), carol on 4 (3 agree)
    assert alice.agreement_with_others == pytest.approx(9 / 14)
    assert [s.annotator for s in agreement.annotator_stats(db, project.id, only="bob")] == ["bob"]
    short = agreement.annotator_stats(db, project.id, window_hours=0.5, only="alice")[0]
    assert short.recent_labels == 0 and short.labels_per_hour is None and short.labels == 10


def test_work_samples_and_review_outcomes_of_single_labels(
    db: Database, make_project: Callable[..., Any]
) -> None:
    project = make_project(CLASSES)
    projects.update_project(db, project.id, review_sample_share=1.0)
    ids = add_items(db, project.id, 3)
    for item_id in ids:
        labeling.submit_label(db, project.id, item_id, classes=["yes"], annotator="dan")
    queue = review.review_queue(db, project.id, kinds=["work_sample"])
    assert len(queue) == 3 and {f.annotator for f in queue} == {"dan"}
    assert review.queue_counts(db, project.id)["work_sample"] == 3
    review.resolve_flag(db, project.id, queue[0].id, action="approve", reviewer="rita")
    review.resolve_flag(
        db, project.id, queue[1].id, action="change", classes=["no"], reviewer="rita"
    )
    [dan] = agreement.annotator_stats(db, project.id, only="dan")
    assert (dan.reviewed, dan.agreement_with_review) == (2, 0.5)
    assert dan.shared_items == 0 and dan.agreement_with_others is None
    resolved = review.review_queue(db, project.id, status="resolved")
    assert {f.status for f in resolved} == {"kept", "changed"}
    assert [f.id for f in review.review_queue(db, project.id, annotator="dan")] == [queue[2].id]
    assert review.review_queue(db, project.id, annotator="erin") == []
    # the draw is fixed by the label: a share below 1 samples some labels, reproducibly
    draws = [review.work_sample_draw(project.id, label_id) for label_id in range(1, 201)]
    assert 0.2 < sum(d < 0.3 for d in draws) / len(draws) < 0.4
    assert draws == [review.work_sample_draw(project.id, i) for i in range(1, 201)]
