"""Core-set selection by greedy k-center over the embeddings."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from labella.strategies._arrays import row_chunks, row_sq_norms
from labella.strategies.base import MissingInputError, PoolView, QueryStrategy
from labella.strategies.registry import register

_CENTER_BLOCK = 1024
"""Labeled centers compared at once when seeding the distances (rows × 1024 floats)."""


def min_sq_distances(
    embeddings: np.ndarray, sq_norms: np.ndarray, centers: np.ndarray
) -> np.ndarray:
    """Squared Euclidean distance from every row to its nearest row in ``centers`` (float32).

    Blocked over rows and centers, so memory stays bounded for any number of centers.
    """
    n_items, dim = embeddings.shape
    out = np.full(n_items, np.inf, dtype=np.float32)
    for start in range(0, centers.shape[0], _CENTER_BLOCK):
        block = np.asarray(embeddings[centers[start : start + _CENTER_BLOCK]], dtype=np.float32)
        block_sq = sq_norms[centers[start : start + _CENTER_BLOCK]]
        for rows in row_chunks(n_items, max(dim, block.shape[0])):
            chunk = np.asarray(embeddings[rows], dtype=np.float32)
            d2 = sq_norms[rows, None] + block_sq[None, :] - 2.0 * (chunk @ block.T)
            np.minimum(out[rows], d2.min(axis=1), out=out[rows])
    np.maximum(out, 0.0, out=out)
    return out


def kcenter_greedy_indices(
    embeddings: np.ndarray,
    labeled: np.ndarray,
    n: int,
    *,
    rng: np.random.Generator,
) -> np.ndarray:
    """Greedy 2-approximation of the k-center problem (Sener & Savarese 2018, Alg. 1).

    Repeatedly picks the unlabeled item farthest from every labeled or already picked item;
    after each pick the distance-to-nearest-center array is updated with one chunked
    matrix-vector product, so a batch costs O(n·d·(n_labeled + n)) time and O(n) memory.
    With nothing labeled the first center is drawn by ``rng``.
    """
    n_items = embeddings.shape[0]
    sq_norms = row_sq_norms(embeddings)
    if not np.isfinite(sq_norms).all():
        raise ValueError("embeddings contain NaN or infinite values")
    labeled_idx = np.flatnonzero(labeled)
    if labeled_idx.size:
        nearest = min_sq_distances(embeddings, sq_norms, labeled_idx)
    else:
        nearest = np.full(n_items, np.inf, dtype=np.float32)
    nearest[labeled] = -np.inf
    picked = np.empty(n, dtype=np.int64)
    for step in range(n):
        if labeled_idx.size == 0 and step == 0:
            center = int(rng.choice(np.flatnonzero(~labeled)))
        else:
            center = int(np.argmax(nearest))
        picked[step] = center
        _update_nearest(embeddings, sq_norms, center, nearest)
        nearest[center] = -np.inf
    return picked


def _update_nearest(
    embeddings: np.ndarray, sq_norms: np.ndarray, center: int, nearest: np.ndarray
) -> None:
    vector = np.asarray(embeddings[center], dtype=np.float32)
    center_sq = sq_norms[center]
    for rows in row_chunks(embeddings.shape[0], embeddings.shape[1]):
        chunk = np.asarray(embeddings[rows], dtype=np.float32)
        d2 = sq_norms[rows] + center_sq - 2.0 * (chunk @ vector)
        np.minimum(nearest[rows], d2, out=nearest[rows])


@register
class KCenterGreedy(QueryStrategy):
    """Core-set active learning: greedy k-center cover of the embedding space.

    Sener & Savarese, "Active learning for convolutional neural networks: a core-set approach",
    ICLR 2018. Picks the item farthest from all labeled (and already picked) items, repeatedly,
    so the batch covers the pool; outliers come first. Distances are Euclidean in float32.
    """

    name = "kcenter_greedy"
    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})

    def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
        if pool.embeddings is None:
            raise MissingInputError("kcenter_greedy needs 'embeddings'")
        return kcenter_greedy_indices(pool.embeddings, pool.labeled, n, rng=rng)
