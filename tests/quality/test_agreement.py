"""Agreement coefficients against hand-computed textbook examples."""

from __future__ import annotations

import numpy as np
import pytest

from labella.quality.agreement import (
    MISSING,
    category_counts,
    cohen_kappa,
    fleiss_kappa,
    fleiss_kappa_ratings,
    krippendorff_alpha,
    per_class_mean,
    percent_agreement,
)

M = MISSING


def two_coders(yes_yes: int, yes_no: int, no_yes: int, no_no: int) -> tuple[list[int], list[int]]:
    """A 2x2 contingency table as two coders' ratings (1 = yes, 0 = no)."""
    a = [1] * (yes_yes + yes_no) + [0] * (no_yes + no_no)
    b = [1] * yes_yes + [0] * yes_no + [1] * no_yes + [0] * no_no
    return a, b


def test_cohen_kappa_wikipedia_grant_proposals() -> None:
    # 50 proposals: both yes 20, A yes B no 5, A no B yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_yes = 0.5 * 0.6 = 0.3, p_no = 0.5 * 0.4 = 0.2, p_e = 0.5; kappa = 0.4
    a, b = two_coders(20, 5, 10, 15)
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert percent_agreement(np.array([a, b]).T) == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        # Wikipedia's "same agreement, different kappa" pair: p_o = 0.6 in both
        ((45, 15, 25, 15), (0.6 - 0.54) / (1 - 0.54)),  # p_e = .6*.7 + .4*.3 = 0.54 -> 0.1304
        ((25, 35, 5, 35), (0.6 - 0.46) / (1 - 0.46)),  # p_e = .6*.3 + .4*.7 = 0.46 -> 0.2593
    ],
)
def test_cohen_kappa_same_agreement_different_kappa(
    table: tuple[int, int, int, int], expected: float
) -> None:
    a, b = two_coders(*table)
    assert cohen_kappa(a, b) == pytest.approx(expected)
    assert round(cohen_kappa(a, b), 4) in (0.1304, 0.2593)


def test_cohen_kappa_ignores_units_one_coder_missed_and_is_nan_when_undefined() -> None:
    a, b = two_coders(20, 5, 10, 15)
    with_missing_a = [*a, M, 1]
    with_missing_b = [*b, 0, M]
    assert cohen_kappa(with_missing_a, with_missing_b) == pytest.approx(0.4)
    assert np.isnan(cohen_kappa([1, 1, 1], [1, 1, 1]))  # one category only: p_e = 1
    assert np.isnan(cohen_kappa([M, 1], [0, M]))  # no unit both rated
    assert cohen_kappa([0, 1, 2], [0, 1, 2]) == pytest.approx(1.0)


FLEISS_WIKIPEDIA = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_wikipedia_fourteen_raters() -> None:
    # Wikipedia's worked example: 10 subjects, 14 raters, 5 categories.
    # P_bar = 0.378, P_e = 0.213, kappa = 0.210 (exactly: P_bar = 5.292/14 ... computed below)
    counts = np.array(FLEISS_WIKIPEDIA)
    p_i = ((counts * (counts - 1)).sum(axis=1)) / (14 * 13)
    assert p_i[1] == pytest.approx(0.253, abs=5e-4) and p_i[4] == pytest.approx(0.330, abs=5e-4)
    p_bar = p_i.mean()
    p_e = ((counts.sum(axis=0) / 140) ** 2).sum()
    assert p_bar == pytest.approx(0.378, abs=5e-4) and p_e == pytest.approx(0.213, abs=5e-4)
    kappa = fleiss_kappa(counts)
    assert kappa == pytest.approx((p_bar - p_e) / (1 - p_e))
    assert kappa == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_of_two_raters_and_perfect_agreement() -> None:
    # Two raters on the Cohen table: Fleiss' P_e pools both raters' marginals (Scott's pi):
    # p_yes = (25 + 30) / 100 = 0.55, P_e = 0.55^2 + 0.45^2 = 0.505, kappa = (0.7-0.505)/0.495
    a, b = two_coders(20, 5, 10, 15)
    assert fleiss_kappa_ratings(np.array([a, b]).T) == pytest.approx((0.7 - 0.505) / 0.495)
    assert fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)
    assert np.isnan(fleiss_kappa([[3, 0], [3, 0]]))
    assert np.isnan(fleiss_kappa([[1, 0], [0, 1]]))  # no unit with two ratings


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C: four observers,
# twelve units, nominal values 1..5, missing data; nominal alpha = 0.743.
KRIPPENDORFF_C = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, M, M, M],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, M, 3],
    [M, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, M],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, M],
]


def test_krippendorff_alpha_example_with_missing_data() -> None:
    ratings = np.array(KRIPPENDORFF_C).T  # (units, observers)
    # by hand (the paper's coincidence matrix): n_1..n_5 = 9, 13, 10, 5, 3 (n = 40); the
    # off-diagonal coincidences sum to 2 * (4/3 + 1/3 + 1/3 + 4/3 + 1/3 + 1/3) = 8, and
    # sum_{c != k} n_c n_k = 40^2 - (81 + 169 + 100 + 25 + 9) = 1216: alpha = 1 - 39 * 8 / 1216
    alpha = krippendorff_alpha(ratings)
    assert alpha == pytest.approx(1 - 39 * 8 / 1216)
    assert round(alpha, 3) == 0.743


def test_krippendorff_alpha_binary_two_observers() -> None:
    # Krippendorff (2011) example A: o_00 = 10, o_01 = o_10 = 4, o_11 = 2, n = 20,
    # n_0 = 14, n_1 = 6: alpha = 1 - 19 * 8 / (2 * 14 * 6) = 0.095
    a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    alpha = krippendorff_alpha(np.array([a, b]).T)
    assert alpha == pytest.approx(1 - 19 * 8 / (2 * 14 * 6))
    assert round(alpha, 3) == 0.095


def test_alpha_ignores_units_with_one_value_and_percent_agreement_counts_pairs() -> None:
    ratings = np.array(KRIPPENDORFF_C).T
    without_lonely = ratings[:11]  # unit 12 has a single value: it changes nothing
    assert krippendorff_alpha(without_lonely) == pytest.approx(krippendorff_alpha(ratings))
    # units 1..11: agreeing pairs / all pairs per unit, averaged
    #   1: 3 of 3 -> 1; 2: 3/6 = .5; 3-5: 1; 6: 0; 7: 1; 8: 3/6 = .5; 9: 1; 10: 1; 11: 1
    expected = (1 + 0.5 + 1 + 1 + 1 + 0 + 1 + 0.5 + 1 + 1 + 1) / 11
    assert percent_agreement(ratings) == pytest.approx(expected)


def test_category_counts_and_bad_input() -> None:
    counts = category_counts([[0, 1, M], [2, 2, 2]])
    assert counts.tolist() == [[1, 1, 0], [0, 0, 3]]
    assert category_counts([[0]], n_categories=3).tolist() == [[1, 0, 0]]
    with pytest.raises(ValueError, match="2-d"):
        percent_agreement(np.array([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        krippendorff_alpha(np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match=">= 0"):
        krippendorff_alpha([[0, -3]])
    with pytest.raises(ValueError, match="one length"):
        cohen_kappa([0, 1], [0])
    assert np.isnan(krippendorff_alpha(np.empty((0, 3), dtype=np.int64)))


def test_multi_label_agreement_is_the_mean_over_classes() -> None:
    # 4 units, 2 coders, 3 classes. Class 0: coders agree on every unit with variation (alpha 1).
    # Class 1: the binary example A above would be too long; use a (1,0),(0,1) split (alpha < 0).
    # Class 2: nobody ever used it: undefined, left out of the mean.
    present = np.zeros((4, 2, 3), dtype=np.int64)
    present[:, :, 0] = [[1, 1], [0, 0], [1, 1], [0, 0]]
    present[:, :, 1] = [[1, 0], [0, 1], [0, 0], [0, 0]]
    alpha_0 = krippendorff_alpha(present[:, :, 0])
    alpha_1 = krippendorff_alpha(present[:, :, 1])
    assert alpha_0 == pytest.approx(1.0)
    assert np.isnan(krippendorff_alpha(present[:, :, 2]))
    assert per_class_mean(present, krippendorff_alpha) == pytest.approx((alpha_0 + alpha_1) / 2)
    kappas = per_class_mean(present, lambda m: cohen_kappa(m[:, 0], m[:, 1]))
    assert kappas == pytest.approx((1.0 + cohen_kappa([1, 0, 0, 0], [0, 1, 0, 0])) / 2)
    assert np.isnan(per_class_mean(np.zeros((2, 2, 1), dtype=np.int64), krippendorff_alpha))
