"""Ranking: order the labeling queue with the project's query strategy.

The pool is every embedded item of the project (an item without an embedding cannot be scored
yet); items with any status other than "unlabeled" are marked labeled and never selected. The
strategy sees plain arrays only: the model's probabilities (recomputed from the embeddings by the
stored head), the embeddings from the cache, and k-means clusters fitted once per project and
kept on disk. The top ``settings.queue_size`` picks get a descending ``item.priority`` and a short
``priority_reason``; every other item's priority is cleared, all in one transaction.

Without a model (cold start) a probability-based strategy has nothing to score, so
``kmeans_cold_start`` picks one representative per cluster and the batch is ordered by a
farthest-first traversal, so that every prefix of the queue is spread over the data.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import bindparam, case, func, select, text, update
from sqlalchemy.orm import Session

from labella.config import Settings
from labella.errors import InvalidInput
from labella.jobs import queue
from labella.jobs.runtime import JobContext, executor
from labella.services.encoding import open_cache, resume_note
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import Item, ItemStatus, Job, ModelVersion, ProjectKind

RANK_JOB = "rank"
COLD_START_BATCH = 100
"""Items the cold-start ranking orders: one representative per cluster."""
PROJECT_CLUSTERS = 100
"""Clusters fitted once per project (fewer for small projects)."""
PRELABEL_REFRESH = 500
"""The top of the queue an online update rewrites: these places' items and their predictions
(the prelabels); the rest of the queue waits for the next full training (``write_priorities``)."""
ENSEMBLE_SIZE = 5
"""Bootstrap heads whose disagreement stands in for posterior samples (BALD)."""
# Strategies that read the project's clusters when given (they would cluster on every query else).
_CLUSTERED = frozenset({"kmeans_cold_start", "typiclust"})
_WRITE_BATCH = 5000
_ITEMS = Item.metadata.tables[Item.__tablename__]
_DECIDED_STATUSES = [status.value for status in ItemStatus if status != ItemStatus.UNLABELED]


@dataclass(frozen=True)
class RankResult:
    n_items: int
    n_ranked: int
    strategy: str
    cold_start: bool
    model_version: int | None
    seconds: float
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_items": self.n_items,
            "n_ranked": self.n_ranked,
            "strategy": self.strategy,
            "cold_start": self.cold_start,
            "model_version": self.model_version,
            "seconds": round(self.seconds, 3),
            "note": self.note,
        }


def request_ranking(db: Database, project_id: int, *, actor: str = "system") -> Job:
    """Queue a re-ranking of the project's queue (e.g. after its strategy changed)."""
    from labella.services import audit

    with db.transaction() as session:
        repo.get_project(session, project_id)
        job = queue.enqueue(session, kind=RANK_JOB, project_id=project_id)
        audit.record(
            session,
            actor=actor,
            action="rank.request",
            project_id=project_id,
            detail={"job_id": job.id},
        )
        return job


# -- pool ----------------------------------------------------------------------------------------


@dataclass
class Pool:
    item_ids: np.ndarray
    labeled: np.ndarray
    embeddings: np.ndarray
    n_items: int
    """All items of the project, embedded or not."""


@dataclass
class _Vectors:
    item_ids: np.ndarray
    embeddings: np.ndarray


class _VectorMemo:
    """The embeddings of a project's embedded items, kept in memory between rankings.

    Online updates re-rank after every few labels; reading 100,000 vectors (and item rows) back
    each time would cost seconds, while the embedded items rarely change between two labels. An
    entry is reused while the project's embedded items have the same count and id sum (items
    are only ever added or un-flagged, so a change moves one of the two). Bounded to a few
    projects (100,000 MiniLM vectors are about 150 MB).
    """

    def __init__(self, max_projects: int = 4) -> None:
        self._max = max_projects
        self._entries: OrderedDict[tuple[str, int, str], tuple[tuple[int, int], _Vectors]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, str], fingerprint: tuple[int, int]) -> _Vectors | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != fingerprint:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple[str, int, str], fingerprint: tuple[int, int], entry: _Vectors) -> None:
        with self._lock:
            self._entries[key] = (fingerprint, entry)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


VECTOR_MEMO = _VectorMemo()


def load_pool(db: Database, settings: Settings, project_id: int, encoder: str) -> Pool:
    """The embedded items, which of them are labeled (any status but unlabeled), and their
    vectors: two aggregate/index reads when the vectors are in memory already."""
    with db.reader() as session:
        n_items, n_embedded, id_sum = session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((Item.embedded.is_(True), 1), else_=0)), 0),
                func.coalesce(func.sum(case((Item.embedded.is_(True), Item.id), else_=0)), 0),
            ).where(Item.project_id == project_id)
        ).one()
        # only the decided items: a few thousand rows, not the whole pool. On PostgreSQL their
        # statuses are listed, so the read is a range of the status indexes ("status !=
        # unlabeled" scanned the table there: 30-50 ms at 100,000 items; SQLite is as fast
        # either way).
        decided_status = (
            Item.status.in_(_DECIDED_STATUSES)
            if session.get_bind().dialect.name == "postgresql"
            else Item.status != ItemStatus.UNLABELED.value
        )
        decided = np.asarray(
            session.scalars(
                select(Item.id).where(
                    Item.project_id == project_id, decided_status, Item.embedded.is_(True)
                )
            ).all(),
            dtype=np.int64,
        )
    key = (str(db.engine.url), project_id, encoder)
    fingerprint = (int(n_embedded), int(id_sum))
    vectors = VECTOR_MEMO.get(key, fingerprint)
    if vectors is None:
        vectors = _read_vectors(db, settings, project_id, encoder)
        if vectors is None:  # some vectors were lost; they are being encoded again
            return load_pool(db, settings, project_id, encoder)
        VECTOR_MEMO.put(key, fingerprint, vectors)
    labeled = np.isin(vectors.item_ids, decided, assume_unique=True)
    return Pool(
        item_ids=vectors.item_ids,
        labeled=labeled,
        embeddings=vectors.embeddings,
        n_items=int(n_items),
    )


def _read_vectors(
    db: Database, settings: Settings, project_id: int, encoder: str
) -> _Vectors | None:
    """Every embedded item's vector from the on-disk cache; None after un-flagging the items
    whose vectors are missing (a deleted cache), which queues their encoding."""
    with db.reader() as session:
        rows = session.execute(
            select(Item.id, Item.content_hash)
            .where(Item.project_id == project_id, Item.embedded.is_(True))
            .order_by(Item.id)
        ).all()
    item_ids = np.fromiter((row.id for row in rows), dtype=np.int64, count=len(rows))
    _, cache = open_cache(settings, encoder)
    try:
        embeddings, found = cache.get_many([row.content_hash for row in rows])
    finally:
        cache.close()
    if not found.all():
        from labella.services.training import unflag_lost_embeddings

        unflag_lost_embeddings(db, project_id, item_ids[~found].tolist())
        return None
    return _Vectors(item_ids=item_ids, embeddings=embeddings)


def clusters_path(settings: Settings, project_id: int) -> Path:
    return settings.data_dir / "clusters" / f"project-{project_id}.npz"


def project_clusters(
    settings: Settings, project_id: int, item_ids: np.ndarray, embeddings: np.ndarray
) -> np.ndarray:
    """k-means cluster ids of the pool's items, fitted once and reused until the items change."""
    from labella.strategies import fit_clusters

    path = clusters_path(settings, project_id)
    if path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            if saved["item_ids"].shape == item_ids.shape and np.array_equal(
                saved["item_ids"], item_ids
            ):
                return saved["clusters"].astype(np.int64)
    n_clusters = min(PROJECT_CLUSTERS, len(item_ids))
    clusters = fit_clusters(embeddings, n_clusters, random_state=settings.random_seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp")
    with tmp.open("wb") as stream:
        np.savez(stream, item_ids=item_ids, clusters=clusters)
    tmp.replace(path)
    return clusters.astype(np.int64)


# -- model outputs -------------------------------------------------------------------------------


def _bootstrap_prob_samples(
    db: Database, settings: Settings, project_id: int, embeddings: np.ndarray, seed: int
) -> np.ndarray | None:
    """Predictions of heads fitted on bootstrap resamples of the labels, ``(B, n, K)``.

    A bootstrap ensemble approximates posterior samples for BALD when the head has no dropout
    (Beluch et al., "The power of ensembles for active learning in image classification",
    CVPR 2018).
    """
    from labella.learners.heads import make_head
    from labella.services.training import _targets, load_labeled_rows

    with db.reader() as session:
        project = repo.get_project(session, project_id)
        rows = load_labeled_rows(session, project)
    if rows.n_usable < 2:
        return None
    _, cache = open_cache(settings, project.encoder)
    try:
        X, found = cache.get_many(rows.keys)
    finally:
        cache.close()
    y = _targets(rows, multi_label=project.multi_label)
    X, y = X[found], y[found]
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(ENSEMBLE_SIZE):
        for _attempt in range(20):
            pick = rng.integers(0, len(X), size=len(X))
            if project.multi_label or len(np.unique(y[pick])) >= 2:
                break
        head = make_head(
            project.head,
            n_classes=len(rows.class_ids),
            multi_label=project.multi_label,
            random_state=int(rng.integers(2**31 - 1)),
        )
        head.fit(X[pick], y[pick])
        samples.append(head.predict_proba(embeddings))
    return np.stack(samples).astype(np.float32)


# -- reasons -------------------------------------------------------------------------------------


def _reasons(
    strategy: Any,
    pool: Any,
    picks: np.ndarray,
    *,
    class_names: list[str],
    n_clusters: int,
) -> list[str]:
    """A short human explanation of why each picked item is in the queue."""
    from labella.strategies import UncertaintyStrategy, information_density
    from labella.strategies.exploration import ExplorationMix

    name = strategy.name
    if name == "random":
        return ["random"] * len(picks)
    if name == "kmeans_cold_start":
        return _cluster_reasons("cold start: cluster", pool.clusters, picks, n_clusters)
    if name == "typiclust":
        return _cluster_reasons("typical item of cluster", pool.clusters, picks, n_clusters)
    if name == "kcenter_greedy":
        return [f"k-center cover, pick {rank + 1}" for rank in range(len(picks))]
    if name == "cluster_margin":
        # the picks' margins only: scoring the whole pool again would double an online update
        top2 = np.sort(np.asarray(pool.probs)[picks], axis=1)[:, -2:]
        margins = top2[:, 1] - top2[:, 0]
        return [
            f"margin {m:.3f}, cluster {int(c) + 1} of {n_clusters}"
            for m, c in zip(margins, _pool_clusters(pool, picks), strict=True)
        ]
    if isinstance(strategy, ExplorationMix):
        base = strategy._base()
        scores = base.scores(pool)
        cut = np.sort(scores[~pool.labeled])[::-1][min(len(picks), pool.n_unlabeled) - 1]
        return [
            _score_reason(base.name, float(scores[i]), pool, int(i), class_names)
            if scores[i] >= cut
            else "exploration: random"
            for i in picks
        ]
    if name == "density_weighted":
        density = information_density(pool.embeddings, pool.labeled)
        scores = strategy.scores(pool)
        return [
            f"{strategy.base} × density: {scores[i]:.3f} (density {density[i]:.2f})" for i in picks
        ]
    if isinstance(strategy, UncertaintyStrategy):
        scores = strategy.scores(pool)
        return [_score_reason(name, float(scores[i]), pool, int(i), class_names) for i in picks]
    return [f"{name}, pick {rank + 1}" for rank in range(len(picks))]


def strategy_scores(name: str, pool: Any) -> np.ndarray:
    from labella.strategies import UncertaintyStrategy, get_strategy

    strategy = get_strategy(name)
    assert isinstance(strategy, UncertaintyStrategy)
    return strategy.scores(pool)


def _score_reason(name: str, score: float, pool: Any, index: int, class_names: list[str]) -> str:
    if name == "margin":
        return f"margin {1.0 - score:.3f}"
    if name == "least_confidence":
        return f"confidence {1.0 - score:.3f}"
    if name == "ratio":
        return f"ratio {score:.3f}"
    if name in ("entropy", "ml_entropy"):
        return f"{'label ' if name == 'ml_entropy' else ''}entropy {score:.3f}"
    if name == "bald":
        return f"BALD {score:.3f}"
    if name == "ml_margin" and pool.probs is not None:
        row = pool.probs[index]
        thresholds = pool.class_thresholds()
        closest = int(np.argmin(np.abs(row - thresholds)))
        label = class_names[closest] if closest < len(class_names) else f"class {closest}"
        return f"{label!r} at {row[closest]:.2f} (threshold {thresholds[closest]:.2f})"
    return f"{name} {score:.3f}"


def _pool_clusters(pool: Any, picks: np.ndarray) -> np.ndarray:
    if pool.clusters is None:
        return np.zeros(len(picks), dtype=np.int64)
    return np.asarray(pool.clusters)[picks]


def _cluster_reasons(
    prefix: str, clusters: np.ndarray | None, picks: np.ndarray, n_clusters: int
) -> list[str]:
    if clusters is None:
        return [f"{prefix.split(':')[0]}, pick {rank + 1}" for rank in range(len(picks))]
    sizes = np.bincount(clusters)
    return [
        f"{prefix} {int(c) + 1} of {n_clusters} ({_items(int(sizes[c]))})" for c in clusters[picks]
    ]


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def farthest_first(embeddings: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Reorder ``picks`` so each next item is the one farthest from those before it.

    Gonzalez, "Clustering to minimize the maximum intercluster distance", TCS 1985. The first
    pick stays first (the strategy's best), and every prefix of the result is spread out.
    """
    if len(picks) <= 2:
        return picks
    points = np.asarray(embeddings[picks], dtype=np.float32)
    sq = np.einsum("ij,ij->i", points, points)
    nearest = np.full(len(picks), np.inf, dtype=np.float32)
    order = np.empty(len(picks), dtype=np.int64)
    taken = np.zeros(len(picks), dtype=bool)
    current = 0
    for step in range(len(picks)):
        order[step] = current
        taken[current] = True
        d2 = sq + sq[current] - 2.0 * (points @ points[current])
        np.minimum(nearest, d2, out=nearest)
        nearest[taken] = -np.inf
        current = int(np.argmax(nearest))
    return picks[order]


# -- ranking -------------------------------------------------------------------------------------


def _choose_strategy(project: Any, has_model: bool, multi_label: bool) -> tuple[Any, bool, str]:
    """The strategy to run, whether this is a cold start, and a note on any substitution."""
    from labella.strategies import get_strategy
    from labella.strategies.detection import available_detection_strategies

    if project.strategy in available_detection_strategies():
        # an object-detection project before its first detector (with one, rank_project hands
        # it to services.detection_ranking): no boxes to score yet
        return get_strategy("kmeans_cold_start"), True, ""
    try:
        strategy = get_strategy(project.strategy, **dict(project.strategy_params or {}))
    except ValueError as exc:
        raise InvalidInput(f"project strategy {project.strategy!r} is not usable: {exc}") from exc
    needs_model = bool(strategy.requires & {"probs", "prob_samples"})
    if needs_model and not has_model:
        return get_strategy("kmeans_cold_start"), True, ""
    mode = strategy.label_mode
    if (mode == "single" and multi_label) or (mode == "multi" and not multi_label):
        fallback = "ml_margin" if multi_label else "margin"
        note = (
            f"strategy {project.strategy!r} does not fit a "
            f"{'multi' if multi_label else 'single'}-label project; ranked with {fallback!r}"
        )
        return get_strategy(fallback), False, note
    return strategy, not has_model, ""


def rank_project(
    db: Database,
    settings: Settings,
    project_id: int,
    *,
    model_version: ModelVersion | None = None,
    head: Any | None = None,
    seed_offset: int = 0,
    predict_queue: bool = False,
) -> RankResult:
    """Compute the queue order with the project's strategy and write ``item.priority``.

    ``model_version`` defaults to the newest; without one the ranking is a cold start. ``head``
    replaces the version's stored head (an online update's, see ``services.online``); with
    ``predict_queue`` (an online update) only the queue's top ``PRELABEL_REFRESH`` places are
    rewritten, and their items' predictions (the prelabels) too, from that head.
    Reproducible: the strategy's randomness is seeded with ``random_seed + version`` (plus
    ``seed_offset``).
    """
    from labella.services.training import load_head
    from labella.strategies import EmptyPoolError, PoolView

    started = time.perf_counter()
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        if model_version is None:
            model_version = repo.latest_model_version(session, project_id)
        from labella.services.finetuning import model_is_stale

        if model_is_stale(project, model_version):
            # its head was fitted on another encoder's vectors (the project switched encoders,
            # services.finetuning) and cannot score these: a cold start until the queued training
            model_version, head = None, None
        class_names = [c.name for c in sorted(project.classes, key=lambda c: c.position)]
    if project.kind == ProjectKind.OBJECT_DETECTION and model_version is not None:
        # a detector predicts boxes, not the class probabilities of a head
        from labella.services.detection_ranking import rank_detection_project

        return rank_detection_project(db, settings, project_id, model_version=model_version)
    version = model_version.version if model_version is not None else 0
    seed = settings.random_seed + version + seed_offset
    rng = np.random.default_rng(seed)
    pool_data = load_pool(db, settings, project_id, project.encoder)
    strategy, cold_start, note = _choose_strategy(
        project, model_version is not None, project.multi_label
    )
    if pool_data.labeled.all():
        write_priorities(db, project_id, np.empty(0, dtype=np.int64), [])
        return RankResult(
            n_items=pool_data.n_items,
            n_ranked=0,
            strategy=strategy.name,
            cold_start=cold_start,
            model_version=model_version.version if model_version else None,
            seconds=time.perf_counter() - started,
            note=note or "nothing left to rank",
        )

    probs = thresholds = prob_samples = None
    if model_version is not None and not cold_start:
        head = head if head is not None else load_head(model_version)
        if "probs" in _needs(strategy) or predict_queue:
            probs = head.predict_proba(pool_data.embeddings)
        if head.multi_label:
            thresholds = np.asarray(head.thresholds_, dtype=np.float32)
        if "prob_samples" in strategy.requires:
            prob_samples = _bootstrap_prob_samples(
                db, settings, project_id, pool_data.embeddings, seed
            )
    clusters = None
    if "clusters" in _needs(strategy) or strategy.name in _CLUSTERED:
        clusters = project_clusters(settings, project_id, pool_data.item_ids, pool_data.embeddings)
    pool = PoolView(
        labeled=pool_data.labeled,
        probs=probs,
        embeddings=pool_data.embeddings,
        prob_samples=prob_samples,
        clusters=clusters,
        multi_label=bool(project.multi_label),
        thresholds=thresholds,
    )
    n_wanted = _batch_size(strategy.name, settings, project.retrain_every, clusters)
    representatives = strategy.name == "kmeans_cold_start"
    try:
        picks = select_queue(strategy, pool, n_wanted, batch=settings.rank_batch, rng=rng)
    except EmptyPoolError:
        picks = np.empty(0, dtype=np.int64)
    if representatives:
        picks = farthest_first(pool_data.embeddings, picks)
    n_clusters = int(clusters.max()) + 1 if clusters is not None and clusters.size else 0
    reasons = _reasons(strategy, pool, picks, class_names=class_names, n_clusters=n_clusters)
    write_priorities(
        db,
        project_id,
        pool_data.item_ids[picks],
        reasons,
        top=PRELABEL_REFRESH if predict_queue else None,
    )
    if predict_queue and probs is not None and model_version is not None and len(picks):
        from labella.services.training import replace_predictions_for

        # the prelabels annotators are about to see; the rest keep the full training's until
        # the queue reaches them (each update refreshes the new top)
        # in item id order, as every prediction writer does: two upserts that lock overlapping
        # rows in different orders deadlock on PostgreSQL (a full training's predictions run
        # in id order while an online update writes)
        top = np.sort(picks[:PRELABEL_REFRESH])
        replace_predictions_for(
            db, project_id, model_version.id, head, pool_data.item_ids[top], probs[top]
        )
    return RankResult(
        n_items=pool_data.n_items,
        n_ranked=len(picks),
        strategy=strategy.name,
        cold_start=cold_start,
        model_version=model_version.version if model_version is not None else None,
        seconds=time.perf_counter() - started,
        note=note,
    )


def select_queue(
    strategy: Any, pool: Any, n: int, *, batch: int, rng: np.random.Generator
) -> np.ndarray:
    """The queue's first ``n`` picks: one call for most strategies, consecutive batches of
    ``batch`` for a batch strategy (cluster-margin).

    Cluster-margin spreads *one batch* over the clusters; asked for the whole queue at once it
    would spread thousands of picks over a hundred clusters and lose the uncertainty that makes
    it work. Annotators label the queue from the top, a batch at a time, so the queue is built
    the way the strategy is meant to run: batch after batch, each from the candidates left. Every
    batch draws from the ``candidate_factor × n`` least-margin items, so the batches run on that
    sub-pool alone and cost one margin pass in all.
    """
    if strategy.name != "cluster_margin" or n <= batch:
        return np.asarray(strategy.select(pool, n, rng=rng), dtype=np.int64)
    from labella.strategies import PoolView
    from labella.strategies._arrays import select_top_scores

    factor = float(getattr(strategy, "candidate_factor", 1.0))
    n_candidates = min(pool.n_unlabeled, int(np.ceil(factor * n)) + batch)
    candidates = select_top_scores(
        strategy_scores("margin", pool), pool.labeled, n_candidates, rng=rng, source="probs"
    )
    taken = np.zeros(len(candidates), dtype=bool)
    sub = PoolView(
        labeled=taken,
        probs=pool.probs[candidates],
        clusters=np.asarray(pool.clusters)[candidates],
    )
    picks: list[np.ndarray] = []
    remaining = min(n, len(candidates))
    while remaining > 0:
        chosen = strategy.select(sub, min(batch, remaining), rng=rng)
        taken[chosen] = True
        picks.append(chosen)
        remaining -= len(chosen)
    return candidates[np.concatenate(picks)]


def _batch_size(
    name: str, settings: Settings, retrain_every: int, clusters: np.ndarray | None
) -> int:
    """How many items to rank: ``settings.queue_size``, less for the per-pick strategies.

    Greedy k-center makes one pass over the pool per pick, so it ranks a few retraining rounds'
    worth of items (the next training re-ranks anyway); the cold start ranks one representative
    per cluster.
    """
    if name == "kmeans_cold_start":
        n_clusters = int(np.unique(clusters).size) if clusters is not None else COLD_START_BATCH
        return min(settings.queue_size, COLD_START_BATCH, n_clusters)
    if name == "kcenter_greedy":
        return min(settings.queue_size, max(COLD_START_BATCH, 4 * retrain_every))
    return settings.queue_size


def _needs(strategy: Any) -> set[str]:
    """Inputs a strategy reads: its declared requirements plus those of a composed base."""
    needs = set(strategy.requires)
    base = getattr(strategy, "base", None)
    if isinstance(base, str):
        from labella.strategies import strategy_class

        needs |= set(strategy_class(base).requires)
    return needs


def write_priorities(
    db: Database,
    project_id: int,
    item_ids: np.ndarray,
    reasons: list[str],
    *,
    top: int | None = None,
) -> None:
    """Write the new ranking in one transaction: the first item gets the highest priority
    (``len(item_ids)``), the last 1.

    Without ``top`` every other item's priority is cleared. With ``top`` (an online update) only
    the queue's first ``top`` places are rewritten: afterwards they hold exactly the new
    ranking's first ``top`` items; an item that held one of them and left is moved to its new
    place further down, or out of the queue; the places below keep their items (the last full
    ranking's, which the next training rewrites). Annotators label far fewer than ``top`` items
    between two trainings, so they only ever reach the fresh part, and an update writes about
    ``2 * top`` rows instead of twice the queue: the queue's membership changes almost entirely
    from one update to the next (1,800 of 2,000 items at 100,000), and each changed row costs a
    new row version plus an entry in every index on PostgreSQL.
    """
    n = len(item_ids)
    ids = [int(item_id) for item_id in item_ids]
    priorities: list[float | None] = [float(n - rank) for rank in range(n)]
    short: list[str | None] = [reason[:200] for reason in reasons]
    with db.transaction() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        if postgres:
            # One ranking writer per project at a time: a training's ranking (main lane) and an
            # online update's (fast lane) would otherwise lock the same rows in different
            # orders and deadlock.
            session.execute(_PG_RANK_LOCK, {"project_id": project_id})
        if top is not None and top < n:
            floor = float(n - top)
            rank_of = {item_id: rank for rank, item_id in enumerate(ids)}
            fresh = set(ids[:top])
            rows = list(zip(ids[:top], priorities[:top], short[:top], strict=True))
            for item_id in session.scalars(_HOLDERS, {"project_id": project_id, "floor": floor}):
                if item_id in fresh:
                    continue
                rank = rank_of.get(int(item_id))
                rows.append(
                    (int(item_id), None, None)
                    if rank is None
                    else (int(item_id), priorities[rank], short[rank])
                )
            _set_priorities(session, project_id, rows, postgres=postgres)
            return
        if postgres:
            # the old queue's rows that leave it; the others are overwritten just below
            session.execute(_PG_CLEAR, {"project_id": project_id, "ids": ids})
        else:
            session.execute(
                update(_ITEMS)
                .where(_ITEMS.c.project_id == project_id, _ITEMS.c.priority.is_not(None))
                .values(priority=None, priority_reason=None)
            )
        _set_priorities(
            session, project_id, list(zip(ids, priorities, short, strict=True)), postgres=postgres
        )


def _set_priorities(
    session: Session,
    project_id: int,
    rows: list[tuple[int, float | None, str | None]],
    *,
    postgres: bool,
) -> None:
    """Set (item id, priority, reason) rows; a None priority takes the item out of the queue."""
    if not rows:
        return
    if postgres:
        # One statement whatever the number of rows, in id order (two writers locking rows in
        # different orders deadlock), skipping the rows that do not change: row by row, 2,000
        # UPDATEs took 0.2-0.4 s at 100,000 items and held the queue's row locks, which the
        # next-item walk skips, all that time.
        rows = sorted(rows)
        session.execute(
            _PG_SET,
            {
                "project_id": project_id,
                "ids": [row[0] for row in rows],
                "priorities": [row[1] for row in rows],
                "reasons": [row[2] for row in rows],
            },
        )
        return
    # SQLite: executemany of one prepared UPDATE is fast in-process
    params = [
        {"item_id": item_id, "new_priority": priority, "new_reason": reason}
        for item_id, priority, reason in rows
    ]
    for start in range(0, len(params), _WRITE_BATCH):
        session.execute(_SQLITE_SET, params[start : start + _WRITE_BATCH])


# The items that hold the queue's places above ``floor``: one range of ix_item_queue per status
# (every ItemStatus is listed, so none is missed), where "project_id and priority" alone would
# walk the whole project's index.
_HOLDERS = select(Item.id).where(
    Item.project_id == bindparam("project_id"),
    Item.status.in_([status.value for status in ItemStatus]),
    Item.priority > bindparam("floor"),
)
_SQLITE_SET = (
    update(_ITEMS)
    .where(_ITEMS.c.id == bindparam("item_id"))
    .values(priority=bindparam("new_priority"), priority_reason=bindparam("new_reason"))
)
_PG_RANK_LOCK = text("SELECT pg_advisory_xact_lock(:namespace, :project_id)").bindparams(
    namespace=0x4C52  # "LR": labella ranking; the second key is the project
)
# PostgreSQL: the new ranking travels as arrays. _PG_CLEAR clears the old queue's items that
# are not in the new one, found through ix_item_queue as _HOLDERS are (the table else: 50 ms).
# _PG_SET writes rows only where the priority or reason differs (IS DISTINCT FROM); its
# "item.id = ANY(ids)" makes the planner look the rows up by primary key (joined on the arrays
# alone it hashed the whole table: 0.1 s at 100,000 items).
_PG_CLEAR = text(
    "UPDATE item SET priority = NULL, priority_reason = NULL "
    "WHERE project_id = :project_id AND status = ANY(CAST(:statuses AS varchar[])) "
    "AND priority IS NOT NULL AND id <> ALL(CAST(:ids AS integer[]))"
).bindparams(statuses=[status.value for status in ItemStatus])
_PG_SET = text(
    "UPDATE item SET priority = new.priority, priority_reason = new.reason "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:priorities AS double precision[]), "
    "CAST(:reasons AS varchar[])) AS new(id, priority, reason) "
    "WHERE item.id = new.id AND item.id = ANY(CAST(:ids AS integer[])) "
    "AND item.project_id = :project_id "
    "AND (item.priority IS DISTINCT FROM new.priority "
    "OR item.priority_reason IS DISTINCT FROM new.reason)"
)


@executor(RANK_JOB)
def run_rank_job(context: JobContext) -> dict[str, Any]:
    if context.project_id is None:
        raise ValueError("a rank job needs a project")
    note = resume_note(context)
    context.progress(0, 1, f"{note}ranking the queue", force=True)
    result = rank_project(context.db, context.settings, context.project_id)
    kind = "cold-start ranking" if result.cold_start else f"ranking with {result.strategy!r}"
    message = f"{note}{kind}: {result.n_ranked} of {result.n_items} items queued"
    if result.note:
        message += f" ({result.note})"
    return {**result.as_dict(), "message": message}
