"""The registry, PoolView validation and fit_clusters."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

import labella.strategies.clustering as clustering
from labella.strategies import (
    MissingInputError,
    PoolView,
    QueryStrategy,
    UncertaintyStrategy,
    UnknownStrategyError,
    available_strategies,
    fit_clusters,
    get_strategy,
    register,
    strategy_class,
)
from labella.strategies.registry import _REGISTRY


def test_unknown_strategy_lists_the_known_names() -> None:
    with pytest.raises(UnknownStrategyError) as caught:
        get_strategy("margn")
    message = str(caught.value)
    assert "'margn'" in message
    for name in available_strategies():
        assert name in message
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, ValueError)


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown parameter.*alpha.*accepted parameters: reduce"):
        get_strategy("ml_margin", alpha=1)
    with pytest.raises(ValueError, match="accepted parameters: none"):
        get_strategy("margin", seed=1)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("ml_margin", {"reduce": "median"}, "reduce must be one of"),
        ("cluster_margin", {"candidate_factor": 0.5}, "candidate_factor must be >= 1"),
        ("density_weighted", {"beta": -1.0}, "beta must be"),
        ("typiclust", {"k_neighbors": 0}, "k_neighbors must be a positive integer"),
        ("exploration_mix", {"base": "nope"}, "unknown query strategy 'nope'"),
    ],
)
def test_invalid_hyperparameters_are_rejected_up_front(
    name: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        get_strategy(name, **params)


def test_get_strategy_returns_fresh_instances() -> None:
    assert get_strategy("margin") is not get_strategy("margin")
    assert type(get_strategy("margin")) is strategy_class("margin")


def test_register_rejects_a_taken_name_and_abstract_classes() -> None:
    class Impostor(UncertaintyStrategy):
        name = "margin"

        def _scores(self, pool: PoolView) -> np.ndarray:
            return np.zeros(pool.n_items, dtype=np.float32)

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)
    with pytest.raises(TypeError, match="abstract"):
        register(UncertaintyStrategy)
    assert register(strategy_class("margin")) is strategy_class("margin")


def test_register_then_get_a_custom_strategy() -> None:
    class FirstUnlabeled(QueryStrategy):
        name = "test_first_unlabeled"
        requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})

        def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
            return pool.unlabeled_indices()[:n]

    try:
        register(FirstUnlabeled)
        assert "test_first_unlabeled" in available_strategies()
        strategy = get_strategy("test_first_unlabeled")
        with pytest.raises(MissingInputError, match="'embeddings'"):
            strategy.select(
                PoolView(labeled=np.zeros(3, dtype=bool)), 1, rng=np.random.default_rng()
            )
    finally:
        _REGISTRY.pop("test_first_unlabeled", None)


def test_register_rejects_unknown_inputs() -> None:
    class Bad(QueryStrategy):
        name = "test_bad_inputs"
        requires: ClassVar[frozenset[str]] = frozenset({"logits"})

        def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
            return pool.unlabeled_indices()[:n]

    with pytest.raises(ValueError, match="unknown inputs"):
        register(Bad)


def test_pool_view_accepts_lists_and_counts_items() -> None:
    pool = PoolView(labeled=[True, False, False], probs=[[0.5, 0.5]] * 3)  # type: ignore[arg-type]
    assert pool.n_items == 3
    assert pool.n_unlabeled == 2
    assert pool.unlabeled_indices().tolist() == [1, 2]
    assert pool.available_inputs() == {"probs"}
    np.testing.assert_array_equal(pool.class_thresholds(), [0.5, 0.5])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"labeled": np.asarray([0, 1])}, "labeled must be a 1-D boolean mask"),
        ({"probs": np.ones((3, 2), dtype=np.float32)}, "probs has 3 items along axis 0"),
        ({"probs": np.ones(2, dtype=np.float32)}, "probs must be 2-D"),
        ({"probs": np.ones((2, 2), dtype=np.int64)}, "probs must be floating-point"),
        ({"embeddings": np.ones((5, 4), dtype=np.float32)}, "embeddings has 5 items"),
        ({"prob_samples": np.ones((2, 3, 2), dtype=np.float32)}, "prob_samples has 3 items"),
        (
            {"probs": np.ones((2, 2), np.float32), "prob_samples": np.ones((4, 2, 3), np.float32)},
            "probs has 2 classes but prob_samples has 3",
        ),
        ({"clusters": np.asarray([0.0, 1.0])}, "clusters must be integer"),
        ({"clusters": np.asarray([0, -1])}, "non-negative cluster ids"),
        (
            {"probs": np.ones((2, 2), np.float32), "thresholds": np.asarray([0.5, 1.0])},
            "strictly between 0 and 1",
        ),
        (
            {"probs": np.ones((2, 2), np.float32), "thresholds": np.asarray([0.5])},
            r"thresholds must have shape \(2,\)",
        ),
        ({"multi_label": "yes"}, "multi_label must be a bool"),
    ],
)
def test_pool_view_rejects_malformed_arrays(fields: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"labeled": np.zeros(2, dtype=bool), **fields}
    with pytest.raises(ValueError, match=message):
        PoolView(**arguments)  # type: ignore[arg-type]


def test_pool_view_is_frozen() -> None:
    pool = PoolView(labeled=np.zeros(2, dtype=bool))
    with pytest.raises(AttributeError):
        pool.multi_label = True  # type: ignore[misc]


def separated_blobs(n_per_blob: int, n_blobs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.eye(n_blobs, 8) * 10.0
    truth = np.repeat(np.arange(n_blobs), n_per_blob)
    points = centers[truth] + rng.normal(scale=0.1, size=(truth.size, 8))
    return points.astype(np.float32), truth


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_fit_clusters_recovers_separated_blobs() -> None:
    points, truth = separated_blobs(40, 5, seed=0)
    labels = fit_clusters(points, 5, random_state=0)
    assert labels.dtype == np.int32
    assert labels.shape == (200,)
    assert same_partition(labels, truth)
    np.testing.assert_array_equal(labels, fit_clusters(points, 5, random_state=0))


def test_fit_clusters_mini_batch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clustering, "SMALL_POOL", 100)
    points, truth = separated_blobs(300, 4, seed=1)
    labels = fit_clusters(points, 4, random_state=3)
    assert labels.dtype == np.int32
    assert same_partition(labels, truth)
    np.testing.assert_array_equal(labels, fit_clusters(points, 4, random_state=3))
    single_thread = fit_clusters(points, 4, random_state=3, n_threads=1)
    assert same_partition(single_thread, truth)


def test_fit_clusters_caps_clusters_at_the_number_of_items() -> None:
    points, _ = separated_blobs(2, 3, seed=2)
    labels = fit_clusters(points, 50, random_state=0)
    assert sorted(set(labels.tolist())) == list(range(6))


@pytest.mark.parametrize("n_clusters", [0, -3, 2.5, True])
def test_fit_clusters_rejects_bad_cluster_counts(n_clusters: int) -> None:
    with pytest.raises(ValueError, match="n_clusters must be a positive integer"):
        fit_clusters(np.ones((4, 2), dtype=np.float32), n_clusters, random_state=0)


def test_fit_clusters_rejects_bad_thread_counts() -> None:
    with pytest.raises(ValueError, match="n_threads must be a positive integer or None"):
        fit_clusters(np.ones((4, 2), dtype=np.float32), 2, random_state=0, n_threads=0)


def test_fit_clusters_rejects_bad_embeddings() -> None:
    with pytest.raises(ValueError, match="non-empty 2-D"):
        fit_clusters(np.ones(4, dtype=np.float32), 2, random_state=0)


def test_fit_clusters_output_feeds_cluster_margin() -> None:
    points, _ = separated_blobs(30, 4, seed=3)
    clusters = fit_clusters(points, 4, random_state=0)
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=120).astype(np.float32)
    pool = PoolView(labeled=np.zeros(120, dtype=bool), probs=probs, clusters=clusters)
    picked = get_strategy("cluster_margin").select(pool, 4, rng=np.random.default_rng(0))
    assert sorted(clusters[picked].tolist()) == [0, 1, 2, 3]
