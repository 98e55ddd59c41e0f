"""Multi-label uncertainty: closeness of each class probability to its decision threshold, and
the summed binary entropy of the per-class predictions.

These strategies only accept pools with ``multi_label=True``; softmax rows of a single-label
model are rejected with :class:`~labella.strategies.base.IncompatiblePoolError`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from labella.strategies._arrays import score_rows
from labella.strategies.base import LabelMode, PoolView, UncertaintyStrategy
from labella.strategies.registry import register
from labella.strategies.uncertainty import required_probs

Reduce = Literal["mean", "max"]
_REDUCTIONS: tuple[str, ...] = ("mean", "max")
_EPS = np.float32(1e-7)


def _check_multi_label_probs(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise ValueError(f"probs must be 2-D (n_items, n_classes >= 1), got shape {probs.shape}")
    return probs


def ml_margin_scores(
    probs: np.ndarray, thresholds: np.ndarray | None = None, *, reduce: Reduce = "mean"
) -> np.ndarray:
    """Closeness of each class probability to its threshold, reduced over classes.

    Per class, ``1 - |p_c - t_c| / max(t_c, 1 - t_c)`` is 1 when ``p_c`` sits on the threshold
    (the binary decision could go either way) and 0 at the far end of [0, 1]. ``reduce="max"``
    follows the most uncertain class (Brinker, "On active learning in multi-label
    classification", 2006: the smallest per-class SVM margin); ``reduce="mean"`` averages over
    classes like the mean-margin criteria compared by Yang, Sun, Wang, Chen & Zhang,
    "Effective multi-label active learning for text classification", KDD 2009.
    """
    probs = _check_multi_label_probs(probs)
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {_REDUCTIONS}, got {reduce!r}")
    n_classes = probs.shape[1]
    if thresholds is None:
        t = np.full((n_classes, 1), 0.5, dtype=np.float32)
    else:
        t = np.asarray(thresholds, dtype=np.float32).reshape(-1, 1)
        if t.shape[0] != n_classes:
            raise ValueError(f"thresholds must have {n_classes} entries, got {t.shape[0]}")
    scale = np.maximum(t, 1.0 - t)

    def score(columns: np.ndarray) -> np.ndarray:
        closeness = 1.0 - np.abs(columns - t) / scale
        return closeness.mean(axis=0) if reduce == "mean" else closeness.max(axis=0)

    return score_rows(probs, score)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in nats of Bernoulli(p), elementwise, with ``0 log 0 = 0``."""
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return -(p * np.log(q) + (1.0 - p) * np.log1p(-q))


def ml_entropy_scores(probs: np.ndarray) -> np.ndarray:
    """Sum over classes of the binary entropy of each per-class probability (nats).

    The multi-label analogue of entropy sampling: each label is an independent Bernoulli
    decision (Settles 2009 survey; Yang et al., KDD 2009, use the same per-label decomposition).
    """
    probs = _check_multi_label_probs(probs)
    return score_rows(probs, lambda columns: binary_entropy(columns).sum(axis=0))


class _MultiLabelUncertainty(UncertaintyStrategy):
    _label_mode: ClassVar[LabelMode] = "multi"


@register
class MultiLabelMargin(_MultiLabelUncertainty):
    """Query items whose class probabilities sit closest to the per-class thresholds.

    Hyperparameters:
        reduce: ``"mean"`` (average closeness over classes, Yang et al. 2009) or ``"max"``
            (the single most uncertain class, Brinker 2006).
    """

    name = "ml_margin"

    def __init__(self, *, reduce: Reduce = "mean") -> None:
        if reduce not in _REDUCTIONS:
            raise ValueError(f"ml_margin: reduce must be one of {_REDUCTIONS}, got {reduce!r}")
        self.reduce = reduce

    def _scores(self, pool: PoolView) -> np.ndarray:
        return ml_margin_scores(required_probs(pool), pool.class_thresholds(), reduce=self.reduce)


@register
class MultiLabelEntropy(_MultiLabelUncertainty):
    """Query items with the largest summed per-class binary entropy."""

    name = "ml_entropy"

    def _scores(self, pool: PoolView) -> np.ndarray:
        return ml_entropy_scores(required_probs(pool))
