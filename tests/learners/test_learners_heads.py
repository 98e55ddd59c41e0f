"""Classifier heads on fixed embeddings: the linear model and the MLP."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from labella.learners.heads import (
    Head,
    LinearHead,
    MLPHead,
    best_f1_threshold,
    head_kinds,
    make_head,
)

KINDS = ["linear", "mlp"]


def new_head(kind: str, **params: Any) -> LinearHead | MLPHead:
    head = make_head(kind, **params)
    assert isinstance(head, LinearHead | MLPHead)
    return head


def f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    tp = int((truth & predicted).sum())
    denominator = int(truth.sum() + predicted.sum())
    return 2 * tp / denominator if denominator else 0.0


def multi_label_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three labels, each on when the row points along its own hidden direction."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12))
    directions = np.eye(12)[:3] * 3
    Y = (X @ directions.T > 0.5).astype(int)
    return X, Y


@pytest.mark.parametrize("kind", KINDS)
def test_learns_separable_blobs(kind: str, make_blobs: Any) -> None:
    X, y = make_blobs(60, 4, seed=1)
    X_train, y_train, X_test, y_test = X[:160], y[:160], X[160:], y[160:]

    head = new_head(kind, n_classes=4, random_state=0).fit(X_train, y_train)

    assert (head.predict(X_test) == y_test).mean() >= 0.95
    assert head.classes_.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", KINDS)
def test_probabilities_are_finite_float32_and_normalised(kind: str, make_blobs: Any) -> None:
    X, y = make_blobs(30, 3, seed=2)
    head = new_head(kind, n_classes=3, random_state=0).fit(X, y)

    proba = head.predict_proba(X * 50)  # far outside the training range

    assert proba.dtype == np.float32
    assert proba.shape == (90, 3)
    assert np.isfinite(proba).all()
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(head.predict(X), proba_argmax(head, X))
    assert head.predict_proba(X[:0]).shape == (0, 3)


def proba_argmax(head: Head, X: np.ndarray) -> np.ndarray:
    return head.predict_proba(X).argmax(axis=1)


@pytest.mark.parametrize("kind", KINDS)
def test_classes_without_labels_get_small_finite_probabilities(kind: str, make_blobs: Any) -> None:
    X, y = make_blobs(30, 2, seed=3)

    head = new_head(kind, n_classes=5, random_state=0).fit(X, y)

    proba = head.predict_proba(X)
    assert np.isfinite(proba).all()
    assert proba[:, 2:].max() < 0.05
    assert set(head.predict(X).tolist()) <= {0, 1}
    assert np.isfinite(head.coef_).all()
    assert np.isfinite(head.intercept_).all()


@pytest.mark.parametrize("kind", KINDS)
def test_a_single_labelled_class_is_predicted_confidently(kind: str, make_blobs: Any) -> None:
    X, _ = make_blobs(5, 1, seed=4)

    head = new_head(kind, n_classes=5, random_state=0).fit(X, np.full(5, 3))

    proba = head.predict_proba(X)
    assert (head.predict(X) == 3).all()
    assert proba[:, 3].min() > 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_partial_fit_moves_predictions_toward_new_labels(kind: str, make_blobs: Any) -> None:
    X, y = make_blobs(40, 3, seed=5)
    old, new = y < 2, y == 2
    head = new_head(kind, n_classes=3, random_state=0).fit(X[old][:40], y[old][:40])
    before = head.predict_proba(X[new])[:, 2]
    params_before = head.coef_.copy()

    head.partial_fit(X[new][:10], y[new][:10])

    after = head.predict_proba(X[new])[:, 2]
    assert after.mean() > before.mean() + 0.3
    assert (head.predict(X[new][10:]) == 2).mean() >= 0.8
    # Still knows the old classes (their means are replayed, the weights anchored).
    assert (head.predict(X[old][40:]) == y[old][40:]).mean() >= 0.9
    assert not np.array_equal(head.coef_, params_before)


def test_partial_fit_on_an_unfitted_head_is_fit(make_blobs: Any) -> None:
    X, y = make_blobs(20, 3, seed=6)
    incremental = LinearHead(n_classes=3).partial_fit(X, y)
    full = LinearHead(n_classes=3).fit(X, y)
    np.testing.assert_array_equal(incremental.predict_proba(X), full.predict_proba(X))


@pytest.mark.parametrize("kind", KINDS)
def test_same_random_state_gives_the_same_model(kind: str, make_blobs: Any) -> None:
    X, y = make_blobs(25, 3, seed=7)
    first = new_head(kind, n_classes=3, random_state=42).fit(X, y)
    second = new_head(kind, n_classes=3, random_state=42).fit(X, y)
    first.partial_fit(X[:5], y[:5])
    second.partial_fit(X[:5], y[:5])
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


def test_mlp_initialisation_depends_on_random_state(make_blobs: Any) -> None:
    X, y = make_blobs(25, 3, seed=8)
    one = MLPHead(n_classes=3, random_state=1).fit(X, y)
    other = MLPHead(n_classes=3, random_state=2).fit(X, y)
    assert not np.array_equal(one.coefs_[0], other.coefs_[0])


def test_linear_head_agrees_with_scikit_learn(make_blobs: Any) -> None:
    X, y = make_blobs(50, 3, spread=2.0, seed=9)
    ours = LinearHead(n_classes=3, C=1.0, max_iter=500).fit(X, y)
    reference = LogisticRegression(C=1.0, max_iter=2000).fit(X, y)

    assert (ours.predict(X) == reference.predict(X)).mean() >= 0.98
    np.testing.assert_allclose(ours.predict_proba(X), reference.predict_proba(X), atol=0.05)
    assert ours.coef_.shape == (3, 16)
    assert ours.n_features_in_ == 16


def test_balanced_class_weight_raises_minority_recall(make_blobs: Any) -> None:
    X, y = make_blobs(200, 2, spread=3.0, seed=10)
    keep = (y == 0) | (np.arange(len(y)) % 10 == 0)  # class 1 becomes rare
    X, y = X[keep], y[keep]
    plain = LinearHead(n_classes=2).fit(X, y)
    balanced = LinearHead(n_classes=2, class_weight="balanced").fit(X, y)

    def minority_recall(head: LinearHead) -> float:
        return float((head.predict(X[y == 1]) == 1).mean())

    assert minority_recall(balanced) > minority_recall(plain)


@pytest.mark.parametrize("kind", KINDS)
def test_multi_label_heads_learn_each_label(kind: str) -> None:
    X, Y = multi_label_data(400, seed=11)
    head = new_head(kind, n_classes=3, multi_label=True, random_state=0).fit(X[:300], Y[:300])

    proba = head.predict_proba(X[300:])
    predicted = head.predict(X[300:])

    assert proba.shape == (100, 3)
    assert proba.dtype == np.float32
    assert np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all()
    assert not np.allclose(proba.sum(axis=1), 1.0)  # independent sigmoids, not a softmax
    assert predicted.dtype == bool
    np.testing.assert_array_equal(head.thresholds_, [0.5, 0.5, 0.5])
    for k in range(3):
        assert (predicted[:, k] == Y[300:, k].astype(bool)).mean() >= 0.9


def test_multi_label_accepts_labels_nobody_used_yet() -> None:
    X, Y = multi_label_data(100, seed=12)
    Y[:, 2] = 0
    head = LinearHead(n_classes=3, multi_label=True).fit(X, Y)
    proba = head.predict_proba(X)
    assert np.isfinite(proba).all()
    assert proba[:, 2].max() < 0.05


def test_tuned_thresholds_recover_f1_lost_to_a_shrunk_model() -> None:
    X, Y = multi_label_data(600, seed=13)
    Y[:, 0] = X[:, 0] > 1.4  # rare (~7%), so a heavily regularised model never reaches 0.5
    head = LinearHead(n_classes=3, multi_label=True, C=0.01).fit(X[:300], Y[:300])
    X_val, Y_val = X[300:450], Y[300:450].astype(bool)
    X_test, Y_test = X[450:], Y[450:].astype(bool)
    untuned = f1(Y_test[:, 0], head.predict(X_test)[:, 0])

    head.tune_thresholds(X_val, Y_val)

    tuned = f1(Y_test[:, 0], head.predict(X_test)[:, 0])
    assert head.thresholds_[0] < 0.5
    assert tuned > untuned + 0.2
    assert ((head.thresholds_ > 0) & (head.thresholds_ < 1)).all()


def test_tune_thresholds_is_for_multi_label_only(make_blobs: Any) -> None:
    X, y = make_blobs(10, 2)
    head = LinearHead(n_classes=2).fit(X, y)
    with pytest.raises(ValueError, match="multi-label"):
        head.tune_thresholds(X, y)


@pytest.mark.parametrize(
    ("scores", "positives", "expected"),
    [
        ([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0], 0.55),
        ([0.2, 0.9, 0.3, 0.8], [0, 1, 0, 1], 0.55),
        ([0.4, 0.4, 0.1], [1, 0, 0], 0.25),  # a tie cannot be split
        ([0.3, 0.2, 0.1], [0, 0, 1], 0.1),  # everything positive is best
        ([0.3, 0.2], [0, 0], None),
    ],
)
def test_best_f1_threshold_known_answers(
    scores: list[float], positives: list[int], expected: float | None
) -> None:
    result = best_f1_threshold(np.array(scores), np.array(positives, dtype=bool))
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_bad_input_gets_clear_errors(make_blobs: Any) -> None:
    X, y = make_blobs(10, 2)
    head = LinearHead(n_classes=2)
    with pytest.raises(RuntimeError, match="not fitted"):
        head.predict_proba(X)
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 2\)"):
        head.fit(X, np.full(len(X), 2))
    with pytest.raises(ValueError, match="no rows"):
        head.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="NaN"):
        head.fit(np.full_like(X, np.nan), y)
    with pytest.raises(ValueError, match="1-d array of 20"):
        head.fit(X, y[:5])
    head.fit(X, y)
    with pytest.raises(ValueError, match="the head was fit on 16"):
        head.predict(X[:, :3])
    with pytest.raises(ValueError, match="indicator matrix"):
        LinearHead(n_classes=2, multi_label=True).fit(X, y)
    with pytest.raises(ValueError, match="C must be"):
        LinearHead(n_classes=2, C=0)
    with pytest.raises(ValueError, match="n_classes >= 2"):
        LinearHead(n_classes=1)
    with pytest.raises(ValueError, match="class_weight"):
        LinearHead(n_classes=2, class_weight="auto")


def test_make_head_registry() -> None:
    assert head_kinds() == ["linear", "mlp"]
    linear = make_head("linear", n_classes=3, random_state=0, C=2.0)
    mlp = make_head("mlp", n_classes=3, multi_label=True, random_state=0, hidden_units=8)
    assert isinstance(linear, LinearHead)
    assert linear.C == 2.0
    assert isinstance(mlp, MLPHead)
    assert mlp.multi_label
    assert isinstance(mlp, Head)
    with pytest.raises(ValueError, match="unknown head kind 'svm'; known kinds: linear, mlp"):
        make_head("svm", n_classes=3)


@pytest.mark.parametrize("kind", KINDS)
def test_multi_label_partial_fit_learns_a_new_label(kind: str) -> None:
    X, Y = multi_label_data(400, seed=14)
    first = Y.copy()
    first[:, 2] = 0  # label 2 not in use yet
    head = new_head(kind, n_classes=3, multi_label=True, random_state=0).fit(X[:200], first[:200])
    before = head.predict_proba(X[300:])[:, 2]

    head.partial_fit(X[200:300], Y[200:300])

    after = head.predict(X[300:])
    positives = Y[300:, 2].astype(bool)
    assert head.predict_proba(X[300:])[positives, 2].mean() > before[positives].mean() + 0.3
    assert (after[:, 2] == positives).mean() >= 0.85
    assert (after[:, 0] == Y[300:, 0].astype(bool)).mean() >= 0.85


def test_make_head_applies_the_kind_defaults_and_lets_params_override_them() -> None:
    default = make_head("linear", n_classes=3)
    assert isinstance(default, LinearHead)
    assert default.C == 10.0
    explicit = make_head("linear", n_classes=3, C=0.5)
    assert isinstance(explicit, LinearHead)
    assert explicit.C == 0.5


def test_default_linear_head_is_confident_on_separable_unit_norm_embeddings() -> None:
    # Unit-norm vectors like sentence embeddings: the defaults must give usable confidences
    # (auto-label thresholds of 0.9 and more), not near-uniform rows.
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32))
    y = np.repeat(np.arange(3), 20)
    X = centres[y] + 0.3 * rng.normal(size=(60, 32))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    head = make_head("linear", n_classes=3, random_state=0).fit(X, y)
    assert float(np.median(head.predict_proba(X).max(axis=1))) > 0.95
