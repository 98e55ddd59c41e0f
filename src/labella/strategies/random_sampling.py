"""Uniform random sampling: the baseline every active-learning curve is compared against."""

from __future__ import annotations

import numpy as np

from labella.strategies.base import PoolView, QueryStrategy
from labella.strategies.registry import register


@register
class RandomSampling(QueryStrategy):
    """Uniformly random unlabeled items, without replacement.

    The passive-learning baseline of Lewis & Gale, "A sequential algorithm for training text
    classifiers", SIGIR 1994, and of every benchmark since (Settles 2009 survey).
    """

    name = "random"

    def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(pool.unlabeled_indices(), size=n, replace=False)
