"""Known-answer tests for what each strategy selects, on planted pools."""

from __future__ import annotations

import numpy as np
import pytest

from labella.strategies import (
    PoolView,
    entropy_scores,
    get_strategy,
    margin_scores,
    round_robin_by_cluster,
)


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def blobs(
    centers: list[list[float]], per_blob: list[int], spread: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points, ids = [], []
    for cluster, (center, count) in enumerate(zip(centers, per_blob, strict=True)):
        points.append(np.asarray(center) + spread * rng.normal(size=(count, len(center))))
        ids.append(np.full(count, cluster))
    return np.concatenate(points).astype(np.float32), np.concatenate(ids).astype(np.int32)


def select(name: str, pool: PoolView, n: int, seed: int = 0, **params: object) -> list[int]:
    return get_strategy(name, **params).select(pool, n, rng=np.random.default_rng(seed)).tolist()


PLANTED = np.asarray(
    [[0.98, 0.01, 0.01], [0.5, 0.5, 0.0], [0.34, 0.33, 0.33], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]],
    dtype=np.float32,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("margin", [1, 2, 3, 4, 0]),
        ("ratio", [1, 2, 3, 4, 0]),
        ("least_confidence", [2, 1, 3, 4, 0]),
        ("entropy", [2, 3, 1, 4, 0]),
    ],
)
def test_uncertainty_strategies_rank_planted_rows(name: str, expected: list[int]) -> None:
    pool = PoolView(labeled=np.zeros(5, dtype=bool), probs=PLANTED)
    assert select(name, pool, 5) == expected


def test_uncertainty_strategies_skip_labeled_rows() -> None:
    labeled = np.asarray([False, True, True, False, False])
    pool = PoolView(labeled=labeled, probs=PLANTED)
    assert select("margin", pool, 2) == [3, 4]


def test_margin_breaks_ties_with_the_rng() -> None:
    probs = np.tile(np.asarray([[0.6, 0.4]], dtype=np.float32), (30, 1))
    pool = PoolView(labeled=np.zeros(30, dtype=bool), probs=probs)
    assert select("margin", pool, 5, seed=3) == select("margin", pool, 5, seed=3)
    firsts = {select("margin", pool, 5, seed=s)[0] for s in range(25)}
    assert len(firsts) > 5
    assert select("margin", pool, 5, seed=0) != [0, 1, 2, 3, 4]


def test_multi_label_margin_prefers_items_near_thresholds() -> None:
    probs = np.asarray([[0.9, 0.1], [0.31, 0.9], [0.6, 0.05], [0.29, 0.75]], dtype=np.float32)
    thresholds = np.asarray([0.3, 0.8], dtype=np.float32)
    pool = PoolView(
        labeled=np.zeros(4, dtype=bool), probs=probs, multi_label=True, thresholds=thresholds
    )
    # closeness (class 0 / class 1): [0.14,0.125] [0.986,0.875] [0.571,0.063] [0.986,0.938]
    assert select("ml_margin", pool, 4) == [3, 1, 2, 0]
    assert select("ml_margin", pool, 2, reduce="max")[:2] in ([1, 3], [3, 1])
    default = PoolView(labeled=np.zeros(4, dtype=bool), probs=probs, multi_label=True)
    # with 0.5 thresholds p=0.6 is the single closest call, the mean favours item 3
    assert select("ml_margin", default, 1, reduce="max") == [2]
    assert select("ml_margin", default, 1) == [3]


def test_ml_entropy_prefers_many_undecided_labels() -> None:
    probs = np.asarray([[0.5, 0.99, 0.99], [0.5, 0.5, 0.5], [0.001, 0.5, 0.001]], dtype=np.float32)
    pool = PoolView(labeled=np.zeros(3, dtype=bool), probs=probs, multi_label=True)
    assert select("ml_entropy", pool, 3) == [1, 0, 2]


def test_bald_prefers_disagreement_over_agreed_uncertainty() -> None:
    # item 0: every member says 50/50 (aleatoric); item 1: members confidently disagree
    samples = np.asarray(
        [[[0.5, 0.5], [0.99, 0.01], [0.9, 0.1]], [[0.5, 0.5], [0.01, 0.99], [0.9, 0.1]]],
        dtype=np.float32,
    )
    pool = PoolView(labeled=np.zeros(3, dtype=bool), prob_samples=samples)
    assert select("bald", pool, 1) == [1]
    entropy = entropy_scores(samples.mean(axis=0))
    assert entropy[0] == pytest.approx(entropy[1])  # the mean prediction cannot tell them apart


def test_exploration_mix_with_p_one_is_the_base_ranking() -> None:
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=200).astype(np.float32)
    pool = PoolView(labeled=np.zeros(200, dtype=bool), probs=probs)
    assert select("exploration_mix", pool, 20, p=1.0) == select("margin", pool, 20)
    assert select("exploration_mix", pool, 20, p=1.0, base="entropy") == select("entropy", pool, 20)


def test_exploration_mix_explores_about_one_slot_in_ten() -> None:
    n_items, batch = 5000, 200
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=n_items).astype(np.float32)
    pool = PoolView(labeled=np.zeros(n_items, dtype=bool), probs=probs)
    top = set(select("margin", pool, 2 * batch))
    mixed = select("exploration_mix", pool, batch, seed=5)
    explored = sum(item not in top for item in mixed)
    # each slot explores with probability 0.1; a random item is in the top 8% only rarely
    assert 8 <= explored <= 35
    assert len(set(select("exploration_mix", pool, batch, p=0.0)) & top) < 40


def test_exploration_mix_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="p must be in"):
        get_strategy("exploration_mix", p=1.5)
    with pytest.raises(ValueError, match=r"choose one of.*margin"):
        get_strategy("exploration_mix", base="kcenter_greedy")
    with pytest.raises(ValueError, match="choose one of"):
        get_strategy("density_weighted", base="bald")


def test_density_weighting_prefers_the_representative_of_equal_uncertainty() -> None:
    embeddings, _ = blobs([[1.0, 0.0, 0.0]], [40], spread=0.05)
    embeddings = unit(np.vstack([embeddings, [[-1.0, 0.2, 0.0]]]))  # item 40: a lone outlier
    probs = np.tile(np.asarray([[0.9, 0.1]], dtype=np.float32), (41, 1))
    probs[[3, 40]] = [0.5, 0.5]  # item 3 (in the blob) and the outlier are equally uncertain
    pool = PoolView(labeled=np.zeros(41, dtype=bool), probs=probs, embeddings=embeddings)
    assert select("density_weighted", pool, 1) == [3]
    # the outlier's density (~0) outweighs its uncertainty: it drops below the confident blob
    assert select("density_weighted", pool, 41, base="margin")[-1] == 40
    assert set(select("density_weighted", pool, 2, beta=0.0)) == {3, 40}


def test_kcenter_picks_the_far_outlier_first() -> None:
    embeddings, _ = blobs([[1.0, 0.0, 0.0]], [50], spread=0.05, seed=2)
    embeddings = unit(np.vstack([embeddings, [[-1.0, 0.0, 0.1]], [[0.0, 1.0, 0.0]]]))
    labeled = np.zeros(52, dtype=bool)
    labeled[:5] = True
    pool = PoolView(labeled=labeled, embeddings=embeddings)
    assert select("kcenter_greedy", pool, 2) == [50, 51]


def test_kcenter_covers_every_blob_before_repeating_one() -> None:
    centers = [[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 5.0, 0], [0, 0, 0, 5.0], [-5.0, 0, 0, 0]]
    embeddings, ids = blobs(centers, [30, 30, 30, 30, 30], spread=0.2, seed=1)
    for seed in range(3):
        pool = PoolView(labeled=np.zeros(150, dtype=bool), embeddings=embeddings)
        picked = select("kcenter_greedy", pool, 5, seed=seed)
        assert sorted(ids[picked].tolist()) == [0, 1, 2, 3, 4]


def test_round_robin_by_cluster_smallest_cluster_first() -> None:
    candidates = np.asarray([10, 11, 12, 20, 21, 30, 13])  # best first
    clusters = np.zeros(40, dtype=np.int32)
    clusters[[10, 11, 12, 13]] = 5
    clusters[[20, 21]] = 2
    clusters[30] = 9
    assert round_robin_by_cluster(candidates, clusters, 7).tolist() == [30, 20, 10, 21, 11, 12, 13]
    assert round_robin_by_cluster(candidates, clusters, 2).tolist() == [30, 20]


def test_cluster_margin_spreads_a_batch_over_clusters() -> None:
    n_items = 400
    clusters = np.repeat(np.arange(8), 50).astype(np.int32)
    probs = np.tile(np.asarray([[0.95, 0.05]], dtype=np.float32), (n_items, 1))
    probs[:40] = [0.5, 0.5]  # 40 near-duplicates in cluster 0 are the most uncertain
    for cluster in range(1, 8):  # one slightly less uncertain item in every other cluster
        probs[cluster * 50] = [0.6, 0.4]
    pool = PoolView(labeled=np.zeros(n_items, dtype=bool), probs=probs, clusters=clusters)
    plain = select("margin", pool, 8)
    assert set(clusters[plain].tolist()) == {0}
    spread = select("cluster_margin", pool, 8, candidate_factor=10)
    assert sorted(clusters[spread].tolist()) == list(range(8))
    assert spread[-1] < 40  # the big cluster 0 comes last in each round
    assert select("cluster_margin", pool, 8, candidate_factor=1) == plain
    # the default factor (2) reaches 16 candidates deep: all near-duplicates of cluster 0 here
    assert set(clusters[select("cluster_margin", pool, 8)].tolist()) == {0}


def test_kmeans_cold_start_takes_the_medoid_of_each_blob() -> None:
    centers = [[4.0, 0.0], [-4.0, 0.0], [0.0, 6.0]]
    embeddings, ids = blobs(centers, [40, 25, 10], spread=0.3, seed=3)
    pool = PoolView(labeled=np.zeros(75, dtype=bool), embeddings=embeddings)
    picked = select("kmeans_cold_start", pool, 3)
    assert ids[picked].tolist() == [0, 1, 2]  # largest cluster first
    for item in picked:
        members = np.flatnonzero(ids == ids[item])
        centroid = embeddings[members].mean(axis=0)
        distances = np.linalg.norm(embeddings[members] - centroid, axis=1)
        assert item == members[np.argmin(distances)]


def test_kmeans_cold_start_reuses_given_clusters() -> None:
    centers = [[4.0, 0.0], [-4.0, 0.0], [0.0, 6.0], [0.0, -6.0]]
    embeddings, ids = blobs(centers, [10, 40, 25, 5], spread=0.3, seed=4)
    labeled = np.zeros(80, dtype=bool)
    labeled[:3] = True
    pool = PoolView(labeled=labeled, embeddings=embeddings, clusters=ids)
    picked = select("kmeans_cold_start", pool, 2)
    assert ids[picked].tolist() == [1, 2]


def test_typiclust_picks_the_densest_point_of_each_cluster() -> None:
    rng = np.random.default_rng(5)
    points: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    dense: list[int] = []
    start = 0
    for cluster, (center, size) in enumerate([((0.0, 0.0), 30), ((10.0, 0.0), 20), ((0, 10), 12)]):
        offsets = rng.normal(scale=1.0, size=(size, 2))
        offsets[7] = 0.0  # the densest point sits in the middle of the blob
        offsets[8:11] = rng.normal(scale=0.05, size=(3, 2))  # with a tight core around it
        dense.append(start + 7)
        points.append(np.asarray(center) + offsets)
        ids.append(np.full(size, cluster))
        start += size
    embeddings = np.concatenate(points).astype(np.float32)
    clusters = np.concatenate(ids).astype(np.int32)
    pool = PoolView(labeled=np.zeros(len(clusters), dtype=bool), embeddings=embeddings)
    picked = select("typiclust", pool, 3, k_neighbors=5)
    assert picked == dense  # k-means finds the blobs; largest first
    given = PoolView(labeled=pool.labeled, embeddings=embeddings, clusters=clusters)
    assert select("typiclust", given, 3, k_neighbors=5) == dense


def test_typiclust_prefers_uncovered_clusters() -> None:
    embeddings, ids = blobs([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]], [30, 20, 10], spread=0.5)
    labeled = np.zeros(60, dtype=bool)
    labeled[0] = True  # the largest cluster is already covered
    pool = PoolView(labeled=labeled, embeddings=embeddings, clusters=ids)
    picked = select("typiclust", pool, 4)
    assert ids[picked].tolist() == [1, 2, 0, 1]


def test_typiclust_subsamples_large_clusters() -> None:
    embeddings, ids = blobs([[0.0, 0.0]], [300], spread=1.0, seed=6)
    pool = PoolView(labeled=np.zeros(300, dtype=bool), embeddings=embeddings, clusters=ids)
    picked = select("typiclust", pool, 40, max_cluster_sample=25)
    assert len(set(picked)) == 40
    assert picked == select("typiclust", pool, 40, max_cluster_sample=25)


def test_margin_scores_of_pool_match_strategy_scores() -> None:
    probs = np.random.default_rng(9).dirichlet(np.ones(5), size=50).astype(np.float32)
    pool = PoolView(labeled=np.zeros(50, dtype=bool), probs=probs)
    strategy = get_strategy("margin")
    assert hasattr(strategy, "scores")
    np.testing.assert_array_equal(strategy.scores(pool), margin_scores(probs))
