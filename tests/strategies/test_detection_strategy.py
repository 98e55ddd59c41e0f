"""Detection query strategies: a conformance suite over every registered detection strategy (the
ragged box-score pool does not fit the classification suite) and known answers on planted scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from labella.strategies import EmptyPoolError, UnknownStrategyError
from labella.strategies.detection import (
    DetectionPool,
    DetectionStrategy,
    available_detection_strategies,
    box_uncertainty,
    get_detection_strategy,
    image_informativeness,
)

Config = tuple[str, dict[str, Any]]
VARIANTS: list[Config] = [
    ("detection_uncertainty", {"aggregate": "mean"}),
    ("detection_uncertainty", {"aggregate": "sum", "measure": "least_confidence"}),
    ("detection_uncertainty", {"empty_weight": 0.0, "candidate_factor": 1}),
    ("detection_uncertainty", {"floor": 0.0, "confident": 1.0}),
]
CONFIGS: list[Config] = [(name, {}) for name in available_detection_strategies()] + VARIANTS
# which optional inputs the pool carries: each takes its own diversity path
INPUTS = ["scores only", "clusters", "embeddings"]


def _config_id(config: Config) -> str:
    name, params = config
    return name + "".join(f"-{key}={value}" for key, value in params.items())


@pytest.fixture(params=CONFIGS, ids=[_config_id(c) for c in CONFIGS])
def strategy(request: pytest.FixtureRequest) -> DetectionStrategy:
    name, params = request.param
    return get_detection_strategy(name, **params)


def random_pool(
    n_images: int, *, inputs: str = "clusters", labeled_share: float = 0.3, seed: int = 0
) -> DetectionPool:
    """Images with 0 to 6 boxes of random scores, some labeled, two embedding blobs."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 7, size=n_images)
    scores = [rng.random(c).astype(np.float32) for c in counts]
    labeled = rng.random(n_images) < labeled_share
    embeddings = rng.normal(size=(n_images, 8)).astype(np.float32)
    clusters = rng.integers(0, 5, size=n_images)
    return DetectionPool.from_lists(
        labeled,
        scores,
        embeddings=embeddings if inputs == "embeddings" else None,
        clusters=clusters if inputs == "clusters" else None,
    )


def select(strategy: DetectionStrategy, pool: DetectionPool, n: int, seed: int = 0) -> np.ndarray:
    return strategy.select(pool, n, rng=np.random.default_rng(seed))


# -- conformance ----------------------------------------------------------------------------------


def test_every_builtin_detection_strategy_is_registered() -> None:
    assert {"detection_uncertainty", "detection_random"} <= set(available_detection_strategies())


@pytest.mark.parametrize("inputs", INPUTS)
def test_right_count_unique_and_only_unlabeled(strategy: DetectionStrategy, inputs: str) -> None:
    pool = random_pool(60, inputs=inputs)
    picked = select(strategy, pool, 12)
    assert picked.dtype == np.int64 and picked.shape == (12,)
    assert len(set(picked.tolist())) == 12
    assert not pool.labeled[picked].any()


@pytest.mark.parametrize("inputs", INPUTS)
def test_deterministic_under_a_seed(strategy: DetectionStrategy, inputs: str) -> None:
    pool = random_pool(80, inputs=inputs, seed=3)
    assert np.array_equal(select(strategy, pool, 10, seed=7), select(strategy, pool, 10, seed=7))


def test_a_small_pool_gives_every_unlabeled_image(strategy: DetectionStrategy) -> None:
    pool = DetectionPool.from_lists([True, False, False, True], [[0.9], [], [0.4, 0.8], [0.5]])
    assert sorted(select(strategy, pool, 10).tolist()) == [1, 2]
    assert select(strategy, pool, 0).shape == (0,)


def test_an_empty_or_fully_labeled_pool_is_an_error(strategy: DetectionStrategy) -> None:
    with pytest.raises(EmptyPoolError, match="the pool is empty"):
        select(strategy, DetectionPool.from_lists([], []), 3)
    with pytest.raises(EmptyPoolError, match="all 2 images"):
        select(strategy, DetectionPool.from_lists([True, True], [[0.5], []]), 3)


def test_bad_batch_size_and_rng_are_refused(strategy: DetectionStrategy) -> None:
    pool = random_pool(10)
    with pytest.raises(ValueError, match="batch size n must be >= 0"):
        select(strategy, pool, -1)
    with pytest.raises(TypeError, match="batch size n must be an integer"):
        select(strategy, pool, 2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        strategy.select(pool, 2, rng=0)  # type: ignore[arg-type]


def test_params_round_trip_through_the_registry(strategy: DetectionStrategy) -> None:
    again = get_detection_strategy(strategy.name, **strategy.get_params())
    assert again.get_params() == strategy.get_params()
    params = ", ".join(f"{k}={v!r}" for k, v in strategy.get_params().items())
    assert repr(strategy) == f"{type(strategy).__name__}({params})"


# -- registry and validation ----------------------------------------------------------------------


def test_unknown_names_parameters_and_values_are_named() -> None:
    with pytest.raises(UnknownStrategyError, match="detection_uncertainty"):
        get_detection_strategy("margin")
    with pytest.raises(ValueError, match=r"unknown parameter.*beta.*accepted parameters: floor"):
        get_detection_strategy("detection_uncertainty", beta=1)
    for params, message in [
        ({"floor": 1.0}, "floor must be in"),
        ({"confident": 0.2}, "confident must be in"),
        ({"measure": "margin"}, "measure must be one of"),
        ({"aggregate": "median"}, "aggregate must be one of"),
        ({"empty_weight": -1.0}, "empty_weight must be >= 0"),
        ({"candidate_factor": 0.5}, "candidate_factor must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            get_detection_strategy("detection_uncertainty", **params)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labeled": np.zeros(2, int)}, "labeled must be a 1-D boolean mask"),
        ({"box_scores": np.zeros(3, int)}, "box_scores must be a 1-D float array"),
        ({"offsets": np.array([0, 3])}, "offsets must be 3 integers"),
        ({"offsets": np.array([0, 1, 2])}, "must start at 0 and end at the number of boxes"),
        ({"offsets": np.array([1, 2, 3])}, "must start at 0 and end at the number of boxes"),
        ({"clusters": np.array([0, -1])}, "non-negative cluster ids"),
        ({"embeddings": np.zeros((3, 2), np.float32)}, "embeddings must be floats of shape"),
    ],
)
def test_a_malformed_pool_is_refused(kwargs: dict[str, Any], message: str) -> None:
    good: dict[str, Any] = {
        "labeled": np.zeros(2, bool),
        "box_scores": np.array([0.1, 0.5, 0.9], np.float32),
        "offsets": np.array([0, 1, 3]),
    }
    with pytest.raises(ValueError, match=message):
        DetectionPool(**{**good, **kwargs})


def test_decreasing_offsets_are_refused() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        DetectionPool(
            labeled=np.zeros(3, bool),
            box_scores=np.zeros(2, np.float32),
            offsets=np.array([0, 2, 1, 2]),
        )


def test_subset_keeps_each_images_boxes() -> None:
    pool = DetectionPool.from_lists(
        [False, True, False], [[0.1, 0.2], [], [0.7, 0.8, 0.9]], clusters=[4, 5, 6]
    )
    sub = pool.subset(np.array([2, 1, 0]))
    assert sub.box_scores.tolist() == pytest.approx([0.7, 0.8, 0.9, 0.1, 0.2])
    assert sub.offsets.tolist() == [0, 3, 3, 5]
    assert sub.labeled.tolist() == [False, True, False]
    assert sub.clusters is not None and sub.clusters.tolist() == [6, 5, 4]


# -- known answers --------------------------------------------------------------------------------


def test_box_uncertainty_known_values() -> None:
    entropy = box_uncertainty(np.array([0.0, 0.5, 1.0, 0.11, 0.89]))
    assert entropy[:3].tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert entropy[3] == pytest.approx(0.4999, abs=1e-3) and entropy[4] == pytest.approx(entropy[3])
    assert box_uncertainty(np.array([0.2, 0.9]), measure="least_confidence").tolist() == (
        pytest.approx([0.8, 0.1])
    )


def test_image_informativeness_planted_scores() -> None:
    # image 0: a sure box and a doubtful one; 1: nothing at all; 2: only background below the
    # floor; 3: one doubtful box above the floor but none confident; 4: two sure boxes
    pool = DetectionPool.from_lists([False] * 5, [[0.99, 0.5], [], [0.2, 0.1], [0.4], [0.95, 0.9]])
    h = box_uncertainty(np.array([0.99, 0.5, 0.4, 0.95, 0.9]))
    by_max = image_informativeness(pool.box_scores, pool.offsets, empty_weight=0.25)
    assert by_max.tolist() == pytest.approx([1.0, 0.25, 0.25, h[2] + 0.25, h[4]], abs=1e-6)
    by_mean = image_informativeness(pool.box_scores, pool.offsets, aggregate="mean")
    assert by_mean.tolist() == pytest.approx(
        [(h[0] + h[1]) / 2, 0.5, 0.5, h[2] + 0.5, (h[3] + h[4]) / 2], abs=1e-6
    )
    by_sum = image_informativeness(
        pool.box_scores, pool.offsets, aggregate="sum", measure="least_confidence", empty_weight=0
    )
    assert by_sum.tolist() == pytest.approx([0.01 + 0.5, 0.0, 0.0, 0.6, 0.05 + 0.1], abs=1e-6)
    # the floor decides what is background: at 0.05 image 2's boxes count (and stay unsure)
    low_floor = image_informativeness(pool.box_scores, pool.offsets, floor=0.05, empty_weight=0)
    assert low_floor[2] == pytest.approx(float(box_uncertainty(np.array([0.2]))[0]))


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        image_informativeness(np.array([0.5, np.nan], np.float32), np.array([0, 2]))


def test_least_confident_images_come_first_without_diversity() -> None:
    scores = [[0.99], [0.6], [0.52], [0.97, 0.9], [0.45, 0.98], [0.98]]
    pool = DetectionPool.from_lists([False, False, False, False, True, False], scores)
    picked = select(get_detection_strategy("detection_uncertainty", empty_weight=0.0), pool, 3)
    # image 4 (0.45) is the most uncertain but labeled; then 0.52, 0.6, then the 0.9 box
    assert picked.tolist() == [2, 1, 3]


def test_clusters_spread_the_batch() -> None:
    # the six most uncertain images all sit in cluster 0; cluster 1 holds slightly surer ones
    scores = [[0.5], [0.51], [0.52], [0.53], [0.54], [0.55], [0.7], [0.72], [0.99], [0.99]]
    clusters = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    strategy = get_detection_strategy("detection_uncertainty", candidate_factor=4)
    pool = DetectionPool.from_lists([False] * 10, scores, clusters=clusters)
    picked = select(strategy, pool, 2)
    assert sorted(pool.clusters[picked].tolist()) == [0, 1]  # type: ignore[index]
    plain = DetectionPool.from_lists([False] * 10, scores)
    assert set(select(strategy, plain, 2).tolist()) <= {0, 1, 2}


def test_embeddings_alone_spread_the_batch_over_k_means_groups() -> None:
    rng = np.random.default_rng(0)
    blob_a = rng.normal(0.0, 0.01, size=(6, 4)) + np.array([1, 0, 0, 0])
    blob_b = rng.normal(0.0, 0.01, size=(4, 4)) + np.array([0, 1, 0, 0])
    embeddings = np.vstack([blob_a, blob_b]).astype(np.float32)
    scores = [[0.5], [0.51], [0.52], [0.53], [0.54], [0.55], [0.7], [0.72], [0.99], [0.99]]
    pool = DetectionPool.from_lists([False] * 10, scores, embeddings=embeddings)
    strategy = get_detection_strategy("detection_uncertainty", candidate_factor=4)
    # the best of blob a (0.5 exactly) and of blob b (0.7 is less sure than 0.72), best first
    assert select(strategy, pool, 2).tolist() == [0, 6]
    plain = get_detection_strategy("detection_uncertainty", candidate_factor=1)
    assert set(select(plain, pool, 2).tolist()) <= set(range(6))
