"""Known-answer tests for the pure scoring functions, with planted probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labella.strategies import (
    bald_scores,
    density_weighted_scores,
    entropy_scores,
    information_density,
    least_confidence_scores,
    margin_scores,
    ml_entropy_scores,
    ml_margin_scores,
    ratio_scores,
    typicality,
)
from labella.strategies._arrays import (
    CHUNK_ROWS,
    _candidates_above_sampled_cutoff,
    _top_k_with_random_ties,
    top_k_indices,
)


def f32(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32)


def random_softmax(n: int, n_classes: int, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(scale=3.0, size=(n, n_classes))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def test_least_confidence_known_values() -> None:
    probs = f32([[1, 0, 0], [0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.2, 0.7]])
    np.testing.assert_allclose(least_confidence_scores(probs), [0, 0.5, 2 / 3, 0.3], atol=1e-6)


def test_margin_known_values() -> None:
    probs = f32([[0.5, 0.5], [0.9, 0.1], [1.0, 0.0], [0.1, 0.9]])
    scores = margin_scores(probs)
    np.testing.assert_allclose(scores, [1.0, 0.2, 0.0, 0.2], atol=1e-6)
    assert scores.dtype == np.float32
    assert int(np.argmax(scores)) == 0


def test_margin_finds_top_two_wherever_they_are() -> None:
    probs = f32([[0.1, 0.3, 0.6], [0.4, 0.2, 0.4], [0.2, 0.5, 0.3], [0.05, 0.05, 0.9]])
    np.testing.assert_allclose(margin_scores(probs), [0.7, 1.0, 0.8, 0.15], atol=1e-6)


@pytest.mark.parametrize("n_classes", [2, 3, 10, 37, 64, 65, 300])
def test_margin_and_ratio_match_a_full_sort(n_classes: int) -> None:
    probs = random_softmax(500, n_classes, seed=n_classes)
    top = np.sort(probs, axis=1)
    np.testing.assert_allclose(margin_scores(probs), 1 - (top[:, -1] - top[:, -2]), atol=1e-6)
    np.testing.assert_allclose(ratio_scores(probs), top[:, -2] / top[:, -1], rtol=1e-5)


def test_scores_are_identical_across_chunk_boundaries() -> None:
    probs = random_softmax(CHUNK_ROWS + 17, 5, seed=3)
    top = np.sort(probs, axis=1)
    np.testing.assert_allclose(margin_scores(probs), 1 - (top[:, -1] - top[:, -2]), atol=1e-6)
    np.testing.assert_allclose(
        entropy_scores(probs), -(probs * np.log(np.maximum(probs, 1e-38))).sum(1), atol=1e-5
    )


def test_ratio_known_values() -> None:
    probs = f32([[0.5, 0.5, 0.0], [0.8, 0.2, 0.0], [0.6, 0.1, 0.3], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(ratio_scores(probs), [1.0, 0.25, 0.5, 1.0], atol=1e-6)


@pytest.mark.parametrize("n_classes", [2, 5, 100])
def test_entropy_of_uniform_is_log_c(n_classes: int) -> None:
    probs = np.full((3, n_classes), 1.0 / n_classes, dtype=np.float32)
    np.testing.assert_allclose(entropy_scores(probs), math.log(n_classes), rtol=1e-5)


def test_entropy_known_values() -> None:
    probs = f32([[1, 0, 0], [0.5, 0.5, 0], [0.25, 0.25, 0.5]])
    expected = [0.0, math.log(2), 1.5 * math.log(2)]
    np.testing.assert_allclose(entropy_scores(probs), expected, atol=1e-6)


@pytest.mark.parametrize(
    "scorer", [least_confidence_scores, margin_scores, ratio_scores, entropy_scores]
)
def test_single_label_scorers_need_two_classes(scorer: object) -> None:
    assert callable(scorer)
    with pytest.raises(ValueError, match="at least 2 classes"):
        scorer(f32([[1.0], [1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        scorer(np.ones(4, dtype=np.float32))


def test_ml_margin_closeness_to_default_threshold() -> None:
    probs = f32([[0.5, 0.5], [1.0, 0.0], [0.5, 1.0], [0.75, 0.5]])
    np.testing.assert_allclose(ml_margin_scores(probs), [1.0, 0.0, 0.5, 0.75], atol=1e-6)
    np.testing.assert_allclose(
        ml_margin_scores(probs, reduce="max"), [1.0, 0.0, 1.0, 1.0], atol=1e-6
    )


def test_ml_margin_uses_per_class_thresholds() -> None:
    probs = f32([[0.2, 0.9], [1.0, 0.9], [0.0, 0.9]])
    thresholds = np.asarray([0.2, 0.9], dtype=np.float32)
    # closeness per class: 1 - |p - t| / max(t, 1 - t)
    expected_mean = [1.0, (0.0 + 1.0) / 2, (1 - 0.2 / 0.8 + 1.0) / 2]
    np.testing.assert_allclose(ml_margin_scores(probs, thresholds), expected_mean, atol=1e-6)
    with pytest.raises(ValueError, match="2 entries"):
        ml_margin_scores(probs, np.asarray([0.5, 0.5, 0.5], dtype=np.float32))
    with pytest.raises(ValueError, match="reduce"):
        ml_margin_scores(probs, reduce="median")  # type: ignore[arg-type]


def test_ml_entropy_is_sum_of_binary_entropies() -> None:
    probs = f32([[0.5, 0.5, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 1.0], [0.25, 0.5, 1.0]])
    h_quarter = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    expected = [3 * math.log(2), 0.0, math.log(2), h_quarter + math.log(2)]
    np.testing.assert_allclose(ml_entropy_scores(probs), expected, atol=1e-5)


def test_bald_is_zero_when_samples_agree() -> None:
    agreeing = np.stack([f32([[1 / 3, 1 / 3, 1 / 3], [0.9, 0.05, 0.05]])] * 6)
    np.testing.assert_allclose(bald_scores(agreeing), [0.0, 0.0], atol=1e-6)


def test_bald_is_high_when_confident_samples_disagree() -> None:
    samples = np.stack([f32([[1, 0], [0.5, 0.5]]), f32([[0, 1], [0.5, 0.5]])])
    scores = bald_scores(samples)
    np.testing.assert_allclose(scores, [math.log(2), 0.0], atol=1e-6)
    assert scores[0] > scores[1]  # entropy of the mean would call them equal


def test_bald_partial_disagreement_known_value() -> None:
    samples = f32([[0.9, 0.1], [0.1, 0.9]]).reshape(2, 1, 2)
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    np.testing.assert_allclose(bald_scores(samples), [math.log(2) - h], atol=1e-6)


def test_bald_multi_label_sums_binary_mutual_information() -> None:
    samples = np.stack([f32([[1.0, 0.3]]), f32([[0.0, 0.3]])])
    np.testing.assert_allclose(bald_scores(samples, multi_label=True), [math.log(2)], atol=1e-6)


def test_bald_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match="3-D"):
        bald_scores(f32([[0.5, 0.5]]))


def test_information_density_matches_brute_force_mean_cosine() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(60, 6)) * rng.uniform(0.5, 3, size=(60, 1))  # not normalised
    labeled = np.zeros(60, dtype=bool)
    labeled[::7] = True
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    brute = (unit @ unit[~labeled].T).mean(axis=1)
    np.testing.assert_allclose(information_density(x.astype(np.float32), labeled), brute, atol=1e-5)
    np.testing.assert_allclose(
        information_density(x.astype(np.float32)), (unit @ unit.T).mean(1), atol=1e-5
    )


def test_density_weighting_formula() -> None:
    scores = density_weighted_scores(
        np.asarray([1.0, 1.0, 0.5], dtype=np.float32),
        np.asarray([1.0, -1.0, 0.0], dtype=np.float32),
        beta=2.0,
    )
    np.testing.assert_allclose(scores, [1.0, 0.0, 0.5 * 0.25], atol=1e-6)


def test_typicality_is_inverse_mean_knn_distance() -> None:
    points = f32([[0.0], [1.0], [3.0], [10.0]])
    expected = 1.0 / (np.asarray([1.0, 1.0, 2.0, 7.0]) + 1e-5)
    np.testing.assert_allclose(typicality(points, 1), expected, rtol=1e-5)
    two_nn = 1.0 / (np.asarray([2.0, 1.5, 2.5, 8.0]) + 1e-5)
    np.testing.assert_allclose(typicality(points, 2), two_nn, rtol=1e-5)
    assert typicality(points[:1], 20).tolist() == [1.0]


def test_top_k_sorts_descending() -> None:
    scores = np.asarray([0.1, 0.9, 0.5, 0.7, 0.3], dtype=np.float32)
    picked = top_k_indices(scores, 3, rng=np.random.default_rng(0))
    assert picked.tolist() == [1, 3, 2]
    assert picked.dtype == np.int64


def test_top_k_breaks_ties_with_the_rng_not_the_index() -> None:
    scores = np.zeros(50, dtype=np.float32)
    scores[[10, 20]] = 1.0  # two clear winners, then 48 tied items for the last slot
    batches = {tuple(top_k_indices(scores, 3, rng=np.random.default_rng(s))) for s in range(40)}
    assert all(set(batch[:2]) == {10, 20} for batch in batches)
    assert {batch[0] for batch in batches} == {10, 20}  # order of the tied winners varies too
    third = {batch[2] for batch in batches}
    assert len(third) > 10  # many different tied items win the last slot
    assert third != {0}


def test_top_k_rejects_nan_and_inf_among_selected() -> None:
    scores = np.asarray([0.1, np.nan, 0.3], dtype=np.float32)
    with pytest.raises(ValueError, match="NaN or infinite"):
        top_k_indices(scores, 1, rng=np.random.default_rng(0), source="probs")
    scores = np.asarray([0.1, np.inf, 0.3], dtype=np.float32)
    with pytest.raises(ValueError, match="NaN or infinite"):
        top_k_indices(scores, 3, rng=np.random.default_rng(0))


def reference_top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The unfiltered path: argpartition over every score, then the same ordering rule."""
    chosen = np.sort(_top_k_with_random_ties(scores, k, rng))
    order = np.lexsort((rng.random(chosen.size), -scores[chosen]))
    return chosen[order]


@pytest.mark.parametrize("layout", ["random", "ascending", "descending", "quantised", "masked"])
def test_top_k_prefilter_matches_the_full_argpartition(layout: str) -> None:
    rng = np.random.default_rng(11)
    scores = rng.random(20_000).astype(np.float32)
    if layout == "ascending":  # the strided sample sees only the small end of each stride
        scores.sort()
    elif layout == "descending":
        scores = np.sort(scores)[::-1].copy()
    elif layout == "quantised":  # many ties at the cut-off
        scores = np.round(scores * 50).astype(np.float32)
    elif layout == "masked":
        scores[rng.random(scores.size) < 0.7] = -np.inf
    for k in (1, 7, 100, 1_000):
        if layout == "random":  # make sure the filtered path is the one under test
            assert _candidates_above_sampled_cutoff(scores, k) is not None
        expected = reference_top_k(scores, k, np.random.default_rng(k))
        actual = top_k_indices(scores, k, rng=np.random.default_rng(k))
        np.testing.assert_array_equal(actual, expected)
        best = np.sort(scores)[::-1][:k]
        np.testing.assert_array_equal(scores[actual], best)


def test_top_k_rejects_nan_even_when_prefiltering() -> None:
    scores = np.random.default_rng(0).random(50_000).astype(np.float32)
    scores[123] = np.nan
    with pytest.raises(ValueError, match="probs of some unlabeled items are NaN"):
        top_k_indices(scores, 10, rng=np.random.default_rng(0), source="probs")


@pytest.mark.parametrize("n_classes", [4, 100])
def test_nan_rows_score_nan_so_selection_can_report_them(n_classes: int) -> None:
    probs = random_softmax(20, n_classes, seed=1)
    probs[5] = np.nan
    for scorer in (least_confidence_scores, margin_scores, ratio_scores, entropy_scores):
        scores = scorer(probs)
        assert np.isnan(scores[5])
        assert np.isfinite(np.delete(scores, 5)).all()
