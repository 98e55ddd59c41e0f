"""Information density: uncertainty weighted by how representative an item is of the pool."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from labella.strategies._arrays import matvec, row_chunks, row_sq_norms
from labella.strategies.base import LabelMode, MissingInputError, PoolView, UncertaintyStrategy
from labella.strategies.exploration import build_probs_uncertainty
from labella.strategies.registry import register

_TINY = np.float32(1e-12)


def information_density(embeddings: np.ndarray, labeled: np.ndarray | None = None) -> np.ndarray:
    """Mean cosine similarity of every item to the unlabeled items, float32 in [-1, 1].

    Because ``mean_u cos(x, u) = x/|x| · mean_u(u/|u|)``, the pool-wide average is one
    matrix-vector product with the mean unit vector: O(n·d) time, exact, no n×n matrix
    (Settles & Craven 2008 define the density as this average over the unlabeled pool U).
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n_items, dim), got shape {embeddings.shape}")
    n_items, dim = embeddings.shape
    in_pool = np.ones(n_items, dtype=bool) if labeled is None else ~np.asarray(labeled, dtype=bool)
    n_pool = int(np.count_nonzero(in_pool))
    if n_pool == 0:
        raise ValueError("information density needs at least one unlabeled item")
    inv_norms = 1.0 / np.sqrt(np.maximum(row_sq_norms(embeddings), _TINY))
    weights = (in_pool * inv_norms).astype(np.float32)
    mean_unit = np.zeros(dim, dtype=np.float64)
    for rows in row_chunks(n_items, dim):
        mean_unit += weights[rows] @ np.asarray(embeddings[rows], dtype=np.float32)
    mean_unit /= n_pool
    return np.clip(matvec(embeddings, mean_unit) * inv_norms, -1.0, 1.0)


def density_weighted_scores(
    uncertainty: np.ndarray, density: np.ndarray, *, beta: float = 1.0
) -> np.ndarray:
    """``uncertainty × ((1 + density) / 2) ** beta`` (float32).

    The similarity is mapped from [-1, 1] to [0, 1] so the power is defined for embeddings with
    negative mean similarity; the ranking in density alone is unchanged.
    """
    scaled = (1.0 + np.asarray(density, dtype=np.float32)) * np.float32(0.5)
    return (np.asarray(uncertainty, dtype=np.float32) * scaled ** np.float32(beta)).astype(
        np.float32, copy=False
    )


@register
class DensityWeighted(UncertaintyStrategy):
    """Information density sampling: base uncertainty × mean similarity to the pool ** beta.

    Settles & Craven, "An analysis of active learning strategies for sequence labeling tasks",
    EMNLP 2008. Down-weights uncertain outliers so queries come from dense regions.

    Hyperparameters:
        beta: weight of the density term (0 reduces to the base strategy).
        base: uncertainty strategy scored from ``probs`` (default ``"entropy"``, as in the paper).
        base_params: keyword hyperparameters for the base strategy.
    """

    name = "density_weighted"
    requires: ClassVar[frozenset[str]] = frozenset({"probs", "embeddings"})

    def __init__(
        self,
        *,
        beta: float = 1.0,
        base: str = "entropy",
        base_params: Mapping[str, Any] | None = None,
    ) -> None:
        if not np.isfinite(beta) or beta < 0:
            raise ValueError(f"density_weighted: beta must be a finite number >= 0, got {beta}")
        self.beta = beta
        self.base = base
        self.base_params = base_params
        build_probs_uncertainty(self.name, base, base_params)

    @property
    def label_mode(self) -> LabelMode:
        return build_probs_uncertainty(self.name, self.base, self.base_params).label_mode

    def _scores(self, pool: PoolView) -> np.ndarray:
        if pool.embeddings is None:
            raise MissingInputError("density_weighted needs 'embeddings'")
        base = build_probs_uncertainty(self.name, self.base, self.base_params)
        uncertainty = base.scores(pool)
        density = information_density(pool.embeddings, pool.labeled)
        return density_weighted_scores(uncertainty, density, beta=self.beta)
