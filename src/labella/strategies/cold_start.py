"""Model-free strategies for the first batches: k-means medoids and TypiClust."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from labella.strategies._arrays import chunk_rows, row_chunks
from labella.strategies.base import MissingInputError, PoolView, QueryStrategy
from labella.strategies.clustering import kmeans
from labella.strategies.registry import register

_SEED_BOUND = 2**31 - 1


def _embeddings(pool: PoolView, owner: str) -> np.ndarray:
    if pool.embeddings is None:
        raise MissingInputError(f"{owner} needs 'embeddings'")
    return pool.embeddings


def cluster_centroids(
    embeddings: np.ndarray, members: np.ndarray, labels: np.ndarray, n_clusters: int
) -> np.ndarray:
    """Mean embedding of ``members`` per cluster id in ``labels`` (float32 ``(n_clusters, d)``).

    Accumulated chunk by chunk so only one chunk of rows is ever gathered at a time.
    """
    dim = embeddings.shape[1]
    sums = np.zeros((n_clusters, dim), dtype=np.float64)
    for rows in row_chunks(members.size, dim):
        np.add.at(sums, labels[rows], np.asarray(embeddings[members[rows]], dtype=np.float32))
    counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    return (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)


def nearest_to_centroids(
    embeddings: np.ndarray, members: np.ndarray, labels: np.ndarray, centroids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each non-empty cluster, the member closest to its centroid.

    Returns (cluster ids, chosen item indices), both ascending by cluster id.
    """
    dist = np.empty(members.size, dtype=np.float32)
    for rows in row_chunks(members.size, embeddings.shape[1]):
        diff = np.asarray(embeddings[members[rows]], dtype=np.float32) - centroids[labels[rows]]
        dist[rows] = np.einsum("ij,ij->i", diff, diff)
    order = np.lexsort((members, dist, labels))
    sorted_labels = labels[order]
    first = np.concatenate(([True], sorted_labels[1:] != sorted_labels[:-1]))
    return sorted_labels[first], members[order[first]]


@register
class KMeansColdStart(QueryStrategy):
    """A diverse first batch with no model: the item nearest each k-means centroid.

    Runs k-means with k = n over the unlabeled embeddings and returns, for each cluster, the
    member closest to its centroid, largest cluster first (Kang, Ryu & Kwon, "Using
    cluster-based sampling to select initial training set for active learning in text
    classification", PAKDD 2004; the k-means baseline of Hacohen et al. 2022). If
    ``pool.clusters`` already has at least ``n`` clusters among the unlabeled items, those are
    reused (the ``n`` largest) instead of clustering again. Duplicate points can leave k-means
    with fewer than ``n`` clusters; the open slots are filled with random unlabeled items.
    """

    name = "kmeans_cold_start"
    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})

    def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
        embeddings = _embeddings(pool, self.name)
        members = pool.unlabeled_indices()
        labels, centroids = self._clusters(pool, embeddings, members, n, rng)
        ids, picks = nearest_to_centroids(embeddings, members, labels, centroids)
        sizes = np.bincount(labels, minlength=centroids.shape[0])[ids]
        picks = picks[np.lexsort((ids, -sizes))][:n]
        if picks.size < n:
            rest = np.setdiff1d(members, picks, assume_unique=True)
            picks = np.concatenate([picks, rng.choice(rest, size=n - picks.size, replace=False)])
        return picks

    @staticmethod
    def _clusters(
        pool: PoolView,
        embeddings: np.ndarray,
        members: np.ndarray,
        n: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        if pool.clusters is not None:
            ids, labels = np.unique(pool.clusters[members], return_inverse=True)
            if ids.size >= n:
                labels = labels.astype(np.int64)
                return labels, cluster_centroids(embeddings, members, labels, ids.size)
        seed = int(rng.integers(_SEED_BOUND))
        data = np.asarray(embeddings[members], dtype=np.float32)
        labels32, centroids = kmeans(data, n, random_state=seed)
        return labels32.astype(np.int64), centroids


def typicality(points: np.ndarray, k_neighbors: int) -> np.ndarray:
    """Inverse mean Euclidean distance of each point to its ``k`` nearest other points.

    Hacohen, Dekel & Weinshall, "Active learning on a budget: opposite strategies suit high and
    low budgets", ICML 2022, Eq. 2. ``k`` is capped at ``len(points) - 1``; a lone point gets 1.
    """
    points = np.asarray(points, dtype=np.float32)
    m = points.shape[0]
    if m <= 1:
        return np.ones(m, dtype=np.float32)
    k = max(1, min(int(k_neighbors), m - 1))
    sq = np.einsum("ij,ij->i", points, points)
    out = np.empty(m, dtype=np.float32)
    step = chunk_rows(m)
    for start in range(0, m, step):
        stop = min(start + step, m)
        d2 = sq[start:stop, None] + sq[None, :] - 2.0 * (points[start:stop] @ points.T)
        d2[np.arange(stop - start), np.arange(start, stop)] = np.inf
        nearest = np.partition(d2, k - 1, axis=1)[:, :k]
        mean_dist = np.sqrt(np.maximum(nearest, 0.0)).mean(axis=1)
        out[start:stop] = 1.0 / (mean_dist + 1e-5)
    return out


@register
class TypiClust(QueryStrategy):
    """TypiClust: the most typical item of each uncovered cluster, largest clusters first.

    Hacohen, Dekel & Weinshall, ICML 2022. Clusters come from ``pool.clusters`` when given,
    else k-means with ``min(n_labeled + n, max_clusters)`` clusters over all embeddings (the
    paper's choice, including its cap of 500). Clusters are visited by how few labeled items
    they hold, then by size (largest first), cycling if the batch is larger than the number of
    clusters; from each the most typical remaining member is taken, where typicality is the
    inverse mean distance to its ``k_neighbors`` nearest neighbours within the cluster.

    Hyperparameters:
        k_neighbors: K of the typicality estimate (paper: 20).
        max_clusters: upper bound on the number of k-means clusters when none are given.
        max_cluster_sample: clusters with more unlabeled members are subsampled (by ``rng``) to
            this many before the O(m²) typicality computation, which keeps a query over a
            million items to seconds; the estimate stays a k-NN density on a uniform sample.
    """

    name = "typiclust"
    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})

    def __init__(
        self, *, k_neighbors: int = 20, max_clusters: int = 500, max_cluster_sample: int = 1000
    ) -> None:
        for label, value in (
            ("k_neighbors", k_neighbors),
            ("max_clusters", max_clusters),
            ("max_cluster_sample", max_cluster_sample),
        ):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"typiclust: {label} must be a positive integer, got {value!r}")
        self.k_neighbors = k_neighbors
        self.max_clusters = max_clusters
        self.max_cluster_sample = max_cluster_sample

    def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
        embeddings = _embeddings(pool, self.name)
        labels = self._cluster_labels(pool, embeddings, n, rng)
        n_ids = int(labels.max()) + 1
        sizes = np.bincount(labels, minlength=n_ids)
        covered = np.bincount(labels[pool.labeled], minlength=n_ids)
        unlabeled = pool.unlabeled_indices()
        unlabeled_labels = labels[unlabeled]
        available = np.bincount(unlabeled_labels, minlength=n_ids)
        ids = np.flatnonzero(available)
        visit = ids[np.lexsort((ids, -sizes[ids], covered[ids]))]
        by_cluster = unlabeled[np.argsort(unlabeled_labels, kind="stable")]
        bounds = np.concatenate(([0], np.cumsum(available)))
        remaining = {int(c): by_cluster[bounds[c] : bounds[c + 1]] for c in visit}
        queued: dict[int, list[int]] = {}
        picks: list[int] = []
        while len(picks) < n:
            for cluster in visit.tolist():
                if len(picks) == n:
                    break
                if remaining[cluster].size == 0:
                    continue
                if not queued.get(cluster):
                    queued[cluster] = self._rank_members(embeddings, remaining[cluster], rng)
                item = queued[cluster].pop(0)
                picks.append(item)
                remaining[cluster] = remaining[cluster][remaining[cluster] != item]
        return np.asarray(picks, dtype=np.int64)

    def _cluster_labels(
        self, pool: PoolView, embeddings: np.ndarray, n: int, rng: np.random.Generator
    ) -> np.ndarray:
        if pool.clusters is not None:
            return np.asarray(pool.clusters, dtype=np.int64)
        n_labeled = pool.n_items - pool.n_unlabeled
        k = min(n_labeled + n, int(self.max_clusters), pool.n_items)
        labels, _ = kmeans(embeddings, k, random_state=int(rng.integers(_SEED_BOUND)))
        return labels.astype(np.int64)

    def _rank_members(
        self, embeddings: np.ndarray, members: np.ndarray, rng: np.random.Generator
    ) -> list[int]:
        """Members (a uniform sample of at most ``max_cluster_sample``), most typical first."""
        if members.size > self.max_cluster_sample:
            members = np.sort(rng.choice(members, size=int(self.max_cluster_sample), replace=False))
        scores = typicality(np.asarray(embeddings[members], dtype=np.float32), self.k_neighbors)
        return [int(i) for i in members[np.argsort(-scores, kind="stable")]]
