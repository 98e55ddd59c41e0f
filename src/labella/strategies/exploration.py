"""Epsilon-greedy mixing of an uncertainty strategy with random exploration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, cast

import numpy as np

from labella.strategies._arrays import select_top_scores
from labella.strategies.base import LabelMode, PoolView, QueryStrategy, UncertaintyStrategy
from labella.strategies.registry import (
    available_strategies,
    get_strategy,
    register,
    strategy_class,
)

PROBS_ONLY: frozenset[str] = frozenset({"probs"})


def build_probs_uncertainty(
    owner: str, base: str, base_params: Mapping[str, Any] | None
) -> UncertaintyStrategy:
    """Instantiate an uncertainty strategy that needs nothing but ``probs``, for composition."""
    if not _is_probs_uncertainty(strategy_class(base)):
        allowed = [
            name for name in available_strategies() if _is_probs_uncertainty(strategy_class(name))
        ]
        raise ValueError(
            f"{owner}: base must be an uncertainty strategy scored from probs, got {base!r}; "
            f"choose one of {', '.join(allowed)}"
        )
    return cast(UncertaintyStrategy, get_strategy(base, **dict(base_params or {})))


def _is_probs_uncertainty(cls: type[QueryStrategy]) -> bool:
    return issubclass(cls, UncertaintyStrategy) and cls.requires <= PROBS_ONLY


@register
class ExplorationMix(QueryStrategy):
    """Per slot: the base strategy's next pick with probability ``p``, else a random item.

    Epsilon-greedy exploration (Sutton & Barto, "Reinforcement Learning", 1998, §2.2) applied to
    pool-based active learning so a miscalibrated model cannot starve regions it is wrongly sure
    about (cf. Bouneffouf et al., "Contextual bandit for active learning", ICONIP 2014; Osugi,
    Kim & Scott, "Balancing exploration and exploitation", ICDM 2005). Each slot draws its own
    coin; exploited slots take the base ranking in order, explored slots a uniformly random
    unlabeled item not already in the batch.

    Hyperparameters:
        p: probability of exploiting the base strategy in each slot, in [0, 1].
        base: name of an uncertainty strategy scored from ``probs`` (default ``"margin"``).
        base_params: keyword hyperparameters for the base strategy.

    Accepts whatever pools the base accepts (multi-label with ``base="ml_margin"``).
    """

    name = "exploration_mix"
    requires: ClassVar[frozenset[str]] = PROBS_ONLY

    def __init__(
        self, *, p: float = 0.9, base: str = "margin", base_params: Mapping[str, Any] | None = None
    ) -> None:
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"exploration_mix: p must be in [0, 1], got {p}")
        self.p = p
        self.base = base
        self.base_params = base_params
        build_probs_uncertainty(self.name, base, base_params)

    @property
    def label_mode(self) -> LabelMode:
        return self._base().label_mode

    def _base(self) -> UncertaintyStrategy:
        return build_probs_uncertainty(self.name, self.base, self.base_params)

    def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
        exploit = rng.random(n) < self.p
        ranked = select_top_scores(
            self._base().scores(pool), pool.labeled, n, rng=rng, source="probs"
        )
        n_unlabeled = pool.n_unlabeled
        # n distinct random items always suffice: at most n - (explored slots) of them collide
        # with exploited picks, which is exactly the number we can afford to skip
        explore_order = rng.choice(
            pool.unlabeled_indices(), size=min(n, n_unlabeled), replace=False
        )
        return _interleave(exploit, ranked, explore_order)


def _interleave(exploit: np.ndarray, ranked: np.ndarray, random_items: np.ndarray) -> np.ndarray:
    chosen: list[int] = []
    taken: set[int] = set()
    ranked_iter = iter(ranked.tolist())
    random_iter = iter(random_items.tolist())
    for use_base in exploit.tolist():
        source = ranked_iter if use_base else random_iter
        item = next(i for i in source if i not in taken)
        chosen.append(item)
        taken.add(item)
    return np.asarray(chosen, dtype=np.int64)
