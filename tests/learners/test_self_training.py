"""Self-training on the unlabeled pool: the pseudo-label choice and the wrapped head."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from labella.learners.heads import Head, make_head
from labella.learners.self_training import (
    SelfTrainedHead,
    confident_by_class,
    sample_rows,
)


def three_blobs(seed: int, n: int = 2000, dim: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Three classes, each a unit Gaussian around its own axis, on the unit sphere (like sentence
    embeddings): separable in bulk, but 3 labels per class leave the boundary to chance."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.zeros((3, dim))
    centres[[0, 1, 2], [0, 1, 2]] = 2.5
    X = rng.normal(size=(n, dim)) + centres[y]
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


def linear(n_classes: int = 3) -> Head:
    return make_head("linear", n_classes=n_classes, random_state=0)


def test_confident_by_class_takes_each_predicted_class_top_fraction() -> None:
    proba = np.array(
        [
            [0.90, 0.10],  # class 0, most sure
            [0.60, 0.40],  # class 0
            [0.70, 0.30],  # class 0
            [0.55, 0.45],  # class 0, least sure
            [0.20, 0.80],  # class 1
            [0.45, 0.55],  # class 1, least sure
        ]
    )
    assert confident_by_class(proba, fraction=0.5).tolist() == [0, 2, 4]
    assert confident_by_class(proba, fraction=1.0).tolist() == list(range(6))
    # a class needs 1 / fraction predicted rows before any of them is kept
    assert confident_by_class(proba, fraction=0.25).tolist() == [0]


def test_confident_by_class_is_balanced_when_the_head_favours_one_class() -> None:
    rng = np.random.default_rng(0)
    favoured = np.column_stack([rng.uniform(0.90, 1.0, 900), np.zeros(900)])
    rare = np.column_stack([np.zeros(100), rng.uniform(0.55, 0.65, 100)])
    proba = np.vstack([favoured, rare])
    proba[:900, 1] = 1 - proba[:900, 0]
    proba[900:, 0] = 1 - proba[900:, 1]
    rows = confident_by_class(proba, fraction=0.5)
    # a global top-50% would take only the favoured class; per class, each keeps half its rows
    assert (rows < 900).sum() == 450
    assert (rows >= 900).sum() == 50


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_fraction_outside_0_1_is_rejected(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        confident_by_class(np.full((2, 2), 0.5), fraction=fraction)
    with pytest.raises(ValueError, match="fraction"):
        SelfTrainedHead(linear, np.zeros((2, 3)), fraction=fraction)


def test_bad_rounds_and_unlabeled_shape_are_rejected() -> None:
    with pytest.raises(ValueError, match="rounds"):
        SelfTrainedHead(linear, np.zeros((2, 3)), rounds=-1)
    with pytest.raises(ValueError, match="unlabeled"):
        SelfTrainedHead(linear, np.zeros(3))


def test_self_training_recovers_what_three_labels_per_class_miss() -> None:
    X, y = three_blobs(0)
    X_test, y_test = three_blobs(1)
    gains = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        picked = np.concatenate(
            [rng.choice(np.flatnonzero(y == label), 3, replace=False) for label in range(3)]
        )
        unlabeled = np.delete(X, picked, axis=0)
        plain = linear().fit(X[picked], y[picked])
        trained = SelfTrainedHead(linear, unlabeled).fit(X[picked], y[picked])
        assert trained.n_pseudo_labels_ > len(unlabeled) // 3
        gains.append(
            (trained.predict(X_test) == y_test).mean() - (plain.predict(X_test) == y_test).mean()
        )
    # measured: +0.11 to +0.16 on these seeds (0.70-0.79 -> 0.86-0.90)
    assert min(gains) > 0.05


def test_zero_rounds_or_no_unlabeled_rows_is_the_plain_head() -> None:
    X, y = three_blobs(0, n=300)
    plain = linear().fit(X[:60], y[:60]).predict_proba(X[60:])
    for trained in (
        SelfTrainedHead(linear, X[60:], rounds=0).fit(X[:60], y[:60]),
        SelfTrainedHead(linear, X[:0]).fit(X[:60], y[:60]),
    ):
        assert trained.n_pseudo_labels_ == 0
        np.testing.assert_array_equal(trained.predict_proba(X[60:]), plain)


def _recorder(seen: list[tuple[int, int]]) -> Callable[[int, int], None]:
    return lambda done, total: seen.append((done, total))


def test_progress_is_reported_after_the_first_fit_and_each_round() -> None:
    X, y = three_blobs(0, n=300)
    for unlabeled, expected in ((X[60:], [1, 2, 3, 4]), (X[:0], [1, 4])):
        seen: list[tuple[int, int]] = []
        SelfTrainedHead(linear, unlabeled, on_round=_recorder(seen)).fit(X[:60], y[:60])
        assert seen == [(done, 4) for done in expected]


def test_the_final_head_is_a_plain_head_that_learns_online() -> None:
    X, y = three_blobs(0, n=400)
    trained = SelfTrainedHead(linear, X[60:]).fit(X[:60], y[:60])
    head = trained.head_
    assert isinstance(head, Head)
    np.testing.assert_array_equal(head.predict_proba(X[:5]), trained.predict_proba(X[:5]))
    head.partial_fit(X[60:70], y[60:70])  # an online update goes on from it


def test_multi_label_heads_are_refused() -> None:
    def multi() -> Head:
        return make_head("linear", n_classes=3, multi_label=True, random_state=0)

    X, y = three_blobs(0, n=100)
    with pytest.raises(ValueError, match="single-label"):
        SelfTrainedHead(multi, X[50:]).fit(X[:50], np.eye(3, dtype=int)[y[:50]])


def test_sample_rows_is_seeded_ordered_and_bounded() -> None:
    rows = np.arange(0, 100, 2)
    np.testing.assert_array_equal(sample_rows(rows, limit=60), rows)
    sample = sample_rows(rows, limit=10, random_state=3)
    assert sample.shape == (10,)
    assert np.all(np.diff(sample) > 0)  # original order, no repeats
    assert np.isin(sample, rows).all()
    np.testing.assert_array_equal(sample, sample_rows(rows, limit=10, random_state=3))
    assert not np.array_equal(sample, sample_rows(rows, limit=10, random_state=4))
