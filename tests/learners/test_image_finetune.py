"""ImageFineTuner: the real EfficientNet-Lite0 fine-tuned for an epoch or two on tiny PNGs the
tests draw (32 px, so a fit takes a second or two on a CPU): shapes, persistence, determinism,
what it learns from two plainly different classes, and the bad inputs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labella.images import ImageProblem
from labella.learners.image_finetune import ImageFineTuner
from tests.image_files import corrupt_bytes, image_bytes, truncated_jpeg

SIZE = 32
N_PER_CLASS = 10


def solid_png(colour: tuple[int, int, int], seed: int) -> bytes:
    """A PNG of one colour with a little per-image noise, so no two images are the same."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.asarray(colour) + rng.integers(-25, 26, size=(24, 24, 3)), 0, 255)
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def two_colours() -> tuple[list[bytes], np.ndarray]:
    """Reddish and bluish images, interleaved: class 0 and class 1."""
    images: list[bytes] = []
    for i in range(N_PER_CLASS):
        images.append(solid_png((220, 40, 40), seed=i))
        images.append(solid_png((40, 40, 220), seed=100 + i))
    return images, np.tile([0, 1], N_PER_CLASS)


def tiny(**overrides: object) -> ImageFineTuner:
    params: dict[str, object] = {
        "image_size": SIZE,
        "epochs": 1,
        "batch_size": 8,
        "random_state": 0,
        "num_threads": 1,
    }
    params.update(overrides)
    return ImageFineTuner(**params)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data() -> tuple[list[bytes], np.ndarray]:
    return two_colours()


@pytest.fixture(scope="module")
def fitted(data: tuple[list[bytes], np.ndarray]) -> ImageFineTuner:
    images, y = data
    return tiny(epochs=4).fit(images, y, n_classes=2)


def test_fit_predict_and_embed_shapes(
    fitted: ImageFineTuner, data: tuple[list[bytes], np.ndarray]
) -> None:
    images, _ = data
    proba = fitted.predict_proba(images, batch_size=7)
    assert proba.shape == (len(images), 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    vectors = fitted.embed(images, batch_size=5)
    assert vectors.shape == (len(images), 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert fitted.n_classes_ == 2 and fitted.n_train_ == len(images)
    assert fitted.fit_seconds_ > 0
    # batching does not change the answer; nothing is empty
    np.testing.assert_allclose(fitted.embed(images[:3], batch_size=64), vectors[:3], atol=1e-5)
    assert fitted.embed([]).shape[0] == 0


def test_it_learns_two_plainly_different_classes(
    fitted: ImageFineTuner, data: tuple[list[bytes], np.ndarray]
) -> None:
    images, y = data
    fresh = [solid_png((230, 30, 30), seed=500), solid_png((30, 30, 230), seed=501)]
    assert fitted.predict_proba(fresh).argmax(axis=1).tolist() == [0, 1]
    assert (fitted.predict_proba(images).argmax(axis=1) == y).mean() == 1.0


def test_save_and_load_give_identical_predictions(
    fitted: ImageFineTuner, data: tuple[list[bytes], np.ndarray], tmp_path: Path
) -> None:
    images, _ = data
    fitted.save(tmp_path / "model")
    loaded = ImageFineTuner.load(tmp_path / "model", num_threads=2)
    assert loaded.get_params() == {**fitted.get_params(), "num_threads": 2}
    np.testing.assert_allclose(
        loaded.predict_proba(images), fitted.predict_proba(images), atol=1e-6
    )
    np.testing.assert_allclose(loaded.embed(images), fitted.embed(images), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="no fine-tuned image model"):
        ImageFineTuner.load(tmp_path / "nothing-here")


def test_the_same_random_state_gives_the_same_model(
    data: tuple[list[bytes], np.ndarray],
) -> None:
    images, y = data
    few, labels = images[:12], y[:12]
    one = tiny(random_state=7).fit(few, labels, n_classes=2).embed(few)
    two = tiny(random_state=7).fit(few, labels, n_classes=2).embed(few)
    other = tiny(random_state=8).fit(few, labels, n_classes=2).embed(few)
    np.testing.assert_allclose(one, two, atol=1e-6)
    assert not np.allclose(one, other, atol=1e-4)  # the seed does reach the shuffles and crops


def test_progress_counts_the_optimiser_steps(data: tuple[list[bytes], np.ndarray]) -> None:
    images, y = data
    seen: list[tuple[int, int]] = []
    tiny(epochs=2, batch_size=8).fit(
        images, y, n_classes=2, progress=lambda done, total: seen.append((done, total))
    )
    # 20 images in batches of 8: 3 steps an epoch
    assert seen == [(step, 6) for step in range(1, 7)]


def test_bad_input_is_refused_by_name(data: tuple[list[bytes], np.ndarray]) -> None:
    images, y = data
    few, labels = images[:4], y[:4]
    with pytest.raises(ValueError, match="one class per image"):
        tiny().fit(few, labels[:3], n_classes=2)
    with pytest.raises(ValueError, match="n_classes must be at least 2"):
        tiny().fit(few, np.zeros(4, dtype=int), n_classes=1)
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        tiny().fit(few, np.array([0, 1, 2, 0]), n_classes=2)
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        tiny().fit(few, np.array([0, -1, 1, 0]), n_classes=2)
    with pytest.raises(ImageProblem, match=r"inputs\[2\]"):
        tiny().fit([*few[:2], corrupt_bytes(), few[3]], labels, n_classes=2)
    with pytest.raises(ImageProblem, match=r"inputs\[1\]"):
        tiny().decode([image_bytes(1, fmt="png"), truncated_jpeg()])
    with pytest.raises(TypeError, match=r"inputs\[1\] is str"):
        tiny().fit([few[0], "cat.png"], labels[:2], n_classes=2)  # type: ignore[list-item]
    with pytest.raises(RuntimeError, match="not fitted yet"):
        tiny().embed(few)
    for bad in ({"image_size": 0}, {"epochs": 0}, {"batch_size": True}, {"label_smoothing": 1.0}):
        with pytest.raises(ValueError):
            tiny(**bad)
