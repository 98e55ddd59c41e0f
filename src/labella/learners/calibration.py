"""Probability calibration: temperature scaling and the expected calibration error.

Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks") divides a
model's logits by one learned scalar ``T`` before the softmax. It changes no argmax, so accuracy is
untouched, while ``T > 1`` softens an over-confident model and ``T < 1`` sharpens an under-confident
one. One parameter cannot over-fit a few hundred held-out labels, which is why it suits the small
validation sets of active learning.

The scaler works on probabilities by default, because that is what the heads return: for a
softmax, ``log p`` equals the logits up to a per-row constant that the softmax ignores, and for
per-class sigmoids (multi-label) ``logit(p)`` recovers the logits exactly. Multi-label models get
the same ``T`` on every class's logit, which keeps the fit stable when some classes have few
positives.

For auto-labeling to a target precision only one number per item matters, the probability that
its predicted class is right, and temperature scaling fits that number least well among the items
the model is surest of (its one parameter is set by the whole range of confidences).
:class:`TopLabelCalibrator` refits that top-label confidence alone, after temperature scaling.
"""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, log_expit, log_softmax, logit, softmax

InputKind = Literal["probs", "logits"]

# Clipping keeps log(0) out of the NLL; float32 probabilities cannot resolve much below this.
_EPS = 1e-7


class TemperatureScaler:
    """Learn one temperature that minimises the negative log-likelihood on held-out labels.

    Parameters:
        inputs: whether ``fit`` and ``transform`` receive probabilities ("probs", the default,
            as the heads' ``predict_proba`` returns them) or raw logits ("logits").
        multi_label: per-class sigmoid outputs with an indicator-matrix ``y`` instead of softmax
            rows with class indices.
        min_temperature, max_temperature: the search interval for ``T``.

    Learned: ``temperature_``, ``nll_before_`` and ``nll_after_`` (mean NLL on the fit data at
    ``T = 1`` and at ``temperature_``), ``n_classes_``.
    """

    temperature_: float
    nll_before_: float
    nll_after_: float
    n_classes_: int

    def __init__(
        self,
        *,
        inputs: InputKind = "probs",
        multi_label: bool = False,
        min_temperature: float = 0.05,
        max_temperature: float = 20.0,
    ) -> None:
        if inputs not in ("probs", "logits"):
            raise ValueError(f"inputs must be 'probs' or 'logits', got {inputs!r}")
        if not (0 < min_temperature < 1 < max_temperature < np.inf):
            raise ValueError(
                "need 0 < min_temperature < 1 < max_temperature, got "
                f"{min_temperature!r} and {max_temperature!r}"
            )
        self.inputs = inputs
        self.multi_label = bool(multi_label)
        self.min_temperature = float(min_temperature)
        self.max_temperature = float(max_temperature)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "temperature_")

    def fit(self, scores: np.ndarray, y: np.ndarray) -> Self:
        """Find ``T`` by bounded scalar minimisation of the mean NLL over ``log T``.

        ``scores`` are ``(n, K)`` probabilities or logits (see ``inputs``); ``y`` holds class
        indices ``(n,)``, or a 0/1 indicator matrix ``(n, K)`` when ``multi_label``.
        """
        logits = self._logits(scores)
        targets = self._check_y(y, logits.shape)

        def nll(log_t: float) -> float:
            return self._nll(logits / np.exp(log_t), targets)

        result = minimize_scalar(
            nll,
            bounds=(np.log(self.min_temperature), np.log(self.max_temperature)),
            method="bounded",
            options={"xatol": 1e-5},
        )
        self.n_classes_ = logits.shape[1]
        self.temperature_ = float(np.exp(result.x))
        self.nll_before_ = self._nll(logits, targets)
        self.nll_after_ = float(result.fun)
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated float32 probabilities for ``scores`` of the same kind as in ``fit``."""
        if not self.is_fitted:
            raise RuntimeError("TemperatureScaler is not fitted yet; call fit() first")
        logits = self._logits(scores, allow_empty=True)
        if logits.shape[1] != self.n_classes_:
            raise ValueError(
                f"scores have {logits.shape[1]} columns, the scaler was fit on {self.n_classes_}"
            )
        scaled = logits / self.temperature_
        if self.multi_label:
            return expit(scaled).astype(np.float32)
        return softmax(scaled, axis=1).astype(np.float32)

    def fit_transform(self, scores: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.fit(scores, y).transform(scores)

    # -- helpers ------------------------------------------------------------------------------

    def _logits(self, scores: np.ndarray, *, allow_empty: bool = False) -> np.ndarray:
        array = np.asarray(scores)
        if array.ndim != 2:
            raise ValueError(f"scores must be a 2-d array (n, n_classes), got {array.shape}")
        if array.dtype.kind not in "iuf":
            raise ValueError(f"scores must hold real numbers, got dtype {array.dtype}")
        if len(array) == 0 and not allow_empty:
            raise ValueError("scores have no rows; need at least one labelled example")
        if array.shape[1] < (1 if self.multi_label else 2):
            raise ValueError(f"scores need at least 2 columns, got {array.shape[1]}")
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise ValueError("scores contain NaN or infinity")
        if self.inputs == "logits":
            return array
        if array.min(initial=0.0) < 0 or array.max(initial=0.0) > 1:
            raise ValueError("probabilities must lie in [0, 1]; pass inputs='logits' for logits")
        clipped = np.clip(array, _EPS, 1 - _EPS)
        return logit(clipped) if self.multi_label else np.log(clipped)

    def _check_y(self, y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Targets as a float 0/1 matrix of ``shape``."""
        n, k = shape
        array = np.asarray(y)
        if self.multi_label:
            if array.shape != (n, k):
                raise ValueError(f"multi-label y must have shape ({n}, {k}), got {array.shape}")
            if array.dtype != bool and not np.isin(array, (0, 1)).all():
                raise ValueError("multi-label y must contain only 0/1 (or True/False)")
            return array.astype(np.float64)
        if array.shape != (n,):
            raise ValueError(f"y must be a 1-d array of {n} class indices, got {array.shape}")
        if array.dtype.kind not in "iu":
            raise ValueError(f"y must hold integer class indices, got dtype {array.dtype}")
        if array.min() < 0 or array.max() >= k:
            raise ValueError(f"class indices must be in [0, {k}), got {array.min()}..{array.max()}")
        one_hot = np.zeros((n, k))
        one_hot[np.arange(n), array] = 1.0
        return one_hot

    def _nll(self, logits: np.ndarray, targets: np.ndarray) -> float:
        if self.multi_label:
            losses = targets * log_expit(logits) + (1 - targets) * log_expit(-logits)
            return float(-losses.sum(axis=1).mean())
        return float(-(targets * log_softmax(logits, axis=1)).sum(axis=1).mean())


class TopLabelCalibrator:
    """Recalibrate the top-label confidence: ``P(the predicted class is right | confidence)``.

    Top-label calibration (Gupta & Ramdas, 2022, "Top-label calibration and multiclass-to-binary
    reductions") treats "was the prediction right?" as a binary problem of the confidence alone;
    here with Platt's logistic map (Platt, 1999, "Probabilistic Outputs for Support Vector
    Machines"): ``sigmoid(slope * logit(c) + intercept)``, fitted by maximum a posteriori with a
    Gaussian prior centred on the identity (slope 1, intercept 0) of weight ``prior_strength``.
    The prior is what keeps a small sample (or one where every prediction was right, which would
    send an unpenalised slope to infinity) close to the confidences it was given; larger samples
    outweigh it. The slope stays positive, so the map never reorders items.

    Why it pays: on AG News at a 95% target, temperature-scaled confidences over-promised the
    precision of the items a flush selects by up to 1.7 points, and still by 0.6 with an
    800-item calibration sample; with this map on top by up to 1.3, and 0.0-0.2 with 800
    (benchmarks/RESULTS.md, "The product's default training (self-training) and top-label
    calibration").

    Learned: ``slope_``, ``intercept_``, ``n_``.
    """

    slope_: float
    intercept_: float
    n_: int

    def __init__(self, *, prior_strength: float = 1.0) -> None:
        number = isinstance(prior_strength, int | float) and not isinstance(prior_strength, bool)
        if not number or not np.isfinite(prior_strength) or prior_strength < 0:
            raise ValueError(f"prior_strength must be a number >= 0, got {prior_strength!r}")
        self.prior_strength = float(prior_strength)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "slope_")

    def fit(self, confidence: np.ndarray, correct: np.ndarray) -> Self:
        """``confidence``: each item's probability of its predicted class; ``correct``: whether
        that prediction was right (bool or 0/1)."""
        z = self._logit(confidence)
        hits = np.asarray(correct)
        if hits.shape != z.shape:
            raise ValueError(f"correct must have shape {z.shape}, got {hits.shape}")
        if hits.dtype != bool and not np.isin(hits, (0, 1)).all():
            raise ValueError("correct must contain only 0/1 (or True/False)")
        if len(z) == 0:
            raise ValueError("confidence has no rows; need at least one labelled example")
        t = hits.astype(np.float64)
        strength = self.prior_strength

        def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
            q = w[0] * z + w[1]
            residual = expit(q) - t
            loss = np.sum(np.logaddexp(0.0, q) - t * q)
            loss += strength * ((w[0] - 1.0) ** 2 + w[1] ** 2)
            grad = np.array(
                [
                    residual @ z + 2 * strength * (w[0] - 1.0),
                    residual.sum() + 2 * strength * w[1],
                ]
            )
            return float(loss), grad

        result = minimize(
            loss_and_grad,
            x0=np.array([1.0, 0.0]),
            jac=True,
            method="L-BFGS-B",
            bounds=[(1e-3, None), (None, None)],
        )
        self.slope_, self.intercept_ = (float(v) for v in result.x)
        self.n_ = len(z)
        return self

    def transform(self, confidence: np.ndarray) -> np.ndarray:
        """Recalibrated confidences, float64, the same shape and order as ``confidence``."""
        if not self.is_fitted:
            raise RuntimeError("TopLabelCalibrator is not fitted yet; call fit() first")
        return expit(self.slope_ * self._logit(confidence, allow_empty=True) + self.intercept_)

    @staticmethod
    def _logit(confidence: np.ndarray, *, allow_empty: bool = False) -> np.ndarray:
        array = np.asarray(confidence)
        if array.ndim != 1:
            raise ValueError(f"confidence must be a 1-d array, got shape {array.shape}")
        if array.dtype.kind not in "iuf":
            raise ValueError(f"confidence must hold real numbers, got dtype {array.dtype}")
        array = array.astype(np.float64)
        if not np.isfinite(array).all() or array.min(initial=0.0) < 0 or array.max(initial=0.0) > 1:
            raise ValueError("confidence must be finite and lie in [0, 1]")
        if len(array) == 0 and not allow_empty:
            raise ValueError("confidence has no rows; need at least one labelled example")
        return logit(np.clip(array, _EPS, 1 - _EPS))


class ConfidenceCalibrator:
    """The calibrated confidence of each row's predicted class, single-label: temperature scaling
    of the probabilities (:class:`TemperatureScaler`), then top-label calibration of the predicted
    class's probability (:class:`TopLabelCalibrator`), both fitted on the same held-out labels.
    What auto-labeling to a target precision thresholds.

    Learned: ``scaler_`` and ``top_label_``.
    """

    scaler_: TemperatureScaler
    top_label_: TopLabelCalibrator

    def fit(self, probs: np.ndarray, y: np.ndarray) -> Self:
        scaler = TemperatureScaler().fit(probs, y)
        scaled = scaler.transform(probs)
        correct = scaled.argmax(axis=1) == np.asarray(y)
        self.top_label_ = TopLabelCalibrator().fit(scaled.max(axis=1), correct)
        self.scaler_ = scaler
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated confidence (float64, one per row) of each row's most probable class."""
        if not hasattr(self, "scaler_"):
            raise RuntimeError("ConfidenceCalibrator is not fitted yet; call fit() first")
        return self.top_label_.transform(self.scaler_.transform(probs).max(axis=1))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, *, n_bins: int = 15) -> float:
    """The expected calibration error (Naeini et al., 2015; Guo et al., 2017).

    Single-label (``y`` holds class indices): rows are put in ``n_bins`` equal-width bins by
    their top probability, and the ECE is the row-weighted mean of ``|accuracy - confidence|``
    over the bins. Multi-label (``y`` is an indicator matrix of the same shape as ``probs``):
    every (row, class) probability is one binary forecast, binned by its value, and the gap is
    between the observed positive rate and the mean probability.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    p = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(y)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"probs must be a non-empty 2-d array, got shape {p.shape}")
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must be finite and lie in [0, 1]")
    if labels.shape == p.shape:
        confidence = p.ravel()
        correct = labels.astype(np.float64).ravel()
    elif labels.shape == (len(p),):
        if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= p.shape[1]:
            raise ValueError(f"y must hold class indices in [0, {p.shape[1]})")
        confidence = p.max(axis=1)
        correct = (p.argmax(axis=1) == labels).astype(np.float64)
    else:
        raise ValueError(
            f"y must be class indices of shape ({len(p)},) or an indicator matrix of shape "
            f"{p.shape}, got {labels.shape}"
        )
    # Bin b holds confidences in (b/n_bins, (b+1)/n_bins]; a confidence of exactly 0 goes to bin 0.
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct - confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(confidence))
