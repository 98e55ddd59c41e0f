"""K-means over embeddings: once per project for ``PoolView.clusters``, and per query for the
cold-start strategies."""

from __future__ import annotations

import numpy as np

SMALL_POOL = 10_000
"""Pools up to this size use full-batch k-means (Lloyd); larger ones mini-batch k-means."""


def kmeans(
    embeddings: np.ndarray, n_clusters: int, *, random_state: int, n_threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``embeddings``; return (int32 assignments, float32 centroids).

    Full-batch k-means++ for small pools; mini-batch k-means (Sculley, "Web-scale k-means
    clustering", WWW 2010) above :data:`SMALL_POOL` rows. ``n_threads`` caps the BLAS/OpenMP
    threads (None: the libraries' default, every core).
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    data = np.asarray(embeddings, dtype=np.float32)
    n_clusters = min(int(n_clusters), data.shape[0])
    model: KMeans | MiniBatchKMeans
    if data.shape[0] <= SMALL_POOL:
        model = KMeans(n_clusters=n_clusters, n_init=1, random_state=random_state)
    else:
        model = MiniBatchKMeans(
            n_clusters=n_clusters,
            batch_size=4096,
            n_init=1,
            random_state=random_state,
        )
    with threadpool_limits(limits=n_threads):
        labels = model.fit_predict(data)
    return labels.astype(np.int32), model.cluster_centers_.astype(np.float32)


def fit_clusters(
    embeddings: np.ndarray,
    n_clusters: int,
    *,
    random_state: int,
    n_threads: int | None = None,
) -> np.ndarray:
    """Cluster ids (int32, ``(n_items,)``) for ``PoolView.clusters``, fitted once per project.

    Uses mini-batch k-means (Sculley 2010) for pools over :data:`SMALL_POOL` items and k-means++
    below it. ``n_clusters`` larger than the number of items is reduced to it, so small projects
    need no special case. ``n_threads`` caps the threads k-means may use: a background job on a
    busy machine should pass 1, since OpenMP threads competing for cores slow down many-fold.
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(
            f"embeddings must be a non-empty 2-D array (n_items, dim), got shape {embeddings.shape}"
        )
    if isinstance(n_clusters, bool) or int(n_clusters) != n_clusters or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive integer, got {n_clusters!r}")
    if n_threads is not None and (isinstance(n_threads, bool) or n_threads < 1):
        raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
    labels, _ = kmeans(embeddings, int(n_clusters), random_state=random_state, n_threads=n_threads)
    return labels
