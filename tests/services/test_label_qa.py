"""Label QA: confident learning on planted label flips, and the review queue end to end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from labella.config import Settings
from labella.errors import Conflict, InvalidInput, NotFound
from labella.jobs.worker import Worker
from labella.learners.heads import make_head
from labella.services import label_qa, labeling, review, training
from labella.services.importing import content_hash
from labella.storage.db import Database
from labella.storage.models import FlagStatus, Item, LabelFlag

DIM = 384


def blobs(
    n: int, n_classes: int, *, rng: np.random.Generator, spread: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs on the unit sphere (like sentence embeddings), balanced."""
    centres = rng.normal(size=(n_classes, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.arange(n) % n_classes
    X = centres[y] + rng.normal(scale=spread / np.sqrt(DIM), size=(n, DIM))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y.astype(np.int64)


def flip(y: np.ndarray, fraction: float, n_classes: int, *, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``fraction`` of the labels, each changed in place to another class."""
    flipped = rng.choice(len(y), size=round(fraction * len(y)), replace=False)
    y[flipped] = (y[flipped] + rng.integers(1, n_classes, size=len(flipped))) % n_classes
    return flipped


def oof(X: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    return label_qa.out_of_fold_probs(
        lambda: make_head("linear", n_classes=n_classes, random_state=0),
        X,
        y,
        n_classes=n_classes,
        folds=5,
        random_state=0,
    )


# -- the algorithm ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_flips_rank_at_the_top(seed: int) -> None:
    rng = np.random.default_rng(seed)
    X, y = blobs(300, 4, rng=rng)
    flipped = flip(y, 0.05, 4, rng=rng)
    issues = label_qa.find_label_issues(oof(X, y, 4), y)
    k = len(flipped)
    precision = len(set(issues.indices[:k].tolist()) & set(flipped.tolist())) / k
    assert precision >= 0.8, (precision, issues.indices[:k], sorted(flipped))
    # the suggestion for a caught flip is the class it was flipped from (round-robin truth)
    truth = np.arange(300) % 4
    caught = [i for i in issues.indices[:k].tolist() if i in set(flipped.tolist())]
    suggested = dict(zip(issues.indices.tolist(), issues.suggested.tolist(), strict=True))
    assert all(suggested[i] == truth[i] for i in caught)
    assert np.all(np.diff(issues.scores) <= 0), "most suspicious first"


def test_clean_labels_raise_few_issues() -> None:
    rng = np.random.default_rng(5)
    X, y = blobs(300, 3, rng=rng)
    assert len(label_qa.find_label_issues(oof(X, y, 3), y).indices) <= 3


def test_known_answer_thresholds_and_ranking() -> None:
    probs = np.array(
        [
            [0.9, 0.1],  # labeled 0, agrees
            [0.7, 0.3],  # labeled 0, agrees
            [0.2, 0.8],  # labeled 1, agrees
            [0.4, 0.6],  # labeled 1, agrees
            [0.95, 0.05],  # labeled 1: p0 >= t0 and p1 < t1 -> issue, margin .9
            [0.6, 0.4],  # labeled 0: p0 >= t0 -> agrees
            [0.05, 0.95],  # labeled 0: p1 >= t1 -> issue, margin .9 (a tie keeps row order)
            [0.3, 0.7],  # labeled 0: p1 >= t1, p0 < t0 -> issue, margin .4
        ]
    )
    y = np.array([0, 0, 1, 1, 1, 0, 0, 0])
    thresholds = label_qa.per_class_thresholds(probs, y)
    # t0 = mean p0 over rows labeled 0, t1 = mean p1 over rows labeled 1
    np.testing.assert_allclose(thresholds, [2.55 / 5, 1.45 / 3])
    issues = label_qa.find_label_issues(probs, y, rank_by="margin")
    assert issues.indices.tolist() == [4, 6, 7]
    assert issues.suggested.tolist() == [0, 1, 1]
    np.testing.assert_allclose(issues.scores, [0.9, 0.9, 0.4])
    by_confidence = label_qa.find_label_issues(probs, y)  # the default: low self-confidence
    assert by_confidence.indices.tolist() == [4, 6, 7]
    np.testing.assert_allclose(by_confidence.scores, [0.95, 0.95, 0.7])


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="2-d"):
        label_qa.find_label_issues(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="y must be"):
        label_qa.find_label_issues(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        label_qa.find_label_issues(np.full((2, 2), 0.5), np.array([0, 2]))
    with pytest.raises(ValueError, match="rank_by"):
        label_qa.find_label_issues(np.full((2, 2), 0.5), np.array([0, 1]), rank_by="x")  # type: ignore[arg-type]
    empty = label_qa.find_label_issues(np.zeros((0, 2)), np.zeros(0))
    assert len(empty.indices) == 0


# -- the service -----------------------------------------------------------------------------------
CLASSES = ("alpha", "beta", "gamma")


@dataclass
class PlantedProject:
    """A project whose items' embeddings are planted blobs, labeled with a few flips."""

    db: Database
    id: int
    item_ids: list[int]
    truth: list[str]
    flipped: set[int]  # item ids labeled with a wrong class
    class_id: dict[str, int]


def plant_embeddings(settings: Settings, keys: list[str], X: np.ndarray) -> None:
    from labella.learners.cache import EmbeddingCache

    cache = EmbeddingCache(settings.embeddings_dir, settings.text_encoder, DIM)
    try:
        cache.put_many(keys, X)
    finally:
        cache.close()


def planted_project(
    db: Database,
    settings: Settings,
    make_project: Callable[..., Any],
    *,
    n: int = 120,
    seed: int = 3,
) -> PlantedProject:
    rng = np.random.default_rng(seed)
    X, y = blobs(n, len(CLASSES), rng=rng)
    truth = y.copy()
    flipped_rows = set(flip(y, 0.05, len(CLASSES), rng=rng).tolist())
    project = make_project(CLASSES, retrain_every=10_000)
    # texts unique to this helper: the embedding cache is shared by the whole test session
    texts = [f"label-qa planted item {seed}-{i}" for i in range(n)]
    keys = [content_hash(t) for t in texts]
    plant_embeddings(settings, keys, X)
    with db.transaction() as session:
        items = [
            Item(project_id=project.id, text=t, content_hash=k, random_key=i / n, embedded=True)
            for i, (t, k) in enumerate(zip(texts, keys, strict=True))
        ]
        session.add_all(items)
        session.flush()
        item_ids = [item.id for item in items]
    for row, item_id in enumerate(item_ids):
        labeling.submit_label(db, project.id, item_id, classes=[CLASSES[y[row]]], annotator="alice")
    return PlantedProject(
        db=db,
        id=project.id,
        item_ids=item_ids,
        truth=[CLASSES[t] for t in truth],
        flipped={item_ids[row] for row in flipped_rows},
        class_id={c.name: c.id for c in project.classes},
    )


@pytest.fixture
def trained(
    db: Database, settings: Settings, make_project: Callable[..., Any], worker: Worker
) -> PlantedProject:
    planted = planted_project(db, settings, make_project)
    training.request_training(db, planted.id)
    worker.run_until_idle()
    return planted


def flags(db: Database, project_id: int) -> list[LabelFlag]:
    with db.reader() as session:
        return list(session.scalars(select(LabelFlag).where(LabelFlag.project_id == project_id)))


def test_training_flags_the_planted_flips(trained: PlantedProject, db: Database) -> None:
    queue = review.review_queue(db, trained.id, limit=50)
    assert queue, "training should have flagged something"
    k = len(trained.flipped)
    top = {flag.item_id for flag in queue[:k]}
    assert len(top & trained.flipped) >= 0.8 * k, (top, trained.flipped)
    first = queue[0]
    truth = trained.truth[trained.item_ids.index(first.item_id)]
    assert first.suggested_class is not None and first.suggested_class.name == truth
    assert first.label_classes[0].name != truth and first.annotator == "alice"
    assert first.text is not None and first.text.startswith("label-qa planted item")
    assert [f.score for f in queue] == sorted((f.score for f in queue), reverse=True)
    with db.reader() as session:
        model_id = session.scalar(select(LabelFlag.model_version_id).limit(1))
    assert model_id is not None and all(f.model_version_id == model_id for f in queue)


def test_keep_and_change_keep_history(
    trained: PlantedProject, db: Database, worker: Worker
) -> None:
    queue = review.review_queue(db, trained.id, limit=50)
    to_change, to_keep = queue[0], queue[1]
    right = to_change.suggested_class
    assert right is not None
    changed = review.resolve_flag(
        db, trained.id, to_change.id, action="change", classes=[right.name], reviewer="rita"
    )
    assert changed.status == FlagStatus.CHANGED and changed.resolved_by == "rita"
    history = labeling.item_history(db, trained.id, to_change.item_id)
    assert [(lab.annotator, lab.is_current) for lab in history.labels] == [
        ("rita", True),
        ("alice", False),
    ]
    assert history.labels[0].id == changed.resolution_label_id
    assert history.labels[0].classes[0].name == right.name
    assert history.labels[1].id == to_change.label_id

    kept = review.resolve_flag(db, trained.id, to_keep.id, action="keep", reviewer="rita")
    assert kept.status == FlagStatus.KEPT and kept.resolution_label_id is None
    assert labeling.item_history(db, trained.id, to_keep.item_id).labels[0].annotator == "alice"

    open_ids = {f.id for f in review.review_queue(db, trained.id, limit=500)}
    assert to_change.id not in open_ids and to_keep.id not in open_ids
    with pytest.raises(Conflict, match="already resolved"):
        review.resolve_flag(db, trained.id, to_keep.id, action="keep", reviewer="bob")

    # the next training replaces open flags, keeps resolved ones, never re-flags the kept label
    training.request_training(db, trained.id)
    worker.run_until_idle()
    after = flags(db, trained.id)
    by_status = {s: [f for f in after if f.status == s] for s in FlagStatus}
    assert {f.id for f in by_status[FlagStatus.KEPT]} == {to_keep.id}
    assert {f.id for f in by_status[FlagStatus.CHANGED]} == {to_change.id}
    assert to_keep.label_id not in {f.label_id for f in by_status[FlagStatus.OPEN]}
    assert to_change.item_id not in {f.item_id for f in by_status[FlagStatus.OPEN]}
    assert len({f.label_id for f in by_status[FlagStatus.OPEN]}) == len(by_status[FlagStatus.OPEN])
    history_flags = review.item_flags(db, trained.id, to_keep.item_id)
    assert [f.status for f in history_flags] == [FlagStatus.KEPT]


def test_resolve_refuses_bad_requests(trained: PlantedProject, db: Database) -> None:
    flag = review.review_queue(db, trained.id, limit=1)[0]
    with pytest.raises(NotFound, match="flag 999999"):
        review.resolve_flag(db, trained.id, 999_999, action="keep")
    with pytest.raises(InvalidInput, match="'approve' \\('keep'\\) or 'change'"):
        review.resolve_flag(db, trained.id, flag.id, action="delete")
    with pytest.raises(InvalidInput, match="needs the new label's classes"):
        review.resolve_flag(db, trained.id, flag.id, action="change")
    with pytest.raises(InvalidInput, match="unknown class"):
        review.resolve_flag(db, trained.id, flag.id, action="change", classes=["delta"])
    with pytest.raises(InvalidInput, match="approve it instead"):
        review.resolve_flag(
            db, trained.id, flag.id, action="change", classes=[flag.label_classes[0].name]
        )
    with pytest.raises(InvalidInput, match="limit"):
        review.review_queue(db, trained.id, limit=0)
    # nothing above changed the flag or the label
    assert review.review_queue(db, trained.id, limit=1)[0] == flag
    # a label changed by an annotator since it was flagged leaves the queue and cannot be resolved
    other = next(c for c in CLASSES if c != flag.label_classes[0].name)
    labeling.submit_label(db, trained.id, flag.item_id, classes=[other], annotator="bob")
    assert flag.id not in {f.id for f in review.review_queue(db, trained.id, limit=500)}
    with pytest.raises(Conflict, match="changed since it was flagged"):
        review.resolve_flag(db, trained.id, flag.id, action="keep")


def test_too_few_labels_or_multi_label_flag_nothing(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    planted = planted_project(db, settings, make_project, n=9, seed=11)
    assert label_qa.flag_label_issues(db, settings, planted.id, None) == 0
    multi = make_project(CLASSES, multi_label=True)
    assert label_qa.flag_label_issues(db, settings, multi.id, None) == 0


def test_a_qa_failure_is_logged_not_raised(
    db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # training calls this last; a QA error (here: the project vanished) must not fail the job
    assert label_qa.flag_after_training(db, settings, 999_999, 1) is None
    assert "label QA failed for project 999999" in caplog.text
