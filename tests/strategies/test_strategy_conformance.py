"""One suite over every registered strategy (like scikit-learn's parametrize_with_checks)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from labella.strategies import (
    EmptyPoolError,
    IncompatiblePoolError,
    MissingInputError,
    PoolView,
    QueryStrategy,
    available_strategies,
    get_strategy,
)

from .pools import build_pool, pool_for

# Non-default configurations that take different code paths; every registered name is also
# checked with its defaults below, so a new strategy is covered the moment it is registered.
Config = tuple[str, dict[str, Any]]
VARIANTS: list[Config] = [
    ("ml_margin", {"reduce": "max"}),
    ("exploration_mix", {"p": 0.0}),
    ("exploration_mix", {"p": 0.5, "base": "entropy"}),
    ("exploration_mix", {"base": "ml_margin", "base_params": {"reduce": "max"}}),
    ("density_weighted", {"base": "margin", "beta": 2.0}),
    ("density_weighted", {"base": "ml_entropy"}),
    ("cluster_margin", {"candidate_factor": 1}),
    ("typiclust", {"k_neighbors": 3, "max_cluster_sample": 8}),
]
CONFIGS: list[Config] = [(name, {}) for name in available_strategies()] + VARIANTS


def _config_id(config: Config) -> str:
    name, params = config
    return name + "".join(f"-{key}={value}" for key, value in params.items())


@pytest.fixture(params=CONFIGS, ids=[_config_id(c) for c in CONFIGS])
def strategy(request: pytest.FixtureRequest) -> QueryStrategy:
    name, params = request.param
    return get_strategy(name, **params)


def _select(strategy: QueryStrategy, pool: PoolView, n: int, seed: int = 0) -> np.ndarray:
    return strategy.select(pool, n, rng=np.random.default_rng(seed))


def test_every_builtin_strategy_is_registered() -> None:
    expected = {
        "random", "least_confidence", "margin", "ratio", "entropy", "exploration_mix",
        "density_weighted", "kcenter_greedy", "cluster_margin", "kmeans_cold_start",
        "typiclust", "bald", "ml_margin", "ml_entropy",
    }  # fmt: skip
    assert expected <= set(available_strategies())


def test_returns_n_unique_unlabeled_int64_indices(strategy: QueryStrategy) -> None:
    pool = pool_for(strategy)
    picked = _select(strategy, pool, 15)
    assert picked.dtype == np.int64
    assert picked.shape == (15,)
    assert np.unique(picked).size == 15
    assert ((picked >= 0) & (picked < pool.n_items)).all()
    assert not pool.labeled[picked].any()


def test_same_seed_gives_same_batch(strategy: QueryStrategy) -> None:
    pool = pool_for(strategy)
    np.testing.assert_array_equal(_select(strategy, pool, 12, 7), _select(strategy, pool, 12, 7))


def test_batch_larger_than_pool_returns_every_unlabeled_item(strategy: QueryStrategy) -> None:
    pool = pool_for(strategy, n_items=30, n_labeled=22)
    picked = _select(strategy, pool, 50)
    assert picked.dtype == np.int64
    assert sorted(picked.tolist()) == pool.unlabeled_indices().tolist()


def test_batch_equal_to_pool_returns_every_unlabeled_item(strategy: QueryStrategy) -> None:
    pool = pool_for(strategy, n_items=30, n_labeled=22)
    assert sorted(_select(strategy, pool, 8).tolist()) == pool.unlabeled_indices().tolist()


def test_single_unlabeled_item(strategy: QueryStrategy) -> None:
    pool = pool_for(strategy, n_items=25, n_labeled=24)
    assert _select(strategy, pool, 3).tolist() == pool.unlabeled_indices().tolist()


def test_zero_batch_is_empty(strategy: QueryStrategy) -> None:
    picked = _select(strategy, pool_for(strategy), 0)
    assert picked.dtype == np.int64
    assert picked.size == 0


def test_fully_labeled_pool_raises_empty_pool_error(strategy: QueryStrategy) -> None:
    pool = pool_for(strategy, n_items=40, n_labeled=40)
    with pytest.raises(EmptyPoolError, match="no unlabeled items left"):
        _select(strategy, pool, 5)


def test_pool_without_items_raises_empty_pool_error(strategy: QueryStrategy) -> None:
    pool = pool_for(strategy, n_items=0, n_labeled=0)
    with pytest.raises(EmptyPoolError, match="no unlabeled items"):
        _select(strategy, pool, 5)


def test_missing_required_input_is_named(strategy: QueryStrategy) -> None:
    for missing in strategy.requires:
        pool = pool_for(strategy, exclude=missing)
        with pytest.raises(MissingInputError, match=f"'{missing}'"):
            _select(strategy, pool, 5)


def test_wrong_label_mode_is_rejected(strategy: QueryStrategy) -> None:
    if strategy.label_mode == "any":
        pytest.skip("accepts single- and multi-label pools")
    wrong_mode = build_pool(strategy.requires, multi_label=strategy.label_mode == "single")
    with pytest.raises(IncompatiblePoolError, match="label"):
        _select(strategy, wrong_mode, 5)


def test_extra_inputs_are_tolerated(strategy: QueryStrategy) -> None:
    everything = {"probs", "embeddings", "prob_samples", "clusters"}
    pool = pool_for(strategy, extra=everything)
    picked = _select(strategy, pool, 10)
    assert np.unique(picked).size == 10
    assert not pool.labeled[picked].any()


def test_inputs_are_not_modified(strategy: QueryStrategy) -> None:
    pool = pool_for(strategy, extra={"probs", "embeddings", "prob_samples", "clusters"})
    arrays = {
        name: getattr(pool, name).copy()
        for name in ("labeled", "probs", "embeddings", "prob_samples", "clusters")
    }
    _select(strategy, pool, 10)
    for name, before in arrays.items():
        np.testing.assert_array_equal(getattr(pool, name), before, err_msg=name)


def test_float64_inputs_give_the_same_batch(strategy: QueryStrategy) -> None:
    pool = pool_for(strategy)
    widened = PoolView(
        labeled=pool.labeled,
        probs=None if pool.probs is None else pool.probs.astype(np.float64),
        embeddings=None if pool.embeddings is None else pool.embeddings.astype(np.float64),
        prob_samples=None if pool.prob_samples is None else pool.prob_samples.astype(np.float64),
        clusters=pool.clusters,
        multi_label=pool.multi_label,
    )
    np.testing.assert_array_equal(_select(strategy, pool, 10), _select(strategy, widened, 10))


def test_garbage_in_labeled_rows_is_ignored(strategy: QueryStrategy) -> None:
    pool = pool_for(strategy)
    probs = None if pool.probs is None else pool.probs.copy()
    samples = None if pool.prob_samples is None else pool.prob_samples.copy()
    if probs is not None:
        probs[pool.labeled] = np.nan
    if samples is not None:
        samples[:, pool.labeled] = np.nan
    poisoned = PoolView(
        labeled=pool.labeled,
        probs=probs,
        embeddings=pool.embeddings,
        prob_samples=samples,
        clusters=pool.clusters,
        multi_label=pool.multi_label,
    )
    picked = _select(strategy, poisoned, 10)
    assert not pool.labeled[picked].any()


def test_nan_model_output_for_unlabeled_item_is_a_clear_error(strategy: QueryStrategy) -> None:
    if not {"probs", "prob_samples"} & strategy.requires:
        pytest.skip("does not read model outputs")
    pool = pool_for(strategy)
    victim = int(pool.unlabeled_indices()[3])
    probs = None if pool.probs is None else pool.probs.copy()
    samples = None if pool.prob_samples is None else pool.prob_samples.copy()
    if probs is not None:
        probs[victim] = np.nan
    if samples is not None:
        samples[:, victim] = np.nan
    poisoned = PoolView(
        labeled=pool.labeled,
        probs=probs,
        embeddings=pool.embeddings,
        prob_samples=samples,
        clusters=pool.clusters,
        multi_label=pool.multi_label,
    )
    with pytest.raises(ValueError, match="NaN or infinite"):
        _select(strategy, poisoned, 10)


@pytest.mark.parametrize("bad_n", [-1, 2.5, "3", True])
def test_bad_batch_size_is_rejected(strategy: QueryStrategy, bad_n: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="batch size"):
        strategy.select(pool_for(strategy), bad_n, rng=np.random.default_rng(0))


def test_numpy_integer_batch_size(strategy: QueryStrategy) -> None:
    assert _select(strategy, pool_for(strategy), np.int64(4)).shape == (4,)  # type: ignore[arg-type]


def test_rng_must_be_a_generator(strategy: QueryStrategy) -> None:
    with pytest.raises(TypeError, match="Generator"):
        strategy.select(pool_for(strategy), 3, rng=0)  # type: ignore[arg-type]


def test_params_round_trip_through_the_registry(strategy: QueryStrategy) -> None:
    clone = get_strategy(strategy.name, **strategy.get_params())
    assert repr(clone) == repr(strategy)
    pool = pool_for(strategy)
    np.testing.assert_array_equal(_select(clone, pool, 6), _select(strategy, pool, 6))


def test_hyperparameters_are_keyword_only(strategy: QueryStrategy) -> None:
    params = strategy.get_params()
    if not params:
        pytest.skip("no hyperparameters")
    with pytest.raises(TypeError):
        type(strategy)(*params.values())


def test_any_mode_strategies_accept_multi_label_pools(strategy: QueryStrategy) -> None:
    if strategy.label_mode != "any":
        pytest.skip("single- or multi-label only (checked by test_wrong_label_mode_is_rejected)")
    pool = build_pool(strategy.requires, multi_label=True)
    picked = _select(strategy, pool, 10)
    assert np.unique(picked).size == 10
    assert not pool.labeled[picked].any()
