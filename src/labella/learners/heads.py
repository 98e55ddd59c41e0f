"""Classifier heads trained on fixed embeddings: a linear model and a one-hidden-layer MLP.

Both minimise an L2-regularised softmax (single-label) or per-class sigmoid (multi-label)
cross-entropy with L-BFGS (Liu & Nocedal, 1989, "On the limited memory BFGS method for large scale
optimization"). Intercepts are regularised too, but 100 times more weakly than weights
(``INTERCEPT_PENALTY_SCALE``): a class nobody has labelled yet then gets a finite, small
probability instead of a logit that runs off to minus infinity, while a class seen only a few
times can still get a confident prior.

``partial_fit`` is a proximal (implicit) online update (Kulis & Bartlett, 2010, "Implicit Online
Learning"): starting from the current parameters, it fits the new rows while an L2 term keeps the
parameters near their current values. Old rows are not kept; their class means are replayed
instead (see ``_Prototypes``), which stops a batch of one class from sweeping the others away. On
real embeddings a stream of partial fits stays within about a point of accuracy of a full refit,
but it is an approximation: refit with ``fit`` on all labels when there is time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit, logsumexp
from threadpoolctl import threadpool_limits

_CLASS_WEIGHTS = (None, "balanced")
INTERCEPT_PENALTY_SCALE = 0.01


_PREDICT_CHUNK = 8192
"""Rows per chunk when predicting (bounded memory)."""


@runtime_checkable
class Head(Protocol):
    """A classifier over embedding vectors, as the app's services use it."""

    n_classes: int
    multi_label: bool
    classes_: np.ndarray

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self: ...

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> Self: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class _Batch:
    """Validated training rows: inputs, 0/1 targets ``(n, K)`` and per-target weights."""

    X: np.ndarray
    targets: np.ndarray
    weights: np.ndarray

    def __add__(self, other: _Batch) -> _Batch:
        return _Batch(
            np.vstack([self.X, other.X]),
            np.vstack([self.targets, other.targets]),
            np.vstack([self.weights, other.weights]),
        )


class _Prototypes:
    """Running means of the rows learned so far, one per class (single-label) or one per class
    and side (multi-label: positives and negatives of each class).

    ``partial_fit`` replays them, weighted by their counts, so that an update made of one class's
    rows cannot sweep the others away (class-mean rehearsal, as in Rebuffi et al., 2017, "iCaRL:
    Incremental Classifier and Representation Learning").
    """

    def __init__(self, n_classes: int, n_features: int, multi_label: bool) -> None:
        self.multi_label = multi_label
        self.n_classes = n_classes
        eye = np.eye(n_classes)
        if multi_label:
            # Rows 0..K-1: positives of class k; rows K..2K-1: negatives of class k.
            self.targets = np.vstack([eye, np.zeros((n_classes, n_classes))])
            self.mask = np.vstack([eye, eye])
        else:
            self.targets = eye
            self.mask = np.ones((n_classes, 1))
        self.sums = np.zeros((len(self.targets), n_features))
        self.counts = np.zeros(len(self.targets))

    def add(self, X: np.ndarray, targets: np.ndarray) -> None:
        membership = np.hstack([targets, 1 - targets]) if self.multi_label else targets
        self.sums += membership.T @ X
        self.counts += membership.sum(axis=0)

    def as_batch(self, weigh: Callable[[np.ndarray], np.ndarray]) -> _Batch:
        """The non-empty prototypes as training rows; ``weigh`` gives per-target class weights."""
        rows = self.counts > 0
        means = self.sums[rows] / self.counts[rows, None]
        targets = self.targets[rows]
        weights = weigh(targets) * self.mask[rows] * self.counts[rows, None]
        return _Batch(means, targets, weights)


class _BaseHead:
    """Validation, losses, optimisation and prediction shared by the heads.

    Subclasses define the parameter layout (``_initial_params``, ``_logits_and_backprop``) and
    the per-parameter L2 strengths (``_penalties``).

    BLAS runs single-threaded here: these are many small matrix products, and multi-threaded
    OpenBLAS slows them down by an order of magnitude or more when the cores are busy (e.g. with
    the encoder in another thread).
    """

    coef_: np.ndarray
    intercept_: np.ndarray
    n_features_in_: int
    classes_: np.ndarray
    class_counts_: np.ndarray
    n_samples_seen_: int
    thresholds_: np.ndarray
    n_iter_: int
    converged_: bool
    _prototypes: _Prototypes

    def __init__(
        self,
        *,
        n_classes: int,
        multi_label: bool,
        max_iter: int,
        class_weight: str | None,
        random_state: int | None,
    ) -> None:
        min_classes = 1 if multi_label else 2
        if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer):
            raise ValueError(f"n_classes must be an integer, got {n_classes!r}")
        if n_classes < min_classes:
            kind = "multi-label" if multi_label else "single-label"
            raise ValueError(f"a {kind} head needs n_classes >= {min_classes}, got {n_classes}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
        if class_weight not in _CLASS_WEIGHTS:
            raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}")
        self.n_classes = int(n_classes)
        self.multi_label = bool(multi_label)
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.random_state = random_state
        self.classes_ = np.arange(self.n_classes)
        self._params: np.ndarray | None = None

    # -- subclass hooks -----------------------------------------------------------------------

    def _penalties(self, n_features: int) -> np.ndarray:
        """L2 strength of each parameter, in the layout of ``_initial_params``."""
        raise NotImplementedError

    def _initial_params(self, n_features: int) -> np.ndarray:
        raise NotImplementedError

    def _logits_and_backprop(
        self, params: np.ndarray, X: np.ndarray
    ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Logits ``(n, K)`` and a function mapping d(loss)/d(logits) to d(loss)/d(params)."""
        raise NotImplementedError

    def _publish_params(self, params: np.ndarray) -> None:
        """Expose the learned parameters as public ``*_`` attributes."""
        raise NotImplementedError

    # -- public API ---------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return self._params is not None

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        """Train from scratch on ``X`` and labels ``y`` (ints, or an indicator matrix)."""
        X_checked = self._check_X(X, n_features=None)
        targets = self._check_targets(y, len(X_checked))
        self.n_features_in_ = X_checked.shape[1]
        self.class_counts_ = targets.sum(axis=0).astype(np.int64)
        self.n_samples_seen_ = len(X_checked)
        batch = _Batch(X_checked, targets, self._target_weights(targets))
        self._prototypes = _Prototypes(self.n_classes, self.n_features_in_, self.multi_label)
        self._prototypes.add(X_checked, targets)
        start = self._initial_params(self.n_features_in_)
        self._optimise(batch, start=start, anchor=np.zeros_like(start))
        if self.multi_label:
            self.thresholds_ = np.full(self.n_classes, 0.5)
        return self

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        """Update the current model with new labelled rows (fits from scratch if unfitted).

        Rows passed to ``fit`` or ``partial_fit`` before must not be passed again: they are
        already part of the model.
        """
        if self._params is None:
            return self.fit(X, y)
        X_checked = self._check_X(X, n_features=self.n_features_in_)
        targets = self._check_targets(y, len(X_checked))
        self.class_counts_ = self.class_counts_ + targets.sum(axis=0).astype(np.int64)
        self.n_samples_seen_ += len(X_checked)
        batch = _Batch(X_checked, targets, self._target_weights(targets))
        replay = self._prototypes.as_batch(self._target_weights)
        self._prototypes.add(X_checked, targets)
        current = self._params.copy()
        self._optimise(batch + replay, start=current, anchor=current)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """float32 ``(n, n_classes)``: softmax rows (sum to 1), or per-class sigmoids."""
        params = self._fitted_params()
        rows = np.asarray(X)
        if rows.ndim != 2:
            raise ValueError(f"X must be a 2-d array (n_samples, n_features), got {rows.shape}")
        out = np.empty((len(rows), self.n_classes), dtype=np.float32)
        # in chunks: a float64 copy of a whole 100,000-row pool would be 300 MB and slower
        with threadpool_limits(limits=1, user_api="blas"):
            for start in range(0, max(len(rows), 1), _PREDICT_CHUNK):
                chunk = self._check_X(
                    rows[start : start + _PREDICT_CHUNK],
                    n_features=self.n_features_in_,
                    allow_empty=True,
                )
                logits, _ = self._logits_and_backprop(params, chunk)
                if self.multi_label:
                    out[start : start + len(chunk)] = expit(logits)
                else:
                    shifted = logits - logits.max(axis=1, keepdims=True)
                    exp = np.exp(shifted)
                    out[start : start + len(chunk)] = exp / exp.sum(axis=1, keepdims=True)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class indices ``(n,)``, or a bool indicator ``(n, n_classes)`` for multi-label."""
        proba = self.predict_proba(X)
        if self.multi_label:
            return proba >= self.thresholds_.astype(np.float32)
        return proba.argmax(axis=1)

    def tune_thresholds(self, X_val: np.ndarray, Y_val: np.ndarray) -> Self:
        """Pick each class's decision threshold to maximise F1 on held-out rows (multi-label).

        Classes without a positive row in ``Y_val`` keep their threshold.
        """
        if not self.multi_label:
            raise ValueError("decision thresholds apply to multi-label heads only")
        from labella.learners.evaluation import tuned_thresholds

        proba = self.predict_proba(X_val).astype(np.float64)
        targets = self._check_targets(Y_val, len(proba))
        self.thresholds_ = tuned_thresholds(proba, targets.astype(bool), default=self.thresholds_)
        return self

    def get_state(self) -> dict[str, np.ndarray]:
        """The learned state as named arrays (e.g. for ``np.savez``), enough for ``partial_fit``
        to go on after ``set_state``. Hyperparameters are not included: rebuild the head with the
        same constructor arguments, then call ``set_state``."""
        state = {
            "params": self._fitted_params().copy(),
            "n_features_in": np.asarray(self.n_features_in_),
            "class_counts": self.class_counts_.copy(),
            "n_samples_seen": np.asarray(self.n_samples_seen_),
            "n_iter": np.asarray(self.n_iter_),
            "converged": np.asarray(self.converged_),
            "prototype_sums": self._prototypes.sums.copy(),
            "prototype_counts": self._prototypes.counts.copy(),
        }
        if self.multi_label:
            state["thresholds"] = self.thresholds_.copy()
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> Self:
        """Restore what :meth:`get_state` returned (from a head built with the same settings)."""
        n_features = int(state["n_features_in"])
        params = np.asarray(state["params"], dtype=np.float64)
        if params.shape != self._initial_params(n_features).shape:
            raise ValueError(
                f"saved parameters have shape {params.shape}, which does not fit this "
                f"{type(self).__name__} with {self.n_classes} classes and {n_features} features"
            )
        self.n_features_in_ = n_features
        self.class_counts_ = np.asarray(state["class_counts"], dtype=np.int64)
        self.n_samples_seen_ = int(state["n_samples_seen"])
        self.n_iter_ = int(state["n_iter"])
        self.converged_ = bool(state["converged"])
        self._prototypes = _Prototypes(self.n_classes, n_features, self.multi_label)
        self._prototypes.sums = np.asarray(state["prototype_sums"], dtype=np.float64)
        self._prototypes.counts = np.asarray(state["prototype_counts"], dtype=np.float64)
        if self.multi_label:
            self.thresholds_ = np.asarray(state["thresholds"], dtype=np.float64)
        self._params = params
        self._publish_params(params)
        return self

    # -- validation ---------------------------------------------------------------------------

    def _fitted_params(self) -> np.ndarray:
        if self._params is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call fit() first")
        return self._params

    def _check_X(
        self, X: np.ndarray, *, n_features: int | None, allow_empty: bool = False
    ) -> np.ndarray:
        array = np.asarray(X)
        if array.ndim != 2:
            raise ValueError(f"X must be a 2-d array (n_samples, n_features), got {array.shape}")
        if array.dtype.kind not in "iuf":
            raise ValueError(f"X must hold real numbers, got dtype {array.dtype}")
        array = array.astype(np.float64, copy=False)
        if len(array) == 0 and not allow_empty:
            raise ValueError("X has no rows; need at least one labelled example")
        if n_features is not None and array.shape[1] != n_features:
            raise ValueError(f"X has {array.shape[1]} features, the head was fit on {n_features}")
        if not np.isfinite(array).all():
            raise ValueError("X contains NaN or infinity")
        return array

    def _check_targets(self, y: np.ndarray, n_rows: int) -> np.ndarray:
        """Labels as a float 0/1 matrix ``(n, K)`` (one-hot for single-label)."""
        array = np.asarray(y)
        if self.multi_label:
            if array.shape != (n_rows, self.n_classes):
                raise ValueError(
                    f"multi-label y must be an indicator matrix of shape "
                    f"({n_rows}, {self.n_classes}), got {array.shape}"
                )
            if array.dtype != bool and not np.isin(array, (0, 1)).all():
                raise ValueError("multi-label y must contain only 0/1 (or True/False)")
            return array.astype(np.float64)
        if array.ndim != 1 or len(array) != n_rows:
            raise ValueError(f"y must be a 1-d array of {n_rows} class indices, got {array.shape}")
        if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"y must hold integer class indices, got dtype {array.dtype}")
        if not np.issubdtype(array.dtype, np.integer):
            if not (np.isfinite(array).all() and (array == np.round(array)).all()):
                raise ValueError("y must hold integer class indices")
            array = array.astype(np.int64)
        if len(array) and (array.min() < 0 or array.max() >= self.n_classes):
            raise ValueError(
                f"class indices must be in [0, {self.n_classes}), got "
                f"min {array.min()} and max {array.max()}"
            )
        one_hot = np.zeros((n_rows, self.n_classes))
        one_hot[np.arange(n_rows), array] = 1.0
        return one_hot

    def _target_weights(self, targets: np.ndarray) -> np.ndarray:
        """Weights broadcastable to ``targets``: ``(n, 1)`` for softmax, ``(n, K)`` for sigmoids.

        "balanced" uses the counts of every label seen so far, so that incremental updates weigh
        classes the way a full refit would.
        """
        n = len(targets)
        if self.class_weight is None:
            return np.ones((n, self.n_classes if self.multi_label else 1))
        counts = self.class_counts_.astype(np.float64)
        seen = float(self.n_samples_seen_)
        if self.multi_label:
            negatives = seen - counts
            both = (counts > 0) & (negatives > 0)
            w_pos = np.where(both, seen / (2 * np.maximum(counts, 1)), 1.0)
            w_neg = np.where(both, seen / (2 * np.maximum(negatives, 1)), 1.0)
            return targets * w_pos + (1 - targets) * w_neg
        present = counts > 0
        per_class = np.where(present, seen / (present.sum() * np.maximum(counts, 1)), 0.0)
        return (targets @ per_class)[:, None]

    # -- optimisation -------------------------------------------------------------------------

    def _loss_and_grad_wrt_logits(
        self, logits: np.ndarray, batch: _Batch
    ) -> tuple[float, np.ndarray]:
        if self.multi_label:
            # -[y log s(z) + (1 - y) log s(-z)], written stably
            losses = -(batch.targets * log_expit(logits) + (1 - batch.targets) * log_expit(-logits))
            d_logits = batch.weights * (expit(logits) - batch.targets)
            return float((batch.weights * losses).sum()), d_logits
        log_norm = logsumexp(logits, axis=1, keepdims=True)
        log_proba = logits - log_norm
        losses = -(batch.targets * log_proba).sum(axis=1, keepdims=True)
        d_logits = batch.weights * (np.exp(log_proba) - batch.targets)
        return float((batch.weights * losses).sum()), d_logits

    def _optimise(self, batch: _Batch, *, start: np.ndarray, anchor: np.ndarray) -> None:
        # Dividing by n changes no minimiser; it keeps L-BFGS tolerances meaningful at any n.
        scale = 1.0 / len(batch.X)
        l2 = self._penalties(batch.X.shape[1])

        def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
            logits, backprop = self._logits_and_backprop(params, batch.X)
            loss, d_logits = self._loss_and_grad_wrt_logits(logits, batch)
            delta = params - anchor
            value = loss + 0.5 * float(l2 @ (delta * delta))
            grad = backprop(d_logits) + l2 * delta
            return value * scale, grad * scale

        with threadpool_limits(limits=1, user_api="blas"):
            result = minimize(
                objective,
                start,
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": self.max_iter, "gtol": 1e-6},
            )
        params = np.asarray(result.x, dtype=np.float64)
        if not np.isfinite(params).all():
            raise FloatingPointError(f"{type(self).__name__} training diverged")
        self._params = params
        self.n_iter_ = int(result.nit)
        self.converged_ = bool(result.success)
        self._publish_params(params)


class LinearHead(_BaseHead):
    """Multinomial logistic regression (one-vs-rest logistic regressions for multi-label) on fixed
    embeddings.

    The objective is scikit-learn's, ``C * sum(weighted loss) + ||W||^2 / 2``, plus a weak
    penalty on the intercepts (see the module docstring).
    """

    def __init__(
        self,
        *,
        n_classes: int,
        multi_label: bool = False,
        C: float = 1.0,
        max_iter: int = 200,
        class_weight: str | None = None,
        random_state: int | None = None,
    ) -> None:
        super().__init__(
            n_classes=n_classes,
            multi_label=multi_label,
            max_iter=max_iter,
            class_weight=class_weight,
            random_state=random_state,
        )
        if not np.isfinite(C) or C <= 0:
            raise ValueError(f"C must be a positive number, got {C!r}")
        self.C = float(C)

    def _penalties(self, n_features: int) -> np.ndarray:
        k = self.n_classes
        return np.concatenate(
            [np.full(n_features * k, 1.0 / self.C), np.full(k, INTERCEPT_PENALTY_SCALE / self.C)]
        )

    def _initial_params(self, n_features: int) -> np.ndarray:
        # The objective is convex: zeros are as good a start as any, and deterministic.
        return np.zeros((n_features + 1) * self.n_classes)

    def _unpack(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.n_classes
        return params[:-k].reshape(-1, k), params[-k:]

    def _logits_and_backprop(
        self, params: np.ndarray, X: np.ndarray
    ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        W, b = self._unpack(params)

        def backprop(d_logits: np.ndarray) -> np.ndarray:
            return np.concatenate([(X.T @ d_logits).ravel(), d_logits.sum(axis=0)])

        return X @ W + b, backprop

    def _publish_params(self, params: np.ndarray) -> None:
        W, b = self._unpack(params)
        self.coef_ = W.T.copy()  # (n_classes, n_features), as in scikit-learn
        self.intercept_ = b.copy()


class MLPHead(_BaseHead):
    """One hidden ReLU layer, then softmax (single-label) or per-class sigmoids (multi-label).

    Weight decay ``alpha`` is scikit-learn's MLPClassifier convention; weights start from a
    Glorot-uniform draw (Glorot & Bengio, 2010) seeded by ``random_state``.
    """

    def __init__(
        self,
        *,
        n_classes: int,
        multi_label: bool = False,
        hidden_units: int = 64,
        alpha: float = 1.0,
        max_iter: int = 200,
        class_weight: str | None = None,
        random_state: int | None = None,
    ) -> None:
        super().__init__(
            n_classes=n_classes,
            multi_label=multi_label,
            max_iter=max_iter,
            class_weight=class_weight,
            random_state=random_state,
        )
        if isinstance(hidden_units, bool) or not isinstance(hidden_units, int) or hidden_units < 1:
            raise ValueError(f"hidden_units must be a positive integer, got {hidden_units!r}")
        if not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha must be a positive number, got {alpha!r}")
        self.hidden_units = hidden_units
        self.alpha = float(alpha)

    def _penalties(self, n_features: int) -> np.ndarray:
        scales = [1.0, INTERCEPT_PENALTY_SCALE, 1.0, INTERCEPT_PENALTY_SCALE]
        return np.concatenate(
            [
                np.full(int(np.prod(shape)), self.alpha * scale)
                for shape, scale in zip(self._shapes(n_features), scales, strict=True)
            ]
        )

    def _shapes(self, n_features: int) -> list[tuple[int, ...]]:
        h, k = self.hidden_units, self.n_classes
        return [(n_features, h), (h,), (h, k), (k,)]

    def _initial_params(self, n_features: int) -> np.ndarray:
        rng = np.random.default_rng(self.random_state)
        h, k = self.hidden_units, self.n_classes
        limit_1 = np.sqrt(6.0 / (n_features + h))
        limit_2 = np.sqrt(6.0 / (h + k))
        return np.concatenate(
            [
                rng.uniform(-limit_1, limit_1, n_features * h),
                np.zeros(h),
                rng.uniform(-limit_2, limit_2, h * k),
                np.zeros(k),
            ]
        )

    def _unpack(self, params: np.ndarray) -> list[np.ndarray]:
        shapes = self._shapes(self.n_features_in_)
        parts, offset = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            parts.append(params[offset : offset + size].reshape(shape))
            offset += size
        return parts

    def _logits_and_backprop(
        self, params: np.ndarray, X: np.ndarray
    ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        W1, b1, W2, b2 = self._unpack(params)
        hidden = np.maximum(X @ W1 + b1, 0.0)

        def backprop(d_logits: np.ndarray) -> np.ndarray:
            d_hidden = (d_logits @ W2.T) * (hidden > 0)
            return np.concatenate(
                [
                    (X.T @ d_hidden).ravel(),
                    d_hidden.sum(axis=0),
                    (hidden.T @ d_logits).ravel(),
                    d_logits.sum(axis=0),
                ]
            )

        return hidden @ W2 + b2, backprop

    def _publish_params(self, params: np.ndarray) -> None:
        W1, b1, W2, b2 = self._unpack(params)
        self.coefs_ = [W1.copy(), W2.copy()]
        self.intercepts_ = [b1.copy(), b2.copy()]
        # The output layer, for callers that only look at the last linear map.
        self.coef_ = W2.T.copy()
        self.intercept_ = b2.copy()


def best_f1_threshold(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """The threshold t maximising F1 of ``scores >= t``, or None without positive rows.

    t lies halfway between the lowest accepted score and the next lower one, so it does not sit
    exactly on a validation score. Ties in F1 go to the higher threshold.
    """
    n_positive = int(positives.sum())
    if n_positive == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    true_positives = np.cumsum(positives[order])
    predicted = np.arange(1, len(scores) + 1)
    # Only cut after the last of a run of equal scores.
    cut_ok = np.append(sorted_scores[:-1] > sorted_scores[1:], True)
    f1 = np.where(cut_ok, 2 * true_positives / (predicted + n_positive), -1.0)
    best = int(np.argmax(f1))
    if best + 1 < len(sorted_scores):
        return float((sorted_scores[best] + sorted_scores[best + 1]) / 2)
    return float(sorted_scores[best])


_HEADS: dict[str, Callable[..., Head]] = {"linear": LinearHead, "mlp": MLPHead}

# What a project gets when it names a head without settings. Sentence embeddings are unit-norm, so
# at scikit-learn's C=1 the weights stay too small: probabilities come out near-uniform (a median
# top probability of 0.42 at 92% accuracy on BBC News) and the first 20-label model predicts the
# majority class. C=10 fixes both (20 labels: 0.60 -> 0.79 accuracy in simulation) at the cost of
# about half a point at 1,500 labels (benchmarks/RESULTS.md).
DEFAULT_HEAD_PARAMS: dict[str, dict[str, Any]] = {"linear": {"C": 10.0}, "mlp": {}}


def head_kinds() -> list[str]:
    """Names accepted by :func:`make_head`."""
    return sorted(_HEADS)


def make_head(
    kind: str,
    *,
    n_classes: int,
    multi_label: bool = False,
    random_state: int | None = None,
    **params: Any,
) -> Head:
    """A new, unfitted head of the given kind ("linear" or "mlp"); ``params`` override the
    kind's defaults (``DEFAULT_HEAD_PARAMS``) and go to its constructor (e.g. ``C`` for linear,
    ``hidden_units`` for mlp)."""
    head_class = _HEADS.get(kind)
    if head_class is None:
        raise ValueError(f"unknown head kind {kind!r}; known kinds: {', '.join(head_kinds())}")
    settings = {**DEFAULT_HEAD_PARAMS.get(kind, {}), **params}
    return head_class(
        n_classes=n_classes, multi_label=multi_label, random_state=random_state, **settings
    )
