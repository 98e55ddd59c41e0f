"""Inter-annotator agreement: percent agreement, Cohen's kappa, Fleiss' kappa and Krippendorff's
alpha (nominal). Pure numpy, no DB.

Ratings come as a reliability matrix ``(n_units, n_coders)`` of integer category codes with
:data:`MISSING` where a coder did not rate a unit, or, for Fleiss' kappa, as a count matrix
``(n_units, n_categories)``. Every coefficient is ``nan`` when it is undefined: no unit rated by
two coders, or (for the chance-corrected ones) no variation at all, where expected agreement is 1
and ``(p_o - p_e) / (1 - p_e)`` divides by zero.

Multi-label annotations are measured per class: each class becomes a binary rating (present or
absent) and the class coefficients are averaged (macro), classes whose coefficient is undefined
left out (:func:`per_class_mean`). A class nobody used is then ignored instead of counting as
perfect agreement on "absent", and a frequent class weighs no more than a rare one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MISSING = -1


def _reliability(ratings: np.ndarray | list[list[int]]) -> np.ndarray:
    matrix = np.asarray(ratings)
    if matrix.ndim != 2:
        raise ValueError(f"ratings must be 2-d (n_units, n_coders), got shape {matrix.shape}")
    if matrix.size and not np.issubdtype(matrix.dtype, np.integer):
        raise ValueError(f"ratings must be integer category codes, got dtype {matrix.dtype}")
    matrix = matrix.astype(np.int64, copy=False)
    if matrix.size and (matrix < MISSING).any():
        raise ValueError(f"category codes must be >= 0 ({MISSING} marks a missing rating)")
    return matrix


def category_counts(
    ratings: np.ndarray | list[list[int]], *, n_categories: int | None = None
) -> np.ndarray:
    """``(n_units, n_categories)``: how many coders put each unit in each category."""
    matrix = _reliability(ratings)
    present = matrix != MISSING
    top = int(matrix[present].max()) + 1 if present.any() else 0
    k = top if n_categories is None else n_categories
    if k < top:
        raise ValueError(f"n_categories={n_categories} but a code {top - 1} occurs")
    counts = np.zeros((matrix.shape[0], k), dtype=np.int64)
    units, _ = np.nonzero(present)
    np.add.at(counts, (units, matrix[present]), 1)
    return counts


def _pairable(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError(f"counts must be 2-d (n_units, n_categories), got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("counts must be >= 0")
    return counts[counts.sum(axis=1) >= 2]


def observed_agreement(counts: np.ndarray) -> float:
    """Mean over units rated at least twice of the share of agreeing coder pairs in the unit:
    ``P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1))`` (Fleiss 1971, eq. 2). For two coders this
    is the plain share of units they coded alike."""
    units = _pairable(counts)
    if len(units) == 0:
        return float("nan")
    n = units.sum(axis=1)
    per_unit = (units * (units - 1)).sum(axis=1) / (n * (n - 1))
    return float(per_unit.mean())


def percent_agreement(ratings: np.ndarray | list[list[int]]) -> float:
    """Share of agreeing coder pairs, averaged over the units at least two coders rated."""
    return observed_agreement(category_counts(ratings))


def cohen_kappa(a: np.ndarray | list[int], b: np.ndarray | list[int]) -> float:
    """Cohen's kappa of two coders over the units both rated.

    Cohen, 1960, "A coefficient of agreement for nominal scales", Educational and Psychological
    Measurement 20(1): ``kappa = (p_o - p_e) / (1 - p_e)`` with ``p_e = sum_k p_a(k) p_b(k)``, each
    coder's own category proportions (the marginals of the two coders' contingency table).
    """
    first = np.asarray(a)
    second = np.asarray(b)
    if first.ndim != 1 or first.shape != second.shape:
        raise ValueError(f"a and b must be 1-d of one length, got {first.shape} and {second.shape}")
    matrix = _reliability(np.stack([first, second], axis=1) if len(first) else np.empty((0, 2)))
    both = (matrix != MISSING).all(axis=1)
    pairs = matrix[both]
    if len(pairs) == 0:
        return float("nan")
    k = int(pairs.max()) + 1
    p_o = float(np.mean(pairs[:, 0] == pairs[:, 1]))
    p_a = np.bincount(pairs[:, 0], minlength=k) / len(pairs)
    p_b = np.bincount(pairs[:, 1], minlength=k) / len(pairs)
    p_e = float(p_a @ p_b)
    return _chance_corrected(p_o, p_e)


def fleiss_kappa(counts: np.ndarray | list[list[int]]) -> float:
    """Fleiss' kappa from a count matrix ``(n_units, n_categories)``.

    Fleiss, 1971, "Measuring nominal scale agreement among many raters", Psychological Bulletin
    76(5): ``kappa = (P_bar - P_e) / (1 - P_e)``, ``P_bar`` the mean of the per-unit agreement
    ``P_i`` and ``P_e = sum_j p_j^2`` with ``p_j`` the share of all ratings in category ``j``.
    Fleiss assumes the same number of raters per unit; units with a different number (missing
    ratings) are accepted with ``P_i`` computed over their own raters and ``p_j`` pooled over all
    ratings, which is Fleiss' formula exactly when the numbers are equal. Units with fewer than two
    ratings carry no agreement and are left out.
    """
    units = _pairable(np.asarray(counts))
    if len(units) == 0:
        return float("nan")
    p_bar = observed_agreement(units)
    p_j = units.sum(axis=0) / units.sum()
    return _chance_corrected(p_bar, float((p_j**2).sum()))


def fleiss_kappa_ratings(ratings: np.ndarray | list[list[int]]) -> float:
    """:func:`fleiss_kappa` of a reliability matrix (codes, :data:`MISSING` allowed)."""
    return fleiss_kappa(category_counts(ratings))


def krippendorff_alpha(ratings: np.ndarray | list[list[int]]) -> float:
    """Krippendorff's alpha for nominal data, missing ratings allowed.

    Krippendorff, 2004, "Content Analysis: An Introduction to Its Methodology" (2nd ed.), ch. 11;
    and 2011, "Computing Krippendorff's Alpha-Reliability". Each unit rated by ``m_u >= 2`` coders
    adds its ``m_u (m_u - 1)`` ordered pairs of values to the coincidence matrix ``o_ck``, each
    weighted ``1 / (m_u - 1)``; with ``n_c = sum_k o_ck`` and ``n = sum_c n_c``,
    ``alpha = 1 - (n - 1) sum_{c != k} o_ck / sum_{c != k} n_c n_k``.
    """
    units = _pairable(category_counts(ratings))
    if len(units) == 0:
        return float("nan")
    m = units.sum(axis=1)
    weighted = units / (m - 1)[:, None]
    coincidences = weighted.T @ units - np.diag(weighted.sum(axis=0))
    n_c = coincidences.sum(axis=1)
    n = n_c.sum()
    observed = coincidences.sum() - np.trace(coincidences)
    expected = (n_c.sum() ** 2 - (n_c**2).sum()) / (n - 1)
    if expected <= 0:
        return float("nan")  # every pairable value in one category: nothing to tell apart
    return float(1.0 - observed / expected)


def per_class_mean(present: np.ndarray, coefficient: Callable[[np.ndarray], float]) -> float:
    """A multi-label coefficient: ``coefficient`` of each class's binary reliability matrix
    (``present`` is ``(n_units, n_coders, n_classes)`` with 1 present, 0 absent and
    :data:`MISSING`), averaged over the classes where it is defined; ``nan`` when none is."""
    cube = np.asarray(present)
    if cube.ndim != 3:
        raise ValueError(f"present must be 3-d (n_units, n_coders, n_classes), got {cube.shape}")
    values = [coefficient(cube[:, :, j]) for j in range(cube.shape[2])]
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def _chance_corrected(p_o: float, p_e: float) -> float:
    if 1.0 - p_e <= 1e-12:
        return float("nan")  # both coders (or all raters) used one category only
    return (p_o - p_e) / (1.0 - p_e)
