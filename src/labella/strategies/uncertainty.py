"""Single-label uncertainty sampling: least confidence, margin, ratio of confidence, entropy.

Each ``*_scores`` function maps softmax rows ``(n_items, n_classes)`` to float32 scores where
higher means more informative, chunked so memory stays bounded. These strategies reject
multi-label pools with :class:`~labella.strategies.base.IncompatiblePoolError`: the top-1/top-2
logic assumes the classes compete for one label; use ``ml_margin``/``ml_entropy`` there.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from labella.strategies._arrays import score_rows, score_top_two
from labella.strategies.base import LabelMode, MissingInputError, PoolView, UncertaintyStrategy
from labella.strategies.registry import register

_TINY = np.finfo(np.float32).tiny


def check_single_label_probs(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (n_items, n_classes), got shape {probs.shape}")
    if probs.shape[1] < 2:
        raise ValueError(
            f"single-label probabilities need at least 2 classes, got {probs.shape[1]}"
        )
    return probs


def least_confidence_scores(probs: np.ndarray) -> np.ndarray:
    """``1 - max_c p(c|x)``: how unsure the model is about its own top prediction.

    Lewis & Gale, "A sequential algorithm for training text classifiers", SIGIR 1994.
    """
    probs = check_single_label_probs(probs)
    return score_rows(probs, lambda columns: 1.0 - columns.max(axis=0))


def margin_scores(probs: np.ndarray) -> np.ndarray:
    """``1 - (p_top1 - p_top2)``: a small gap between the two best classes is informative.

    Scheffer, Decomain & Wrobel, "Active hidden Markov models for information extraction",
    IDA 2001. A row ``[0.5, 0.5]`` scores 1 (the maximum), a one-hot row scores 0.
    """
    probs = check_single_label_probs(probs)

    return score_top_two(probs, lambda first, second: 1.0 - (first - second))


def ratio_scores(probs: np.ndarray) -> np.ndarray:
    """Ratio of confidence ``p_top2 / p_top1`` in [0, 1]; 1 when the two best classes tie.

    Settles, "Active Learning Literature Survey", 2009 (margin family); named "ratio of
    confidence" in Monarch, "Human-in-the-Loop Machine Learning", 2021.
    """
    probs = check_single_label_probs(probs)

    def ratio(first: np.ndarray, second: np.ndarray) -> np.ndarray:
        # all-zero rows count as a tie; written as ~(<= 0) so NaN rows stay NaN and are reported
        return np.divide(second, first, out=np.ones_like(first), where=~(first <= 0))

    return score_top_two(probs, ratio)


def entropy_scores(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy ``-sum_c p log p`` in nats; ``log C`` for a uniform row, 0 for one-hot.

    Settles, "Active Learning Literature Survey", University of Wisconsin-Madison TR 1648, 2009.
    """
    probs = check_single_label_probs(probs)

    def score(columns: np.ndarray) -> np.ndarray:
        return -(columns * np.log(np.maximum(columns, _TINY))).sum(axis=0)

    return score_rows(probs, score)


def required_probs(pool: PoolView) -> np.ndarray:
    if pool.probs is None:
        raise MissingInputError("the pool has no 'probs' (predicted class probabilities)")
    return pool.probs


class _SingleLabelUncertainty(UncertaintyStrategy):
    _label_mode: ClassVar[LabelMode] = "single"


@register
class LeastConfidence(_SingleLabelUncertainty):
    """Query the items whose top prediction is least confident (Lewis & Gale 1994)."""

    name = "least_confidence"

    def _scores(self, pool: PoolView) -> np.ndarray:
        return least_confidence_scores(required_probs(pool))


@register
class MarginSampling(_SingleLabelUncertainty):
    """Query the items with the smallest top-1/top-2 probability gap (Scheffer et al. 2001).

    Equal scores are ordered by the ``rng`` passed to ``select``, never by position in the pool.
    """

    name = "margin"

    def _scores(self, pool: PoolView) -> np.ndarray:
        return margin_scores(required_probs(pool))


@register
class RatioSampling(_SingleLabelUncertainty):
    """Query the items with the highest ratio of confidence ``p_top2 / p_top1``."""

    name = "ratio"

    def _scores(self, pool: PoolView) -> np.ndarray:
        return ratio_scores(required_probs(pool))


@register
class EntropySampling(_SingleLabelUncertainty):
    """Query the items with the highest predictive entropy (Settles 2009 survey)."""

    name = "entropy"

    def _scores(self, pool: PoolView) -> np.ndarray:
        return entropy_scores(required_probs(pool))
