"""Queue building for batch strategies (services.ranking.select_queue) and writing the ranking
(``item.priority``) on both backends."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import insert, select

from labella.services.ranking import select_queue, write_priorities
from labella.storage.db import Database
from labella.storage.models import Item
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


# -- writing the ranking (both backends) ----------------------------------------------------------


def _items(db: Database, project_id: int, n: int) -> list[int]:
    with db.transaction() as session:
        session.execute(
            insert(Item),
            [
                {"project_id": project_id, "content_hash": f"h{i}", "random_key": i / n}
                for i in range(n)
            ],
        )
        return list(
            session.scalars(select(Item.id).where(Item.project_id == project_id).order_by(Item.id))
        )


def _queue(db: Database, project_id: int) -> dict[int, tuple[float, str]]:
    with db.reader() as session:
        rows = session.execute(
            select(Item.id, Item.priority, Item.priority_reason).where(
                Item.project_id == project_id, Item.priority.is_not(None)
            )
        )
        return {row.id: (row.priority, row.priority_reason) for row in rows}


def test_a_ranking_replaces_the_whole_queue(db: Database, make_project: Any) -> None:
    project = make_project()
    ids = _items(db, project.id, 12)
    write_priorities(db, project.id, np.asarray(ids[:6]), [f"old {i}" for i in range(6)])
    new = [ids[8], ids[2], ids[0], ids[11]]
    write_priorities(db, project.id, np.asarray(new), [f"new {i}" for i in range(4)])
    assert _queue(db, project.id) == {
        item_id: (float(4 - rank), f"new {rank}") for rank, item_id in enumerate(new)
    }
    write_priorities(db, project.id, np.empty(0, dtype=np.int64), [])
    assert _queue(db, project.id) == {}


def test_an_online_update_rewrites_only_the_top_of_the_queue(
    db: Database, make_project: Any
) -> None:
    project = make_project()
    ids = _items(db, project.id, 20)
    old = ids[:10]  # priorities 10 (ids[0]) .. 1 (ids[9])
    write_priorities(db, project.id, np.asarray(old), [f"old {i}" for i in range(10)])
    # the new top 3: one from the old top, two from the old tail and outside the old queue;
    # ids[1] (old top) moves down to place 6, ids[2] (old top) leaves the ranking
    new = [ids[15], ids[0], ids[8], ids[12], ids[13], ids[1], ids[16], ids[17], ids[18], ids[19]]
    write_priorities(db, project.id, np.asarray(new), [f"new {i}" for i in range(10)], top=3)

    queue = _queue(db, project.id)
    fresh = {item_id for item_id, (priority, _) in queue.items() if priority > 7}
    assert sorted(fresh, key=lambda i: -queue[i][0]) == new[:3]
    assert [queue[i] for i in new[:3]] == [(10.0, "new 0"), (9.0, "new 1"), (8.0, "new 2")]
    assert queue[ids[1]] == (5.0, "new 5")  # moved to its new place
    assert ids[2] not in queue  # left the queue's top and the new ranking
    # the places below the top keep their items
    for rank in (3, 4, 5, 6, 7, 9):
        assert queue[old[rank]] == (float(10 - rank), f"old {rank}")
    assert ids[12] not in queue  # below the rewritten top: written by the next full ranking
