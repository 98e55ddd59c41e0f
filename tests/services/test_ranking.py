"""Queue building for batch strategies (services.ranking.select_queue)."""

from __future__ import annotations

import numpy as np

from labella.services.ranking import select_queue
from labella.strategies import PoolView, get_strategy


def _pool(n_items: int, seed: int) -> PoolView:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([0.5, 0.5, 0.5], size=n_items).astype(np.float32)
    labeled = rng.random(n_items) < 0.1
    clusters = rng.integers(0, 12, size=n_items)
    return PoolView(labeled=labeled, probs=probs, clusters=clusters)


def test_cluster_margin_queue_is_built_batch_after_batch() -> None:
    pool = _pool(3000, seed=1)
    strategy = get_strategy("cluster_margin")
    queue = select_queue(strategy, pool, 200, batch=20, rng=np.random.default_rng(0))

    # the same queue, one batch at a time on the full pool, each batch marked labeled after
    labeled = pool.labeled.copy()
    expected = []
    for _ in range(10):
        step = PoolView(labeled=labeled.copy(), probs=pool.probs, clusters=pool.clusters)
        batch = strategy.select(step, 20, rng=np.random.default_rng(0))
        labeled[batch] = True
        expected.extend(batch.tolist())

    assert len(queue) == 200 == len(set(queue.tolist()))
    assert not pool.labeled[queue].any()
    assert sorted(queue.tolist()) == sorted(expected)
    for start in range(0, 200, 20):
        assert sorted(queue[start : start + 20].tolist()) == sorted(expected[start : start + 20])


def test_other_strategies_rank_the_queue_in_one_call() -> None:
    pool = _pool(500, seed=2)
    strategy = get_strategy("margin")
    queue = select_queue(strategy, pool, 100, batch=20, rng=np.random.default_rng(0))
    assert queue.tolist() == strategy.select(pool, 100, rng=np.random.default_rng(0)).tolist()


def test_a_queue_longer_than_the_pool_takes_every_unlabeled_item() -> None:
    pool = _pool(120, seed=3)
    queue = select_queue(
        get_strategy("cluster_margin"), pool, 1000, batch=20, rng=np.random.default_rng(0)
    )
    assert sorted(queue.tolist()) == np.flatnonzero(~pool.labeled).tolist()
