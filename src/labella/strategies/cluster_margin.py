"""Cluster-Margin: margin candidates spread over precomputed clusters."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from labella.strategies._arrays import select_top_scores
from labella.strategies.base import LabelMode, MissingInputError, PoolView, QueryStrategy
from labella.strategies.registry import register
from labella.strategies.uncertainty import margin_scores, required_probs


def round_robin_by_cluster(candidates: np.ndarray, clusters: np.ndarray, n: int) -> np.ndarray:
    """Interleave ``candidates`` (best first) over their clusters, smallest cluster first.

    Round ``r`` takes the ``r``-th best candidate of every cluster that still has one, clusters
    visited by increasing candidate count (ties by cluster id), until ``n`` are taken.
    """
    cluster_of = clusters[candidates]
    ids, group, sizes = np.unique(cluster_of, return_inverse=True, return_counts=True)
    visit_rank = np.empty(ids.size, dtype=np.int64)
    visit_rank[np.lexsort((ids, sizes))] = np.arange(ids.size)
    # rank of each candidate within its cluster; a stable sort keeps the best-first order
    by_group = np.argsort(group, kind="stable")
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    within = np.empty(candidates.size, dtype=np.int64)
    within[by_group] = np.arange(candidates.size) - np.repeat(starts, sizes)
    order = np.lexsort((visit_rank[group], within))
    return candidates[order[:n]]


@register
class ClusterMargin(QueryStrategy):
    """Cluster-Margin batch selection (Citovsky et al., "Batch active learning at scale",
    NeurIPS 2021).

    Takes the ``candidate_factor × n`` unlabeled items with the smallest margin, groups them by
    ``pool.clusters`` (fitted once per project with :func:`~labella.strategies.fit_clusters`),
    then fills the batch round-robin over those clusters, smallest cluster first and the most
    uncertain candidate first within each, so a batch never piles up near-duplicates from one
    region. Cost per query: one margin pass plus O(M log M) for M candidates.

    Hyperparameters:
        candidate_factor: candidates per batch slot (the paper's k_m / k_t), >= 1. The default,
            2, is for the small batches of interactive labeling (20 or so): the paper's ~10 suits
            batches of thousands, and at batch 20 it loses to plain margin because the
            candidates reach far down the uncertainty order (benchmarks/RESULTS.md).
    """

    name = "cluster_margin"
    requires: ClassVar[frozenset[str]] = frozenset({"probs", "clusters"})
    _label_mode: ClassVar[LabelMode] = "single"

    def __init__(self, *, candidate_factor: float = 2.0) -> None:
        if not np.isfinite(candidate_factor) or candidate_factor < 1:
            raise ValueError(
                f"cluster_margin: candidate_factor must be >= 1, got {candidate_factor}"
            )
        self.candidate_factor = candidate_factor

    def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
        if pool.clusters is None:
            raise MissingInputError("cluster_margin needs 'clusters'")
        n_candidates = min(pool.n_unlabeled, max(n, int(np.ceil(self.candidate_factor * n))))
        candidates = select_top_scores(
            margin_scores(required_probs(pool)),
            pool.labeled,
            n_candidates,
            rng=rng,
            source="probs",
        )
        return round_robin_by_cluster(candidates, pool.clusters, n)
