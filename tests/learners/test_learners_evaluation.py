"""Model quality metrics: held-out and cross-validated, checked against scikit-learn."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from labella.learners.evaluation import (
    cross_validated_metrics,
    holdout_metrics,
    stratified_folds,
)
from labella.learners.heads import LinearHead, MLPHead

NAMES = ["sports", "politics", "tech", "unused"]


def one_hot_proba(predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities whose most likely class is ``predicted`` (with a little spread)."""
    proba = np.full((len(predicted), n_classes), 0.1 / (n_classes - 1))
    proba[np.arange(len(predicted)), predicted] = 0.9
    return proba


def assert_matches_sklearn_single_label(
    metrics: dict[str, Any], y_true: np.ndarray, y_pred: np.ndarray, names: list[str]
) -> None:
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(names))), zero_division=0
    )
    for k, name in enumerate(names):
        row = metrics["per_class"][name]
        assert row["precision"] == pytest.approx(precision[k])
        assert row["recall"] == pytest.approx(recall[k])
        assert row["f1"] == pytest.approx(f1[k])
        assert row["support"] == support[k]


def test_holdout_single_label_matches_scikit_learn() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 1])

    metrics = holdout_metrics(y_true, one_hot_proba(y_pred, 4), n_classes=4, class_names=NAMES)

    assert_matches_sklearn_single_label(metrics, y_true, y_pred, NAMES)
    assert metrics["per_class"]["unused"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }
    assert metrics["confusion_matrix"][0] == [2, 1, 1, 0]
    assert metrics["n_labels"] == 10
    assert metrics["method"] == "held-out evaluation on 10 human labels"
    json.dumps(metrics)


def test_holdout_multi_label_matches_scikit_learn() -> None:
    Y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]])
    proba = np.array(
        [
            [0.9, 0.2, 0.7],
            [0.1, 0.4, 0.2],  # misses label 1 at 0.5, catches it at 0.3
            [0.8, 0.6, 0.6],
            [0.3, 0.1, 0.9],
            [0.4, 0.1, 0.1],
            [0.2, 0.2, 0.2],
        ]
    )
    names = ["a", "b", "c"]

    default = holdout_metrics(Y_true, proba, n_classes=3, multi_label=True, class_names=names)
    lowered = holdout_metrics(
        Y_true, proba, n_classes=3, multi_label=True, thresholds=np.array([0.5, 0.3, 0.5])
    )

    Y_pred = proba >= 0.5
    assert default["accuracy"] == pytest.approx(accuracy_score(Y_true, Y_pred))
    assert default["micro_f1"] == pytest.approx(f1_score(Y_true, Y_pred, average="micro"))
    assert default["macro_f1"] == pytest.approx(f1_score(Y_true, Y_pred, average="macro"))
    precision, recall, f1, support = precision_recall_fscore_support(
        Y_true, Y_pred, zero_division=0
    )
    for k, name in enumerate(names):
        assert default["per_class"][name] == pytest.approx(
            {"precision": precision[k], "recall": recall[k], "f1": f1[k], "support": support[k]}
        )
    assert lowered["per_class"]["1"]["recall"] == 1.0
    assert lowered["micro_f1"] > default["micro_f1"]
    json.dumps(default)


def test_cross_validation_is_metrics_of_out_of_fold_predictions(make_blobs: Any) -> None:
    X, y = make_blobs(12, 3, spread=2.5, seed=20)
    names = ["a", "b", "c"]

    folds_done: list[tuple[int, int]] = []
    metrics = cross_validated_metrics(
        lambda: LinearHead(n_classes=3),
        X,
        y,
        n_classes=3,
        random_state=7,
        class_names=names,
        on_fold=lambda done, total: folds_done.append((done, total)),
    )
    assert folds_done == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]

    # The same folds, fitted by hand.
    fold_of = stratified_folds(y, 5, np.random.default_rng(7))
    predicted = np.empty_like(y)
    for fold in range(5):
        test = fold_of == fold
        predicted[test] = LinearHead(n_classes=3).fit(X[~test], y[~test]).predict(X[test])
    assert_matches_sklearn_single_label(metrics, y, predicted, names)
    assert 0.3 < metrics["accuracy"] < 1.0  # overlapping blobs: a real, imperfect score
    assert metrics["folds"] == 5
    assert metrics["n_labels"] == 36
    assert metrics["method"] == "5-fold cross-validation on human labels"
    json.dumps(metrics)


def test_cross_validation_scores_a_learnable_problem_highly(make_blobs: Any) -> None:
    X, y = make_blobs(20, 4, seed=21)
    metrics = cross_validated_metrics(
        lambda: MLPHead(n_classes=4, random_state=0), X, y, n_classes=4
    )
    assert metrics["accuracy"] >= 0.95
    assert metrics["macro_f1"] >= 0.95
    assert set(metrics["per_class"]) == {"0", "1", "2", "3"}


def test_stratified_folds_spread_every_class_over_every_fold() -> None:
    y = np.array([0] * 10 + [1] * 5 + [2] * 7 + [3])

    fold_of = stratified_folds(y, 5, np.random.default_rng(0))

    sizes = np.bincount(fold_of, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    for k in (0, 1, 2):
        assert set(fold_of[y == k]) == set(range(5))
    assert np.array_equal(fold_of, stratified_folds(y, 5, np.random.default_rng(0)))


def test_few_labels_use_fewer_folds_and_say_what_is_missing(make_blobs: Any) -> None:
    X, y = make_blobs(2, 3, seed=22)
    y = y.copy()
    X, y = X[:5], y[:5]
    y[:] = [0, 0, 1, 1, 2]

    metrics = cross_validated_metrics(
        lambda: LinearHead(n_classes=3), X, y, n_classes=3, class_names=["a", "b", "c"]
    )

    assert metrics["folds"] == 5
    assert metrics["method"].startswith("5-fold cross-validation on human labels")
    assert "fewer than 2 labels for c" in metrics["method"]
    assert metrics["per_class"]["c"]["recall"] == 0.0
    assert metrics["per_class"]["c"]["support"] == 1

    three = cross_validated_metrics(lambda: LinearHead(n_classes=3), X[:3], y[:3], n_classes=3)
    assert three["folds"] == 3
    assert three["method"].startswith("3-fold")


def test_a_single_class_or_a_single_label_is_reported_honestly(make_blobs: Any) -> None:
    X, _ = make_blobs(4, 1, seed=23)

    one_class = cross_validated_metrics(
        lambda: LinearHead(n_classes=2), X, np.zeros(4, int), n_classes=2
    )
    one_label = cross_validated_metrics(
        lambda: LinearHead(n_classes=2), X[:1], np.zeros(1, int), n_classes=2
    )

    assert "only one class (0) is labelled" in one_class["method"]
    assert one_label["accuracy"] is None
    assert one_label["macro_f1"] is None
    assert one_label["folds"] == 0
    assert one_label["per_class"]["0"] == {
        "precision": None,
        "recall": None,
        "f1": None,
        "support": 1,
    }
    assert "need at least 2, have 1" in one_label["method"]
    json.dumps(one_label)


def test_multi_label_cross_validation() -> None:
    rng = np.random.default_rng(24)
    X = rng.normal(size=(80, 6))
    Y = (X[:, :3] > 0.3).astype(int)

    metrics = cross_validated_metrics(
        lambda: LinearHead(n_classes=3, multi_label=True, C=10.0),
        X,
        Y,
        n_classes=3,
        multi_label=True,
        class_names=["x", "y", "z"],
    )

    assert metrics["folds"] == 5
    assert metrics["micro_f1"] >= 0.85
    assert metrics["macro_f1"] >= 0.85
    assert 0.5 <= metrics["accuracy"] <= metrics["micro_f1"]  # subset accuracy is the strictest
    assert [metrics["per_class"][n]["support"] for n in "xyz"] == Y.sum(axis=0).tolist()
    json.dumps(metrics)


def test_tuned_thresholds_lift_the_f1_of_a_rare_class() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 4))
    # class 1 is rare and noisy: a well-fitted sigmoid seldom clears 0.5 for it
    Y = np.stack([X[:, 0] > 0, (X[:, 1] + 0.8 * rng.normal(size=300)) > 1.6], axis=1).astype(int)

    def head() -> LinearHead:
        return LinearHead(n_classes=2, multi_label=True, C=1.0)

    plain = cross_validated_metrics(head, X, Y, n_classes=2, multi_label=True, random_state=1)
    tuned = cross_validated_metrics(
        head, X, Y, n_classes=2, multi_label=True, random_state=1, tune_thresholds=True
    )
    assert "thresholds" not in plain
    assert tuned["thresholds"][1] < 0.5  # the rare class's cut moves down
    rare = [m["per_class"]["1"]["f1"] for m in (plain, tuned)]
    assert rare[1] > rare[0] + 0.05
    assert "tuned" in tuned["method"]


def test_bad_input_gets_clear_errors(make_blobs: Any) -> None:
    X, y = make_blobs(5, 2)

    def head() -> LinearHead:
        return LinearHead(n_classes=2)

    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        holdout_metrics(y, np.zeros((10, 3)), n_classes=3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        holdout_metrics(y, np.zeros((10, 2)), n_classes=2, class_names=["a", "a"])
    with pytest.raises(ValueError, match=r"proba must have shape \(10, 2\)"):
        holdout_metrics(y, np.zeros((9, 2)), n_classes=2)
    with pytest.raises(ValueError, match="10 rows but y has 9"):
        cross_validated_metrics(head, X, y[:9], n_classes=2)
    with pytest.raises(ValueError, match="folds"):
        cross_validated_metrics(head, X, y, n_classes=2, folds=1)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        cross_validated_metrics(head, X, y + 5, n_classes=2)
