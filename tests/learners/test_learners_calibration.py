"""Temperature scaling, top-label calibration and the expected calibration error, on planted
probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit, softmax

from labella.learners.calibration import (
    ConfidenceCalibrator,
    TemperatureScaler,
    TopLabelCalibrator,
    expected_calibration_error,
)


def calibrated_softmax(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True class probabilities and labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(scale=1.5, size=(n, k)), axis=1)
    y = np.array([rng.choice(k, p=row) for row in probs])
    return probs, y


def sharpen(probs: np.ndarray, power: float) -> np.ndarray:
    """The same ranking, over-confident: softmax of the logits times ``power``."""
    return softmax(power * np.log(probs), axis=1)


def test_ece_is_zero_for_perfect_forecasts_and_large_for_confident_mistakes() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert expected_calibration_error(probs, np.array([0, 1, 0])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.array([1, 0, 1])) == pytest.approx(1.0)
    # Confidence 0.7 on every row, right on 3 of 4: |0.75 - 0.7| = 0.05.
    probs = np.tile([0.7, 0.3], (4, 1))
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.05)


def test_ece_of_a_calibrated_model_is_small() -> None:
    probs, y = calibrated_softmax(20_000, 4, seed=1)
    assert expected_calibration_error(probs, y) < 0.02
    assert expected_calibration_error(sharpen(probs, 3.0), y) > 0.1


def test_temperature_scaling_fixes_an_over_confident_model_without_changing_accuracy() -> None:
    probs, y = calibrated_softmax(4_000, 5, seed=2)
    confident = sharpen(probs, 3.0)
    scaler = TemperatureScaler().fit(confident[:2_000], y[:2_000])
    assert scaler.temperature_ == pytest.approx(3.0, rel=0.15)
    assert scaler.nll_after_ < scaler.nll_before_
    # Judged on rows the scaler did not see.
    before, test_y = confident[2_000:], y[2_000:]
    after = scaler.transform(before)
    assert after.dtype == np.float32
    np.testing.assert_allclose(after.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(after.argmax(axis=1), before.argmax(axis=1))
    ece_before = expected_calibration_error(before, test_y)
    ece_after = expected_calibration_error(after, test_y)
    assert ece_after < ece_before / 3
    assert ece_after < 0.04


def test_temperature_is_about_one_for_a_calibrated_model() -> None:
    probs, y = calibrated_softmax(5_000, 3, seed=3)
    scaler = TemperatureScaler().fit(probs, y)
    assert scaler.temperature_ == pytest.approx(1.0, abs=0.08)


def test_under_confident_model_gets_a_temperature_below_one() -> None:
    probs, y = calibrated_softmax(5_000, 3, seed=4)
    timid = sharpen(probs, 0.5)
    assert TemperatureScaler().fit(timid, y).temperature_ == pytest.approx(0.5, rel=0.15)


def test_logit_inputs_give_the_same_temperature_as_probabilities() -> None:
    rng = np.random.default_rng(5)
    logits = 4.0 * rng.normal(size=(3_000, 3))
    y = np.array([rng.choice(3, p=row) for row in softmax(logits / 4.0, axis=1)])
    from_logits = TemperatureScaler(inputs="logits").fit(logits, y)
    from_probs = TemperatureScaler().fit(softmax(logits, axis=1), y)
    assert from_logits.temperature_ == pytest.approx(4.0, rel=0.15)
    assert from_logits.temperature_ == pytest.approx(from_probs.temperature_, rel=1e-3)
    np.testing.assert_allclose(
        from_logits.transform(logits), softmax(logits / from_logits.temperature_, axis=1), atol=1e-6
    )


def test_multi_label_shares_one_temperature_across_classes() -> None:
    rng = np.random.default_rng(6)
    true_logits = rng.normal(scale=2.0, size=(4_000, 4))
    Y = (rng.random(true_logits.shape) < expit(true_logits)).astype(int)
    confident = expit(2.5 * true_logits)
    scaler = TemperatureScaler(multi_label=True).fit(confident, Y)
    assert scaler.temperature_ == pytest.approx(2.5, rel=0.15)
    after = scaler.transform(confident)
    np.testing.assert_array_equal(after >= 0.5, confident >= 0.5)
    assert expected_calibration_error(after, Y) < expected_calibration_error(confident, Y) / 3


@pytest.mark.parametrize(
    ("scores", "y", "message"),
    [
        (np.ones(3), np.zeros(3, dtype=int), "2-d"),
        (np.full((2, 2), 0.5), np.array([0, 1, 1]), "1-d array of 2"),
        (np.full((2, 2), 0.5), np.array([0, 2]), r"in \[0, 2\)"),
        (np.full((2, 2), 1.5), np.array([0, 1]), r"\[0, 1\]"),
        (np.array([[np.nan, 0.5], [0.5, 0.5]]), np.array([0, 1]), "NaN"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "no rows"),
    ],
)
def test_bad_inputs_raise_clear_errors(scores: np.ndarray, y: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TemperatureScaler().fit(scores, y)


def test_bad_settings_and_unfitted_use() -> None:
    with pytest.raises(ValueError, match="inputs"):
        TemperatureScaler(inputs="odds")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_temperature"):
        TemperatureScaler(min_temperature=2.0)
    with pytest.raises(RuntimeError, match="not fitted"):
        TemperatureScaler().transform(np.full((1, 2), 0.5))
    scaler = TemperatureScaler().fit(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="3 columns"):
        scaler.transform(np.full((1, 3), 1 / 3))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(np.full((1, 2), 0.5), np.array([0]), n_bins=0)
    with pytest.raises(ValueError, match="indicator matrix"):
        expected_calibration_error(np.full((2, 2), 0.5), np.array([0, 1, 0]))


# -- top-label calibration ---------------------------------------------------------------------


def distorted_top_label(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Over-confident softmax rows whose predicted class is right with probability
    ``sigmoid(0.8 * logit(confidence) - 0.5)``, a wrong label being any other class: the
    confidence is off by a shift in log-odds that one temperature (a scale) cannot express."""
    probs = sharpen(calibrated_softmax(n, k, seed)[0], 2.0)
    rng = np.random.default_rng(seed + 100)
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    right = rng.random(n) < expit(0.8 * logit(np.clip(confidence, 1e-7, 1 - 1e-7)) - 0.5)
    return probs, np.where(right, predicted, (predicted + rng.integers(1, k, size=n)) % k)


def selection_gap(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    """Estimated minus measured precision of the rows a target-precision flush selects: the
    largest prefix by confidence whose mean confidence reaches ``target``."""
    order = np.argsort(-confidence, kind="stable")
    running = np.cumsum(confidence[order]) / np.arange(1, len(order) + 1)
    chosen = order[: int((running >= target).sum())]
    assert len(chosen) > 100  # the flush selects something worth measuring
    return float(confidence[chosen].mean() - correct[chosen].mean())


def test_top_label_calibration_recovers_a_planted_platt_map() -> None:
    rng = np.random.default_rng(7)
    confidence = rng.uniform(0.3, 0.999, size=40_000)
    truth = expit(0.6 * np.log(confidence / (1 - confidence)) - 0.4)
    correct = rng.random(len(confidence)) < truth
    top = TopLabelCalibrator().fit(confidence, correct)
    assert top.slope_ == pytest.approx(0.6, abs=0.05)
    assert top.intercept_ == pytest.approx(-0.4, abs=0.08)
    assert top.n_ == len(confidence)
    np.testing.assert_allclose(top.transform(confidence), truth, atol=0.02)


def test_top_label_calibration_keeps_the_order_and_a_calibrated_confidence() -> None:
    rng = np.random.default_rng(8)
    confidence = rng.uniform(0.25, 1.0, size=20_000)
    correct = rng.random(len(confidence)) < confidence
    top = TopLabelCalibrator().fit(confidence, correct)
    assert top.slope_ == pytest.approx(1.0, abs=0.08)
    assert top.intercept_ == pytest.approx(0.0, abs=0.08)
    after = top.transform(confidence)
    assert after.dtype == np.float64 and after.shape == confidence.shape
    order = np.argsort(confidence, kind="stable")
    assert np.all(np.diff(after[order]) >= 0)


def test_a_small_all_correct_sample_stays_near_the_given_confidences() -> None:
    # unpenalised, the slope of an all-correct sample runs off to infinity; the prior holds it
    confidence = np.linspace(0.5, 0.99, 20)
    top = TopLabelCalibrator().fit(confidence, np.ones(20, dtype=bool))
    after = top.transform(confidence)
    assert np.isfinite([top.slope_, top.intercept_]).all()
    assert np.all((after > 0.5) & (after < 1.0))
    assert np.all(after >= confidence - 1e-9)  # every one was right: no confidence goes down
    assert 0 < top.slope_ < 3 and 0 < top.intercept_ < 3


def test_top_label_calibration_lets_a_flush_deliver_what_it_promises() -> None:
    probs, y = distorted_top_label(40_000, 4, seed=10)
    fit, held = slice(0, 2_000), slice(2_000, None)  # a 2,000-item evaluation sample
    correct = probs[held].argmax(axis=1) == y[held]
    temperature_only = TemperatureScaler().fit(probs[fit], y[fit]).transform(probs[held])
    top_label = ConfidenceCalibrator().fit(probs[fit], y[fit]).transform(probs[held])
    gap_before = selection_gap(temperature_only.max(axis=1).astype(np.float64), correct, 0.95)
    gap_after = selection_gap(top_label, correct, 0.95)
    assert abs(gap_before) > 0.03  # the temperature's estimate misses by over 3 points
    assert abs(gap_after) < 0.01
    np.testing.assert_array_equal(  # the same items in the same order, only the cut moves
        np.argsort(top_label, kind="stable"),
        np.argsort(temperature_only.max(axis=1), kind="stable"),
    )


@pytest.mark.parametrize(
    ("confidence", "correct", "message"),
    [
        (np.full((2, 2), 0.5), np.ones(2), "1-d"),
        (np.array([0.5, 1.5]), np.ones(2), r"\[0, 1\]"),
        (np.array([0.5, np.nan]), np.ones(2), "finite"),
        (np.array([0.5, 0.6]), np.ones(3), "shape"),
        (np.array([0.5, 0.6]), np.array([0, 2]), "0/1"),
        (np.zeros(0), np.zeros(0), "no rows"),
    ],
)
def test_top_label_bad_inputs_raise_clear_errors(
    confidence: np.ndarray, correct: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TopLabelCalibrator().fit(confidence, correct)


def test_top_label_bad_settings_and_unfitted_use() -> None:
    for bad in (-1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="prior_strength"):
            TopLabelCalibrator(prior_strength=bad)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not fitted"):
        TopLabelCalibrator().transform(np.array([0.5]))
    with pytest.raises(RuntimeError, match="not fitted"):
        ConfidenceCalibrator().transform(np.full((1, 2), 0.5))
    assert TopLabelCalibrator().fit(np.array([0.6, 0.7]), np.array([1, 0])).transform(
        np.zeros(0)
    ).shape == (0,)
