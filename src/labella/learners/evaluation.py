"""How good is the model? Metrics from cross-validation on human labels, or from held-out labels.

Every function returns a JSON-serialisable dict with the same keys, so the app can show either:
``accuracy`` (subset accuracy for multi-label), ``macro_f1``, ``micro_f1`` (multi-label only),
``per_class`` (precision, recall, f1, support per class name), ``n_labels``, ``method`` (in words)
and ``folds``. Scores that cannot be computed are ``None``.

Macro F1 averages over the classes that occur in the labels or the predictions, as
scikit-learn does for single-label data by default; classes nobody has used yet do not drag it
down. Precision, recall and F1 with a zero denominator are 0 (scikit-learn's ``zero_division=0``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from labella.learners.heads import Head

CV_METHOD = "{folds}-fold cross-validation on human labels"


def cross_validated_metrics(
    make_head: Callable[[], Head],
    X: np.ndarray,
    y: np.ndarray,
    *,
    n_classes: int,
    multi_label: bool = False,
    folds: int = 5,
    random_state: int = 0,
    class_names: Sequence[str] | None = None,
    tune_thresholds: bool = False,
    on_fold: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Metrics of out-of-fold predictions: each label is predicted by a head (from
    ``make_head()``) trained on the other folds. ``on_fold(done, n_folds)`` is called after each
    fold, for progress (a fold can take seconds when the head self-trains).

    With ``tune_thresholds`` (multi-label), each class's decision threshold is the one that
    maximises its F1 on the out-of-fold probabilities (returned as ``thresholds``, for the head
    trained on every label), and the metrics use those thresholds; being tuned on the same
    predictions they are slightly optimistic, and ``method`` says so.

    Folds are stratified by class (Kohavi, 1995, "A Study of Cross-Validation and Bootstrap for
    Accuracy Estimation and Model Selection"); multi-label rows by their rarest label, a one-pass
    simplification of Sechidis et al., 2011, "On the Stratification of Multi-Label Data". There
    are ``min(folds, n_labels)`` folds. A class with a single label cannot be predicted when its one
    label is held out; ``method`` says so, as it does when there are too few labels to evaluate.
    """
    names = _class_names(class_names, n_classes)
    X_checked = np.asarray(X)
    if X_checked.ndim != 2:
        raise ValueError(f"X must be a 2-d array (n_samples, n_features), got {X_checked.shape}")
    labels = _check_labels(y, n_classes=n_classes, multi_label=multi_label)
    if len(labels) != len(X_checked):
        raise ValueError(f"X has {len(X_checked)} rows but y has {len(labels)} labels")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    n = len(labels)
    if n < 2:
        return _not_enough_labels(labels, names, multi_label)

    n_folds = min(folds, n)
    strata = _rarest_label(labels) if multi_label else labels
    fold_of = stratified_folds(strata, n_folds, np.random.default_rng(random_state))
    proba = np.zeros((n, n_classes), dtype=np.float64)
    for fold in range(n_folds):
        held_out = fold_of == fold
        head = make_head()
        head.fit(X_checked[~held_out], labels[~held_out])
        proba[held_out] = head.predict_proba(X_checked[held_out])
        if on_fold is not None:
            on_fold(fold + 1, n_folds)

    thresholds = None
    if multi_label:
        thresholds = np.full(n_classes, 0.5)
        if tune_thresholds:
            thresholds = tuned_thresholds(proba, labels.astype(bool), default=thresholds)
        predictions = proba >= thresholds
    else:
        predictions = proba.argmax(axis=1)
    metrics = _metrics(labels, predictions, names, multi_label)
    metrics["method"] = CV_METHOD.format(folds=n_folds) + _caveats(labels, names, multi_label)
    if multi_label and tune_thresholds:
        metrics["method"] += "; per-class thresholds tuned on these predictions (optimistic)"
        metrics["thresholds"] = [float(t) for t in np.asarray(thresholds)]
    metrics["folds"] = n_folds
    return metrics


def tuned_thresholds(
    proba: np.ndarray, positives: np.ndarray, *, default: np.ndarray
) -> np.ndarray:
    """Per-class F1-maximising thresholds of held-out probabilities; a class without a positive
    row keeps its ``default`` (Lipton et al., "Optimal thresholding of classifiers to maximize F1
    measure", ECML PKDD 2014)."""
    from labella.learners.heads import best_f1_threshold

    out = np.asarray(default, dtype=np.float64).copy()
    for k in range(proba.shape[1]):
        best = best_f1_threshold(proba[:, k], positives[:, k])
        if best is not None:
            out[k] = best
    return out


def holdout_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    *,
    n_classes: int,
    multi_label: bool = False,
    class_names: Sequence[str] | None = None,
    thresholds: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics of given predicted probabilities against held-out labels.

    Single-label predictions are the most probable class; multi-label ones are
    ``proba >= thresholds`` (0.5 by default).
    """
    names = _class_names(class_names, n_classes)
    labels = _check_labels(y_true, n_classes=n_classes, multi_label=multi_label)
    scores = np.asarray(proba, dtype=np.float64)
    if scores.shape != (len(labels), n_classes):
        raise ValueError(f"proba must have shape ({len(labels)}, {n_classes}), got {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("proba contains NaN or infinity")
    if multi_label:
        cut = np.full(n_classes, 0.5) if thresholds is None else np.asarray(thresholds, float)
        if cut.shape != (n_classes,):
            raise ValueError(f"thresholds must have shape ({n_classes},), got {cut.shape}")
        predictions = scores >= cut
    else:
        predictions = scores.argmax(axis=1)
    if len(labels) == 0:
        return _not_enough_labels(labels, names, multi_label, method="no held-out labels")
    metrics = _metrics(labels, predictions, names, multi_label)
    metrics["method"] = f"held-out evaluation on {len(labels)} human labels"
    metrics["folds"] = 0
    return metrics


def stratified_folds(strata: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold index in ``[0, n_folds)`` for each row, spreading every stratum over the folds.

    Rows of each stratum are shuffled and dealt round-robin, continuing where the previous
    stratum stopped, so fold sizes differ by at most one and a stratum with at least ``n_folds``
    rows appears in every fold.
    """
    strata = np.asarray(strata)
    fold_of = np.empty(len(strata), dtype=np.int64)
    offset = 0
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        fold_of[members] = (offset + np.arange(len(members))) % n_folds
        offset += len(members)
    return fold_of


# -- helpers ----------------------------------------------------------------------------------


def _class_names(class_names: Sequence[str] | None, n_classes: int) -> list[str]:
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if class_names is None:
        return [str(k) for k in range(n_classes)]
    names = [str(name) for name in class_names]
    if len(names) != n_classes:
        raise ValueError(f"got {len(names)} class names for {n_classes} classes")
    if len(set(names)) != len(names):
        raise ValueError("class names must be unique")
    return names


def _check_labels(y: np.ndarray, *, n_classes: int, multi_label: bool) -> np.ndarray:
    """Class indices ``(n,)``, or a bool indicator matrix ``(n, n_classes)`` for multi-label."""
    array = np.asarray(y)
    if multi_label:
        if array.ndim != 2 or array.shape[1] != n_classes:
            raise ValueError(f"multi-label y must have shape (n, {n_classes}), got {array.shape}")
        if array.dtype != bool and not np.isin(array, (0, 1)).all():
            raise ValueError("multi-label y must contain only 0/1 (or True/False)")
        return array.astype(bool)
    if array.ndim != 1:
        raise ValueError(f"y must be a 1-d array of class indices, got shape {array.shape}")
    if array.dtype.kind not in "iuf" or (
        array.dtype.kind == "f" and not (np.isfinite(array).all() and (array % 1 == 0).all())
    ):
        raise ValueError(f"y must hold integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if len(array) and (array.min() < 0 or array.max() >= n_classes):
        raise ValueError(f"class indices must be in [0, {n_classes})")
    return array


def _rarest_label(indicator: np.ndarray) -> np.ndarray:
    """Each row's rarest positive label, or ``n_classes`` for rows with none (for stratifying)."""
    counts = indicator.sum(axis=0)
    rarity = np.where(indicator, counts[None, :], np.iinfo(np.int64).max)
    rarest = rarity.argmin(axis=1)
    return np.where(indicator.any(axis=1), rarest, indicator.shape[1])


def _binary_counts(
    labels: np.ndarray, predictions: np.ndarray, multi_label: bool, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: true positives, predicted positives, actual positives (support)."""
    if multi_label:
        truth, predicted = labels.astype(bool), predictions.astype(bool)
    else:
        classes = np.arange(n_classes)
        truth = labels[:, None] == classes
        predicted = predictions[:, None] == classes
    true_positives = (truth & predicted).sum(axis=0)
    return true_positives, predicted.sum(axis=0), truth.sum(axis=0)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    num = numerator.astype(np.float64)
    return np.divide(num, denominator, out=np.zeros_like(num), where=denominator > 0)


def _metrics(
    labels: np.ndarray, predictions: np.ndarray, names: list[str], multi_label: bool
) -> dict[str, Any]:
    n_classes = len(names)
    tp, predicted, support = _binary_counts(labels, predictions, multi_label, n_classes)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * tp, predicted + support)
    used = (support > 0) | (predicted > 0)
    metrics: dict[str, Any] = {
        "accuracy": float(np.mean(np.all(labels == predictions, axis=1)))
        if multi_label
        else float(np.mean(labels == predictions)),
        "macro_f1": float(f1[used].mean()) if used.any() else 0.0,
    }
    if multi_label:
        metrics["micro_f1"] = float(_ratio(2 * tp.sum(), predicted.sum() + support.sum()))
    metrics["per_class"] = {
        name: {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k, name in enumerate(names)
    }
    if not multi_label:
        confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(confusion, (labels, predictions), 1)
        metrics["confusion_matrix"] = confusion.tolist()
    metrics["n_labels"] = len(labels)
    return metrics


def _caveats(labels: np.ndarray, names: list[str], multi_label: bool) -> str:
    support = labels.sum(axis=0) if multi_label else np.bincount(labels, minlength=len(names))
    notes = []
    present = np.flatnonzero(support > 0)
    if not multi_label and len(present) == 1:
        notes.append(f"only one class ({names[present[0]]}) is labelled, so this says little")
    singletons = [names[k] for k in np.flatnonzero(support == 1)]
    if singletons:
        notes.append(
            "fewer than 2 labels for "
            + ", ".join(singletons)
            + ", which cannot be predicted when their one label is held out"
        )
    return "".join(f"; {note}" for note in notes)


def _not_enough_labels(
    labels: np.ndarray, names: list[str], multi_label: bool, method: str | None = None
) -> dict[str, Any]:
    support = (
        labels.sum(axis=0) if multi_label else np.bincount(labels, minlength=len(names))
    ).astype(int)
    metrics: dict[str, Any] = {"accuracy": None, "macro_f1": None}
    if multi_label:
        metrics["micro_f1"] = None
    metrics["per_class"] = {
        name: {"precision": None, "recall": None, "f1": None, "support": int(support[k])}
        for k, name in enumerate(names)
    }
    metrics["n_labels"] = len(labels)
    metrics["method"] = method or (
        f"not enough human labels for cross-validation (need at least 2, have {len(labels)})"
    )
    metrics["folds"] = 0
    return metrics
