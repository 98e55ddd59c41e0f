"""BALD: the mutual information between an item's label and the model parameters."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from labella.strategies._arrays import row_chunks
from labella.strategies.base import LabelMode, MissingInputError, PoolView, UncertaintyStrategy
from labella.strategies.multilabel import binary_entropy
from labella.strategies.registry import register

_TINY = np.finfo(np.float32).tiny


def _entropy_over_classes(p: np.ndarray, class_axis: int) -> np.ndarray:
    return -(p * np.log(np.maximum(p, _TINY))).sum(axis=class_axis)


def bald_scores(prob_samples: np.ndarray, *, multi_label: bool = False) -> np.ndarray:
    """Mutual information ``H[mean_s p_s] - mean_s H[p_s]`` per item, in nats (>= 0).

    High when the samples are individually confident but disagree with each other (epistemic
    uncertainty), zero when all samples agree, however uncertain they each are.
    Houlsby, Huszár, Ghahramani & Lengyel, "Bayesian active learning for classification and
    preference learning", 2011; Gal, Islam & Ghahramani, "Deep Bayesian active learning with
    image data", ICML 2017.

    Args:
        prob_samples: ``(n_samples, n_items, n_classes)`` predictions of MC-dropout passes or
            ensemble members.
        multi_label: treat each class as an independent Bernoulli label and sum the per-class
            mutual informations (binary entropies) instead of softmax entropies.
    """
    prob_samples = np.asarray(prob_samples)
    if prob_samples.ndim != 3:
        raise ValueError(
            "prob_samples must be 3-D (n_samples, n_items, n_classes), "
            f"got shape {prob_samples.shape}"
        )
    n_samples, n_items, n_classes = prob_samples.shape
    out = np.empty(n_items, dtype=np.float32)
    for rows in row_chunks(n_items, n_samples * n_classes):
        # (n_samples, n_classes, rows): per-class arithmetic over contiguous item runs
        chunk = np.array(prob_samples[:, rows, :].transpose(0, 2, 1), dtype=np.float32, order="C")
        mean = chunk.mean(axis=0)
        if multi_label:
            total = binary_entropy(mean).sum(axis=0)
            expected = binary_entropy(chunk).sum(axis=1).mean(axis=0)
        else:
            total = _entropy_over_classes(mean, class_axis=0)
            expected = _entropy_over_classes(chunk, class_axis=1).mean(axis=0)
        # float32 round-off can make agreeing samples come out at -1e-8
        out[rows] = np.maximum(total - expected, 0.0)
    return out


@register
class BALD(UncertaintyStrategy):
    """Bayesian Active Learning by Disagreement over ``pool.prob_samples``.

    Works for single-label pools (softmax entropies) and multi-label pools (sum over classes of
    the binary BALD score). Houlsby et al. 2011; Gal et al. 2017.
    """

    name = "bald"
    requires: ClassVar[frozenset[str]] = frozenset({"prob_samples"})
    score_source: ClassVar[str] = "prob_samples"
    _label_mode: ClassVar[LabelMode] = "any"

    def _scores(self, pool: PoolView) -> np.ndarray:
        if pool.prob_samples is None:
            raise MissingInputError("the pool has no 'prob_samples' for BALD")
        return bald_scores(pool.prob_samples, multi_label=pool.multi_label)
