"""Ranking for object-detection projects: the least confident images first, spread over the data.

After a detector version has written its predictions (``prediction.boxes``, one row per image),
:func:`rank_detection_project` scores every unlabeled image from its boxes' scores with a detection
strategy (``strategies.detection``: per-box uncertainty aggregated over the image, plus a term for
images with no confident box) and spreads the queue over the project's k-means clusters of image
embeddings, the same clusters the cold-start ranking fitted (``services.ranking``). The top
``settings.queue_size`` picks get a descending ``item.priority`` and a ``priority_reason`` saying
which boxes made the image doubtful, so ``/next`` serves them first.

It degrades instead of failing: images without an embedding yet go into one extra group, and a
project with no embedded image is ranked by box uncertainty alone. Images without a prediction of
this version (imported since the training) are left unranked; ``next_batch`` serves them after the
ranked ones in their random order.

The detector's training job calls :func:`rank_detection_project` when it has written its
predictions; ``ranking.rank_project`` (the ``rank`` job, re-encodes) hands detection projects with a
model here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select

from labella.config import Settings
from labella.errors import InvalidInput
from labella.services.ranking import RankResult, load_pool, project_clusters, write_priorities
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import Item, ItemStatus, ModelVersion, Prediction, ProjectKind

DEFAULT_DETECTION_STRATEGY = "detection_uncertainty"


@dataclass
class _Images:
    """The images a detector version predicted, with their boxes as the pool wants them."""

    item_ids: np.ndarray
    labeled: np.ndarray
    box_scores: np.ndarray
    offsets: np.ndarray
    boxes: list[list[dict[str, Any]]]
    n_items: int
    embedded_any: bool


def rank_detection_project(
    db: Database,
    settings: Settings,
    project_id: int,
    *,
    model_version: ModelVersion | None = None,
) -> RankResult:
    """Rank the project's unlabeled images by their newest detector predictions and write
    ``item.priority`` / ``priority_reason`` (one transaction; the old ranking is cleared).

    Without a detector version yet this is the cold-start ranking of ``services.ranking``.
    Reproducible: the randomness is seeded with ``settings.random_seed + version``.
    """
    from labella.services import ranking
    from labella.strategies import EmptyPoolError
    from labella.strategies.detection import DetectionPool

    started = time.perf_counter()
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        if project.kind != ProjectKind.OBJECT_DETECTION:
            raise InvalidInput(
                f"project {project.name!r} is a {project.kind.replace('_', ' ')} project; "
                "detection ranking is for object-detection projects"
            )
        if model_version is None:
            model_version = repo.latest_model_version(session, project_id)
        class_names = {c.id: c.name for c in project.classes}
        encoder = project.encoder
        strategy_name, strategy_params = project.strategy, dict(project.strategy_params or {})
    if model_version is None:
        return ranking.rank_project(db, settings, project_id)
    strategy = _strategy(strategy_name, strategy_params)
    rng = np.random.default_rng(settings.random_seed + model_version.version)
    images = _load_images(db, project_id, model_version.id)
    clusters, note = _image_clusters(db, settings, project_id, encoder, images)
    pool = DetectionPool(
        labeled=images.labeled,
        box_scores=images.box_scores,
        offsets=images.offsets,
        clusters=clusters,
    )
    try:
        picks = _select_queue(
            strategy, pool, settings.queue_size, batch=settings.rank_batch, rng=rng
        )
    except EmptyPoolError:
        picks = np.empty(0, dtype=np.int64)
        note = note or "nothing left to rank"
    picks = _best_first_per_batch(picks, strategy.scores(pool), settings.rank_batch)
    n_clusters = int(clusters.max()) + 1 if clusters is not None and clusters.size else 0
    reasons = [
        _reason(strategy, images.boxes[i], class_names, clusters, int(i), n_clusters) for i in picks
    ]
    write_priorities(db, project_id, images.item_ids[picks], reasons)
    return RankResult(
        n_items=images.n_items,
        n_ranked=len(picks),
        strategy=strategy.name,
        cold_start=False,
        model_version=model_version.version,
        seconds=time.perf_counter() - started,
        note=note,
    )


def _strategy(name: str, params: dict[str, Any]) -> Any:
    """The project's strategy when it names a detection strategy, else the default one (a
    detection project keeps the classification default in ``project.strategy``)."""
    from labella.strategies.detection import (
        available_detection_strategies,
        get_detection_strategy,
    )

    if name not in available_detection_strategies():
        return get_detection_strategy(DEFAULT_DETECTION_STRATEGY)
    try:
        return get_detection_strategy(name, **params)
    except ValueError as exc:
        raise InvalidInput(f"project strategy {name!r} is not usable: {exc}") from exc


def _load_images(db: Database, project_id: int, model_version_id: int) -> _Images:
    """Every image of the project with this version's prediction, in id order."""
    with db.reader() as session:
        n_items = int(
            session.scalar(select(func.count()).where(Item.project_id == project_id)) or 0
        )
        rows = session.execute(
            select(Item.id, Item.status, Item.embedded, Prediction.boxes)
            .join(
                Prediction,
                and_(
                    Prediction.item_id == Item.id,
                    Prediction.model_version_id == model_version_id,
                ),
            )
            .where(Item.project_id == project_id)
            .order_by(Item.id)
        ).all()
    boxes = [_valid_boxes(row.boxes) for row in rows]
    counts = np.fromiter((len(b) for b in boxes), dtype=np.int64, count=len(boxes))
    scores = np.fromiter(
        (box["score"] for image in boxes for box in image),
        dtype=np.float32,
        count=int(counts.sum()),
    )
    return _Images(
        item_ids=np.fromiter((row.id for row in rows), dtype=np.int64, count=len(rows)),
        labeled=np.fromiter(
            (row.status != ItemStatus.UNLABELED.value for row in rows), dtype=bool, count=len(rows)
        ),
        box_scores=scores,
        offsets=np.concatenate(([0], np.cumsum(counts))).astype(np.int64),
        boxes=boxes,
        n_items=n_items,
        embedded_any=any(row.embedded for row in rows),
    )


def _valid_boxes(boxes: Any) -> list[dict[str, Any]]:
    """The boxes of a prediction whose score is a number in [0, 1]; a classification prediction
    (``boxes`` NULL) or a malformed entry contributes nothing rather than stopping the ranking."""
    if not isinstance(boxes, list):
        return []
    kept = []
    for box in boxes:
        score = box.get("score") if isinstance(box, dict) else None
        if not isinstance(score, int | float) or isinstance(score, bool):
            continue
        if math.isfinite(score) and 0.0 <= score <= 1.0:
            kept.append(box)
    return kept


def _image_clusters(
    db: Database, settings: Settings, project_id: int, encoder: str, images: _Images
) -> tuple[np.ndarray | None, str]:
    """Cluster ids of the pool's images from the project's k-means over image embeddings; images
    without an embedding share one extra cluster. None (with a note) when nothing is embedded."""
    if not images.embedded_any:
        return None, "no image embeddings yet: ranked by box uncertainty alone"
    embedded = load_pool(db, settings, project_id, encoder)
    if embedded.item_ids.size == 0:
        return None, "no image embeddings yet: ranked by box uncertainty alone"
    fitted = project_clusters(settings, project_id, embedded.item_ids, embedded.embeddings)
    position = np.searchsorted(embedded.item_ids, images.item_ids)
    position = np.minimum(position, embedded.item_ids.size - 1)
    found = embedded.item_ids[position] == images.item_ids
    clusters = np.full(images.item_ids.size, int(fitted.max()) + 1, dtype=np.int64)
    clusters[found] = fitted[position[found]]
    missing = int((~found).sum())
    note = f"{missing} images without an embedding ranked as one group" if missing else ""
    return clusters, note


def _select_queue(
    strategy: Any, pool: Any, n: int, *, batch: int, rng: np.random.Generator
) -> np.ndarray:
    """The queue's first ``n`` picks, built batch after batch of ``batch`` as annotators take
    them (see ``ranking.select_queue``: spreading the whole queue over the clusters at once would
    reach far down the uncertainty order). Every batch draws from the ``candidate_factor × n``
    most informative images, so the scores are computed once."""
    from labella.strategies._arrays import select_top_scores
    from labella.strategies.detection import DetectionPool

    factor = getattr(strategy, "candidate_factor", None)
    if factor is None or pool.clusters is None or n <= batch:
        return np.asarray(strategy.select(pool, n, rng=rng), dtype=np.int64)
    n_unlabeled = pool.n_unlabeled
    if n_unlabeled == 0:
        return np.asarray(strategy.select(pool, n, rng=rng), dtype=np.int64)
    n_candidates = min(n_unlabeled, int(np.ceil(float(factor) * n)) + batch)
    candidates = select_top_scores(
        strategy.scores(pool), pool.labeled.copy(), n_candidates, rng=rng, source="box scores"
    )
    sub = pool.subset(candidates)
    taken = np.zeros(len(candidates), dtype=bool)
    sub = DetectionPool(
        labeled=taken, box_scores=sub.box_scores, offsets=sub.offsets, clusters=sub.clusters
    )
    picks: list[np.ndarray] = []
    remaining = min(n, len(candidates))
    while remaining > 0:
        chosen = strategy.select(sub, min(batch, remaining), rng=rng)
        taken[chosen] = True
        picks.append(chosen)
        remaining -= len(chosen)
    return candidates[np.concatenate(picks)]


def _best_first_per_batch(picks: np.ndarray, scores: np.ndarray, batch: int) -> np.ndarray:
    """Within each consecutive batch of the queue, the most informative image first.

    The diversity step decides *which* images make a batch (round-robin over clusters visits
    small clusters first); annotators take the queue a batch at a time, so inside one the least
    confident images should still come first.
    """
    out = picks.copy()
    for start in range(0, len(picks), batch):
        chunk = picks[start : start + batch]
        out[start : start + batch] = chunk[np.argsort(-scores[chunk], kind="stable")]
    return out


def _reason(
    strategy: Any,
    boxes: list[dict[str, Any]],
    class_names: dict[int, str],
    clusters: np.ndarray | None,
    index: int,
    n_clusters: int,
) -> str:
    """Why an image is queued, e.g. "uncertain boxes: least sure cell 0.46 of 3 boxes; cluster 4
    of 40"."""
    from labella.strategies.detection import DEFAULT_FLOOR, box_uncertainty

    if strategy.name == "detection_random":
        text = "random"
    else:
        floor = float(getattr(strategy, "floor", DEFAULT_FLOOR))
        confident = float(getattr(strategy, "confident", 0.5))
        kept = [b for b in boxes if float(b["score"]) >= floor]
        if not kept:
            text = f"uncertain boxes: none found (no box scores {floor:.2f} or more)"
        else:
            scores = np.asarray([float(b["score"]) for b in kept])
            doubt = box_uncertainty(scores, measure=getattr(strategy, "measure", "entropy"))
            worst = kept[int(np.argmax(doubt))]
            name = class_names.get(int(worst.get("class_id", -1)), "unknown class")
            plural = "box" if len(kept) == 1 else "boxes"
            text = (
                f"uncertain boxes: least sure {name} {float(worst['score']):.2f} "
                f"of {len(kept)} {plural}"
            )
            if not (scores >= confident).any():
                text += f", none confident (>= {confident:.2f})"
    if clusters is not None and n_clusters:
        text += f"; cluster {int(clusters[index]) + 1} of {n_clusters}"
    return text
