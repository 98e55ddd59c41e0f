"""The text fine-tuning learners on the real MiniLM encoder: SetFit (contrastive pairs) and the
end-to-end classifier fine-tuning, each then a head."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labella.learners.encoders import get_text_encoder
from labella.learners.finetune import (
    ClassifierFineTuner,
    SetFitLearner,
    TextFineTuner,
    make_pairs,
)
from labella.learners.heads import make_head

SPORT = [
    "The striker scored twice in the second half.",
    "Our team won the championship final last night.",
    "The goalkeeper saved a penalty in extra time.",
    "She ran the marathon in under three hours.",
    "The coach was sacked after five straight defeats.",
    "He hit a home run in the ninth inning.",
    "The tennis match went to a fifth set tiebreak.",
    "The referee showed him a red card for the tackle.",
    "The cyclists climbed the mountain stage in heavy rain.",
    "They signed a new point guard before the playoffs.",
    "The swimmer broke the world record in the relay.",
    "Fans cheered as the home side equalised late.",
]
COOKING = [
    "Simmer the tomato sauce for twenty minutes.",
    "Whisk the eggs with sugar until pale and fluffy.",
    "Knead the bread dough and let it rise overnight.",
    "Season the steak with salt before searing it.",
    "Chop the onions finely and fry them in butter.",
    "Bake the cake at 180 degrees for forty minutes.",
    "Add a pinch of cumin to the lentil soup.",
    "Roast the vegetables with olive oil and garlic.",
    "Let the pastry chill in the fridge before rolling.",
    "Stir the risotto slowly while adding warm stock.",
    "Marinate the chicken in yogurt and spices.",
    "Grate some parmesan over the pasta before serving.",
]
HELD_OUT = [
    ("The midfielder was injured during the warm-up.", 0),
    ("The sprinter won gold at the Olympics.", 0),
    ("The rugby team lost the derby by three points.", 0),
    ("The boxer was knocked out in the first round.", 0),
    ("The hockey season opens next weekend.", 0),
    ("Fold the cream gently into the chocolate.", 1),
    ("Boil the potatoes until they are soft.", 1),
    ("Sprinkle fresh basil over the pizza.", 1),
    ("Fry the fish in a hot pan for two minutes.", 1),
    ("Mix the flour and butter into crumbs.", 1),
]
TEXTS = SPORT + COOKING
LABELS = np.array([0] * len(SPORT) + [1] * len(COOKING))
TEST_TEXTS = [text for text, _ in HELD_OUT]
TEST_LABELS = np.array([label for _, label in HELD_OUT])


def tiny(**overrides: Any) -> SetFitLearner:
    """Settings small enough for a test: 96 pairs, 12 steps of 8 pairs."""
    settings: dict[str, Any] = {"n_iterations": 2, "batch_size": 8, "learning_rate": 5e-5}
    return SetFitLearner(**{**settings, **overrides})


def class_gap(vectors: np.ndarray) -> float:
    """Mean cosine similarity of held-out texts of the same class minus that of different ones."""
    similarity = vectors @ vectors.T
    same = TEST_LABELS[:, None] == TEST_LABELS[None, :]
    off_diagonal = ~np.eye(len(TEST_LABELS), dtype=bool)
    return float(similarity[same & off_diagonal].mean() - similarity[~same].mean())


@pytest.fixture(scope="module")
def fitted() -> SetFitLearner:
    return tiny(random_state=0).fit(TEXTS, LABELS)


def test_make_pairs_are_balanced_seeded_and_correct() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    first, second, target = make_pairs(labels, n_iterations=3, rng=np.random.default_rng(0))
    assert len(target) == 2 * 3 * len(labels)
    assert target.sum() == len(target) / 2
    same = labels[first] == labels[second]
    np.testing.assert_array_equal(same, target == 1)
    # A positive partner is another text unless the class has only one.
    positives = target == 1
    assert (first[positives] != second[positives])[labels[first[positives]] != 2].all()
    # Every text appears as the first of 2 pairs per round.
    np.testing.assert_array_equal(np.bincount(first), np.full(len(labels), 6))
    again = make_pairs(labels, n_iterations=3, rng=np.random.default_rng(0))
    for ours, theirs in zip((first, second, target), again, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_fine_tuning_moves_the_encoder_and_classifies_held_out_texts(
    fitted: SetFitLearner,
) -> None:
    base = get_text_encoder().encode(TEST_TEXTS)
    tuned = fitted.encode(TEST_TEXTS)
    assert tuned.shape == (len(TEST_TEXTS), 384)
    assert tuned.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(tuned, axis=1), 1.0, rtol=1e-5)
    assert np.abs(tuned - base).max() > 1e-3
    assert fitted.n_pairs_ == 2 * 2 * len(TEXTS)
    assert fitted.n_steps_ == 12

    frozen = make_head("linear", n_classes=2, random_state=0)
    frozen.fit(get_text_encoder().encode(TEXTS), LABELS)
    frozen_accuracy = float((frozen.predict(base) == TEST_LABELS).mean())
    probs = fitted.predict_proba(TEST_TEXTS)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float((fitted.predict(TEST_TEXTS) == TEST_LABELS).mean())
    assert accuracy >= max(0.8, frozen_accuracy)


def test_fine_tuning_separates_the_classes_more_than_the_base_encoder(
    fitted: SetFitLearner,
) -> None:
    base = class_gap(get_text_encoder().encode(TEST_TEXTS))
    assert class_gap(fitted.encode(TEST_TEXTS)) > base + 0.05


def test_save_and_load_round_trip(fitted: SetFitLearner, tmp_path: Path) -> None:
    target = tmp_path / "models" / "setfit-1"
    fitted.save(target)
    loaded = SetFitLearner.load(target)
    np.testing.assert_array_equal(
        loaded.predict_proba(TEST_TEXTS), fitted.predict_proba(TEST_TEXTS)
    )
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    assert loaded.n_iterations == 2 and loaded.random_state == 0
    assert loaded.train_losses_ == fitted.train_losses_
    # Saving again replaces the model in place and leaves no staging directories behind.
    fitted.save(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["setfit-1"]


def test_same_seed_gives_the_same_model_and_progress_counts_steps(
    fitted: SetFitLearner,
) -> None:
    calls: list[tuple[int, int]] = []
    again = tiny(random_state=0).fit(
        TEXTS, LABELS, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(step, 12) for step in range(1, 13)]
    np.testing.assert_allclose(again.encode(TEST_TEXTS), fitted.encode(TEST_TEXTS), atol=1e-6)


def test_string_labels_and_n_classes() -> None:
    names = np.where(LABELS == 0, "sport", "cooking")
    learner = SetFitLearner(random_state=1, n_iterations=1, batch_size=16, max_pairs=16)
    learner.fit(TEXTS, names)
    assert learner.n_pairs_ == 16
    assert learner.classes_.tolist() == ["cooking", "sport"]
    assert set(learner.predict(TEST_TEXTS[:2])) <= {"cooking", "sport"}
    # A project with a third label nobody has used yet still gets a column for it.
    wide = SetFitLearner(random_state=1, n_iterations=1, batch_size=16, max_pairs=16)
    wide.fit(TEXTS, LABELS, n_classes=3)
    assert wide.predict_proba(TEST_TEXTS[:2]).shape == (2, 3)


@pytest.mark.parametrize(
    ("texts", "labels", "message"),
    [
        (TEXTS[:4], [0, 0, 0, 0], "at least 2 classes"),
        (TEXTS[:4], [0, 1, 0], "4 texts but 3 labels"),
        (TEXTS[:2], [[0, 1], [1, 0]], "single-label"),
    ],
)
def test_bad_training_input_raises_value_error(
    texts: list[str], labels: list[object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        tiny().fit(texts, labels)


def test_bad_settings_and_unfitted_use(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_iterations"):
        SetFitLearner(n_iterations=0)
    with pytest.raises(ValueError, match="learning_rate"):
        SetFitLearner(learning_rate=-1.0)
    with pytest.raises(ValueError, match="unknown base encoder 'nope'"):
        SetFitLearner(base_encoder="nope")
    with pytest.raises(ValueError, match="unknown head kind"):
        SetFitLearner(head="forest")
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 2\)"):
        tiny().fit(TEXTS[:2], [0, 2], n_classes=2)
    with pytest.raises(TypeError, match="texts"):
        tiny().fit("one string", [0])
    with pytest.raises(RuntimeError, match="not fitted"):
        SetFitLearner().predict_proba(["text"])
    with pytest.raises(FileNotFoundError, match="no saved fine-tuned learner"):
        SetFitLearner.load(tmp_path)


def tiny_classifier(**overrides: Any) -> ClassifierFineTuner:
    """Settings small enough for a test: 4 epochs of 3 steps of 8 texts."""
    settings: dict[str, Any] = {
        "epochs": 4,
        "batch_size": 8,
        "learning_rate": 5e-5,
        "n_members": 1,
    }
    return ClassifierFineTuner(**{**settings, **overrides})


@pytest.fixture(scope="module")
def classifier() -> ClassifierFineTuner:
    return tiny_classifier(random_state=0).fit(TEXTS, LABELS)


def test_classifier_fine_tuning_moves_the_encoder_and_classifies_held_out_texts(
    classifier: ClassifierFineTuner,
) -> None:
    base = get_text_encoder().encode(TEST_TEXTS)
    tuned = classifier.encode(TEST_TEXTS)
    assert tuned.shape == (len(TEST_TEXTS), 384) and tuned.dtype == np.float32
    assert np.abs(tuned - base).max() > 1e-3
    assert classifier.n_steps_ == 4 * 3
    # The loss falls as the encoder and the layer learn the two classes.
    assert classifier.train_losses_[-1] < classifier.train_losses_[0]
    accuracy = float((classifier.predict(TEST_TEXTS) == TEST_LABELS).mean())
    assert accuracy >= 0.8


def test_classifier_fine_tuning_pulls_each_class_together(
    classifier: ClassifierFineTuner,
) -> None:
    base = class_gap(get_text_encoder().encode(TEST_TEXTS))
    assert class_gap(classifier.encode(TEST_TEXTS)) > base + 0.05


def test_classifier_is_seeded_and_reports_each_step(classifier: ClassifierFineTuner) -> None:
    calls: list[tuple[int, int]] = []
    again = tiny_classifier(random_state=0).fit(
        TEXTS, LABELS, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(step, 12) for step in range(1, 13)]
    np.testing.assert_allclose(again.encode(TEST_TEXTS), classifier.encode(TEST_TEXTS), atol=1e-6)


def test_a_saved_learner_loads_as_its_own_method(
    classifier: ClassifierFineTuner, fitted: SetFitLearner, tmp_path: Path
) -> None:
    classifier.save(tmp_path / "classifier")
    fitted.save(tmp_path / "setfit")
    loaded = TextFineTuner.load(tmp_path / "classifier")
    assert isinstance(loaded, ClassifierFineTuner)
    assert loaded.scale == classifier.scale and loaded.epochs == 4
    assert loaded.train_losses_ == classifier.train_losses_
    np.testing.assert_array_equal(
        loaded.predict_proba(TEST_TEXTS), classifier.predict_proba(TEST_TEXTS)
    )
    assert isinstance(TextFineTuner.load(tmp_path / "setfit"), SetFitLearner)
    with pytest.raises(ValueError, match="holds a 'classifier' learner, not a SetFitLearner"):
        SetFitLearner.load(tmp_path / "classifier")


def test_the_linear_layer_trains_another_encoder_and_is_remembered(
    classifier: ClassifierFineTuner, tmp_path: Path
) -> None:
    assert classifier.layer == "cosine"  # the default
    linear = tiny_classifier(random_state=0, layer="linear").fit(TEXTS, LABELS)
    assert linear.train_losses_[-1] < linear.train_losses_[0]
    assert np.abs(linear.encode(TEST_TEXTS) - classifier.encode(TEST_TEXTS)).max() > 1e-3
    assert float((linear.predict(TEST_TEXTS) == TEST_LABELS).mean()) >= 0.8
    linear.save(tmp_path / "linear")
    assert TextFineTuner.load(tmp_path / "linear").layer == "linear"  # type: ignore[attr-defined]


def test_a_classifier_saved_before_the_layer_choice_loads_as_cosine(tmp_path: Path) -> None:
    classifier = tiny_classifier(random_state=0, layer="linear", epochs=1).fit(TEXTS, LABELS)
    saved = classifier.save(tmp_path / "old")
    state = json.loads((saved / "learner.json").read_text())
    del state["params"]["layer"], state["params"]["n_members"]
    (saved / "learner.json").write_text(json.dumps(state))
    loaded = TextFineTuner.load(saved)
    assert isinstance(loaded, ClassifierFineTuner) and loaded.layer == "cosine"
    assert loaded.n_members == 1 and loaded.dim_ == 384
    np.testing.assert_array_equal(
        loaded.predict_proba(TEST_TEXTS), classifier.predict_proba(TEST_TEXTS)
    )


def test_an_ensemble_fits_members_with_spaced_seeds_and_joins_their_vectors(
    classifier: ClassifierFineTuner, tmp_path: Path
) -> None:
    calls: list[tuple[int, int]] = []
    pair = tiny_classifier(random_state=0, n_members=2).fit(
        TEXTS, LABELS, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(step, 24) for step in range(1, 25)]  # both members' steps, counted on
    assert pair.n_steps_ == 24 and pair.dim_ == 768 and len(pair.members_) == 2
    vectors = pair.encode(TEST_TEXTS)
    assert vectors.shape == (len(TEST_TEXTS), 768) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # member 0 is the one-member learner of the same seed; member 1 is seeded 100 further on
    first, second = pair.members_
    np.testing.assert_allclose(first.encode(TEST_TEXTS), classifier.encode(TEST_TEXTS), atol=1e-6)
    assert second.random_state == 100
    assert np.abs(second.encode(TEST_TEXTS) - first.encode(TEST_TEXTS)).max() > 1e-3
    assert float((pair.predict(TEST_TEXTS) == TEST_LABELS).mean()) >= 0.8
    # the joined head learned the vectors encode() gives the training texts (the members' own,
    # kept from their fit rather than encoded twice)
    refit = make_head("linear", n_classes=len(pair.classes_), random_state=0)
    refit.fit(pair.encode(TEXTS), np.searchsorted(pair.classes_, LABELS))
    np.testing.assert_allclose(pair.head_.coef_, refit.coef_, atol=1e-4)
    assert all(list(m.classes_) == list(range(len(pair.classes_))) for m in pair.members_)
    loaded = TextFineTuner.load(pair.save(tmp_path / "pair"))
    assert isinstance(loaded, ClassifierFineTuner)
    assert loaded.n_members == 2 and loaded.dim_ == 768
    np.testing.assert_array_equal(loaded.predict_proba(TEST_TEXTS), pair.predict_proba(TEST_TEXTS))


def test_classifier_bad_settings_and_input() -> None:
    with pytest.raises(ValueError, match="scale must be a positive number"):
        ClassifierFineTuner(scale=0)
    with pytest.raises(ValueError, match="n_members must be a positive integer, got 0"):
        ClassifierFineTuner(n_members=0)
    with pytest.raises(ValueError, match="layer must be one of cosine, linear, got 'softmax'"):
        ClassifierFineTuner(layer="softmax")
    with pytest.raises(ValueError, match="layer_learning_rate"):
        ClassifierFineTuner(layer_learning_rate=2.0)
    with pytest.raises(ValueError, match="epochs"):
        ClassifierFineTuner(epochs=0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        tiny_classifier().fit(TEXTS[:3], [1, 1, 1])
    with pytest.raises(RuntimeError, match="ClassifierFineTuner is not fitted"):
        ClassifierFineTuner().encode(["text"])


@pytest.mark.parametrize(("kind", "multi_label"), [("linear", False), ("mlp", True)])
def test_head_state_round_trip_keeps_predictions_and_online_updates(
    kind: str, multi_label: bool
) -> None:
    """``save``/``load`` rely on a head's ``get_state``/``set_state``."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8))
    y = (X[:, :3] > 0).astype(int) if multi_label else (X[:, 0] > 0).astype(int)
    n_classes = 3 if multi_label else 2
    head = make_head(kind, n_classes=n_classes, multi_label=multi_label, random_state=0)
    head.fit(X[:40], y[:40])
    state = head.get_state()  # type: ignore[attr-defined]
    twin = make_head(kind, n_classes=n_classes, multi_label=multi_label, random_state=0)
    twin.set_state({name: value.copy() for name, value in state.items()})  # type: ignore[attr-defined]
    np.testing.assert_array_equal(twin.predict_proba(X), head.predict_proba(X))
    head.partial_fit(X[40:], y[40:])
    twin.partial_fit(X[40:], y[40:])
    np.testing.assert_allclose(twin.predict_proba(X), head.predict_proba(X), atol=1e-6)
    wrong = make_head(kind, n_classes=n_classes + 1, multi_label=multi_label, random_state=0)
    with pytest.raises(ValueError, match="does not fit"):
        wrong.set_state(state)  # type: ignore[attr-defined]
