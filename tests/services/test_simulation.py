"""The simulation loop on planted problems: pure numpy features, no encoder, no database."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from labella.errors import InvalidInput
from labella.services.simulation import (
    TARGET_FRACTIONS,
    SimulationResult,
    label_schedule,
    load_labeled_texts,
    normalised_aulc,
    select_seed_set,
    simulate,
    stratified_holdout,
    to_markdown,
    write_report,
)
from labella.strategies import PoolView, QueryStrategy


def gaussian_blobs(
    n: int, *, n_classes: int = 3, dim: int = 8, spread: float = 2.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Planted classes: one Gaussian blob per class, overlapping enough that labels matter."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).normal(size=(n_classes, dim)) * 1.5
    y = rng.integers(0, n_classes, size=n)
    return centres[y] + rng.normal(scale=spread, size=(n, dim)), y.astype(np.int64)


def threshold_problem(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points, label = x0 > 0.3: only points in the narrow band around the threshold
    tell a linear model where it is, which is exactly what uncertainty sampling asks for."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n, 2))
    return X * 10.0, (X[:, 0] > 0.3).astype(np.int64)


@pytest.fixture(scope="module")
def blobs_result() -> SimulationResult:
    X, y = gaussian_blobs(900)
    return simulate(
        X,
        y,
        strategies=["margin", "random", "cluster_margin"],
        seeds=[0, 1],
        n_classes=3,
        initial=10,
        batch=15,
        budget=100,
        n_clusters=12,
    )


def test_result_shapes_and_schedule(blobs_result: SimulationResult) -> None:
    r = blobs_result
    assert r.strategies == ("margin", "random", "cluster_margin")
    assert r.seeds == (0, 1)
    # a partial last batch lands exactly on the budget
    assert r.n_labels.tolist() == [10, 25, 40, 55, 70, 85, 100]
    assert r.accuracy.shape == (3, 2, 7)
    assert ((r.accuracy >= 0) & (r.accuracy <= 1)).all()
    # no test set given: a stratified 20% of the 900 items is held out
    assert r.n_test + r.n_pool == 900 and abs(r.n_test - 180) <= 2
    assert 0.5 < r.full_pool_accuracy <= 1.0
    assert r.n_clusters == 12


def test_same_seeds_give_the_same_curves(blobs_result: SimulationResult) -> None:
    X, y = gaussian_blobs(900)
    again = simulate(
        X,
        y,
        strategies=["cluster_margin", "margin"],
        seeds=[1],
        n_classes=3,
        initial=10,
        batch=15,
        budget=100,
        n_clusters=12,
    )
    # a run depends on its seed and strategy only, not on what else was simulated with it
    np.testing.assert_array_equal(again.curves("margin")[0], blobs_result.curves("margin")[1])
    np.testing.assert_array_equal(
        again.curves("cluster_margin")[0], blobs_result.curves("cluster_margin")[1]
    )
    assert again.full_pool_accuracy == blobs_result.full_pool_accuracy


def test_different_seeds_start_from_different_seed_sets(blobs_result: SimulationResult) -> None:
    X, _ = gaussian_blobs(900)
    first = select_seed_set(X, 10, cold_start="kmeans_cold_start", seed=0)
    assert first.size == 10 and np.unique(first).size == 10
    np.testing.assert_array_equal(
        first, select_seed_set(X, 10, cold_start="kmeans_cold_start", seed=0)
    )
    assert set(first.tolist()) != set(
        select_seed_set(X, 10, cold_start="kmeans_cold_start", seed=1).tolist()
    )
    random_curves = blobs_result.curves("random")
    assert not np.array_equal(random_curves[0], random_curves[1])


def test_labels_to_reach_grow_with_the_target(blobs_result: SimulationResult) -> None:
    r = blobs_result
    for name in r.strategies:
        previous = np.zeros(len(r.seeds))
        for fraction in (0.5, *TARGET_FRACTIONS, 1.0):
            values = r.labels_to_reach(name, fraction * r.full_pool_accuracy).values
            filled = np.where(np.isnan(values), np.inf, values)
            assert (filled >= previous).all()
            previous = filled
    # a target every model meets from the start is reached with the seed set alone
    assert (r.labels_to_reach("margin", 0.0).values == r.initial).all()
    assert r.labels_to_reach("margin", 1.01).n_valid == 0


def test_aulc_is_a_mean_accuracy_in_unit_interval(blobs_result: SimulationResult) -> None:
    for name in blobs_result.strategies:
        aulc = blobs_result.aulc(name)
        curves = blobs_result.curves(name)
        assert ((aulc.values >= curves.min(axis=1)) & (aulc.values <= curves.max(axis=1))).all()
        assert ((aulc.values >= 0) & (aulc.values <= 1)).all()
    flat = normalised_aulc(np.array([10, 20, 40]), np.array([[0.5, 0.5, 0.5]]))
    assert flat[0] == pytest.approx(0.5)
    ramp = normalised_aulc(np.array([0, 10]), np.array([[0.0, 1.0]]))
    assert ramp[0] == pytest.approx(0.5)


def test_margin_beats_random_where_only_the_boundary_matters() -> None:
    X, y = threshold_problem(1500, seed=0)
    X_test, y_test = threshold_problem(1500, seed=1)
    result = simulate(
        X,
        y,
        X_test,
        y_test,
        strategies=["margin", "random"],
        seeds=[0, 1, 2, 3],
        n_classes=2,
        initial=10,
        batch=10,
        budget=100,
    )
    margin, random = result.aulc("margin").values, result.aulc("random").values
    # paired by seed (same seed set): margin's learning curve lies higher on every seed
    assert (margin > random).all(), (margin, random)
    target = 0.99 * result.full_pool_accuracy
    to_target = {
        name: np.nan_to_num(result.labels_to_reach(name, target).values, nan=np.inf)
        for name in ("margin", "random")
    }
    assert result.labels_to_reach("margin", target).complete
    assert to_target["margin"].mean() < to_target["random"].mean()
    headline = result.summary()[0].labels_to_reference
    assert headline is not None and headline.complete


def test_self_training_replays_a_self_training_project() -> None:
    # three classes around their own axes on the unit sphere (like sentence embeddings): with a
    # handful of labels the boundary is left to chance, and the unlabeled bulk fixes it
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 1200)
    X = rng.normal(size=(1200, 30))
    X[np.arange(1200), y] += 2.5
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    runs = {
        flag: simulate(
            X[:800],
            y[:800],
            X[800:],
            y[800:],
            strategies=["margin"],
            seeds=[0, 1],
            n_classes=3,
            initial=6,
            batch=6,
            budget=24,
            cold_start="random",
            self_training=flag,
        )
        for flag in (False, True)
    }
    plain, trained = (runs[flag].accuracy[0] for flag in (False, True))
    # the same seed set, so the first models differ only by the self-training
    assert (trained[:, 0] > plain[:, 0] + 0.05).all(), (trained[:, 0], plain[:, 0])
    assert (runs[True].aulc("margin").values > runs[False].aulc("margin").values).all()
    assert runs[True].self_training and not runs[False].self_training
    assert "self-trained on the unlabeled pool" in to_markdown(runs[True])
    assert "self-trained" not in to_markdown(runs[False])


def test_custom_strategy_instances_run_under_their_label() -> None:
    class FirstUnlabeled(QueryStrategy):
        name = "first_unlabeled"

        def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
            return pool.unlabeled_indices()[:n]

    X, y = gaussian_blobs(300, n_classes=2)
    result = simulate(
        X,
        y,
        strategies=[("in order", FirstUnlabeled())],
        seeds=[0],
        n_classes=2,
        initial=10,
        batch=10,
        budget=30,
        cold_start="random",
    )
    assert result.strategies == ("in order",)
    assert result.reference_accuracy is None


def test_budget_is_capped_at_the_pool() -> None:
    X, y = gaussian_blobs(100, n_classes=2)
    result = simulate(
        X, y, strategies=["margin"], seeds=[0], n_classes=2, initial=10, batch=25, budget=1000
    )
    assert result.budget == 80 and result.n_labels[-1] == 80
    assert result.accuracy_at_budget("margin").values[0] == pytest.approx(result.full_pool_accuracy)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategies": ["margn"]}, "unknown strategy 'margn'; known strategies: "),
        ({"strategies": ["bald"]}, "strategy 'bald' cannot be simulated (it needs prob_samples)"),
        ({"strategies": ["ml_margin"]}, "cannot be simulated (it is for multi-label data)"),
        ({"strategies": []}, "give at least one strategy"),
        ({"strategies": ["margin", "margin"]}, "listed more than once"),
        ({"seeds": []}, "give at least one seed"),
        ({"budget": 5}, "budget (5) must be at least the initial seed set (10 labels)"),
        ({"batch": 0}, "batch must be a positive integer"),
        ({"cold_start": "typiclust"}, "unknown cold start 'typiclust'"),
        ({"n_classes": 1}, "at least 2 classes"),
        ({"head": "forest"}, "unknown head kind 'forest'"),
        ({"head_params": {"C": -1.0}}, "C must be a positive number"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(kwargs: dict, message: str) -> None:
    X, y = gaussian_blobs(200, n_classes=2)
    settings: dict = {
        "strategies": ["margin"],
        "seeds": [0],
        "n_classes": 2,
        "initial": 10,
        "batch": 10,
        "budget": 50,
        **kwargs,
    }
    with pytest.raises(InvalidInput) as info:
        simulate(X, y, **settings)
    assert message in info.value.message
    if "known strategies" in message:
        assert "margin" in info.value.message and "cluster_margin" in info.value.message
        assert "bald" not in info.value.message


def test_single_class_pool_is_refused() -> None:
    X, _ = gaussian_blobs(200, n_classes=2)
    with pytest.raises(InvalidInput, match="labels of 1 class"):
        simulate(X, np.zeros(200, dtype=np.int64), strategies=["random"], seeds=[0], n_classes=2)


def test_mismatched_arrays_are_refused() -> None:
    X, y = gaussian_blobs(200, n_classes=2)
    with pytest.raises(InvalidInput, match="one label per row"):
        simulate(X, y[:-1], strategies=["random"], seeds=[0], n_classes=2)
    with pytest.raises(InvalidInput, match=r"labels must lie in \[0, 2\)"):
        simulate(X, y + 1, strategies=["random"], seeds=[0], n_classes=2)
    with pytest.raises(InvalidInput, match="test features have 3 columns"):
        simulate(X, y, X[:, :3], y, strategies=["random"], seeds=[0], n_classes=2)


def test_stratified_holdout_keeps_class_shares() -> None:
    y = np.array([0] * 50 + [1] * 10 + [2] * 1)
    test, pool = stratified_holdout(y, 0.2, seed=0)
    assert np.intersect1d(test, pool).size == 0 and test.size + pool.size == y.size
    assert np.bincount(y[test], minlength=3).tolist() == [10, 2, 0]


def test_label_schedule() -> None:
    assert label_schedule(initial=20, batch=20, budget=100).tolist() == [20, 40, 60, 80, 100]
    assert label_schedule(initial=20, batch=30, budget=70).tolist() == [20, 50, 70]
    assert label_schedule(initial=20, batch=20, budget=20).tolist() == [20]


def test_report_files(blobs_result: SimulationResult, tmp_path: Path) -> None:
    files = write_report(blobs_result, tmp_path / "out", title="blobs")
    with files.csv.open() as stream:
        rows = list(csv.DictReader(stream))
    assert [row["strategy"] for row in rows] == list(blobs_result.strategies)
    margin = rows[0]
    stat = blobs_result.aulc("margin")
    assert float(margin["aulc_mean"]) == pytest.approx(stat.mean, abs=1e-5)
    assert len(margin["aulc_per_seed"].split()) == 2
    assert "labels_to_random_at_budget_mean" in margin
    markdown = files.markdown.read_text()
    assert markdown == "# blobs\n\n" + to_markdown(blobs_result)
    assert "| margin |" in markdown and "| to 95% |" in markdown
    assert files.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in files.svg.read_text()
    with files.curves_csv.open() as stream:
        assert sum(1 for _ in stream) == 1 + 3 * 2 * 7


def test_load_labeled_texts_file_and_folder(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text(
        "text,label\nthe striker scored twice,sport\n"
        "the striker  scored twice,sport\n"  # a duplicate once whitespace is normalised
        "bake the bread for an hour,food\nno label here,\n",
        encoding="utf-8",
    )
    loaded = load_labeled_texts(data)
    assert loaded.classes == ["food", "sport"]
    assert loaded.labels.tolist() == [1, 0]
    assert (loaded.skipped_duplicates, loaded.skipped_unlabeled) == (1, 1)

    folder = tmp_path / "folder"
    for label, texts in {"pos": ["great film", "loved it"], "neg": ["dull plot"]}.items():
        (folder / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / label / f"{i}.txt").write_text(text + "\n", encoding="utf-8")
    from_folder = load_labeled_texts(folder)
    assert from_folder.classes == ["neg", "pos"]
    assert sorted(zip(from_folder.texts, from_folder.labels.tolist(), strict=True)) == [
        ("dull plot", 0),
        ("great film", 1),
        ("loved it", 1),
    ]

    with pytest.raises(InvalidInput, match="no label column"):
        (tmp_path / "plain.csv").write_text("text\nhello\n", encoding="utf-8")
        load_labeled_texts(tmp_path / "plain.csv")
    with pytest.raises(InvalidInput, match="labels that the pool does not: 'sport'"):
        load_labeled_texts(data, classes=["food", "travel"])
