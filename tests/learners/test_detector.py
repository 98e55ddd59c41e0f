"""The CenterNet detector on EfficientNet-Lite0: it learns a tiny synthetic set, round-trips
through save/load, continues from a previous version, and plug-ins register by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labella.learners.detection_metrics import evaluate_detections
from labella.learners.detector import (
    DEFAULT_DETECTOR,
    CenterNetDetector,
    detector_names,
    load_detector,
    make_detector,
    register_detector,
    summarise_boxes,
    unregister_detector,
)
from tests.learners.shapes import png_bytes, shape_images

FAST = {"input_size": 96, "batch_size": 4, "epochs": 1000, "min_steps": 0, "lr": 3e-3}


def _map50(detector: Any, images: list[np.ndarray], truth: list[list[Any]]) -> float:
    found = detector.predict(images)
    metrics = evaluate_detections(
        {i: list(boxes) for i, boxes in enumerate(truth)},
        {
            i: [
                (b["class_index"], b["x_min"], b["y_min"], b["x_max"], b["y_max"], b["score"])
                for b in boxes
            ]
            for i, boxes in enumerate(found)
        },
    )
    assert metrics.map50 is not None
    return metrics.map50


@pytest.fixture(scope="module")
def shapes() -> dict[str, Any]:
    train_images, train_boxes = shape_images(32, seed=0)
    test_images, test_boxes = shape_images(16, seed=1)
    return {"train": (train_images, train_boxes), "test": (test_images, test_boxes)}


@pytest.fixture(scope="module")
def fitted(shapes: dict[str, Any]) -> CenterNetDetector:
    images, boxes = shapes["train"]
    return CenterNetDetector(**FAST, max_steps=60, random_state=0).fit(images, boxes, 2)


def test_learns_shapes_to_a_high_map(fitted: CenterNetDetector, shapes: dict[str, Any]) -> None:
    assert fitted.n_steps_ == 60
    assert fitted.loss_history_[-1] < fitted.loss_history_[0] / 5
    assert _map50(fitted, *shapes["test"]) >= 0.8


def test_boxes_are_in_original_pixels(fitted: CenterNetDetector, shapes: dict[str, Any]) -> None:
    """An image at twice the size letterboxes to the same input: its boxes come back at twice
    the coordinates; and a non-square image's boxes land on its objects."""
    from PIL import Image

    images = shapes["test"][0][:4]
    doubled = [
        np.asarray(Image.fromarray(a).resize((256, 256), Image.Resampling.NEAREST)) for a in images
    ]
    keys = ("x_min", "y_min", "x_max", "y_max")
    for small, large in zip(fitted.predict(images), fitted.predict(doubled), strict=True):
        confident = [b for b in small if b["score"] >= 0.3]
        assert confident
        for a in confident:
            assert any(
                b["class_index"] == a["class_index"]
                and all(b[k] == pytest.approx(2 * a[k], abs=3.0) for k in keys)
                for b in large
            )
    image, truth = images[0], shapes["test"][1][0]
    tall = np.concatenate([image, np.repeat(image[-1:], 32, axis=0)])  # 160 x 128 px
    found = [b for b in fitted.predict([tall])[0] if b["score"] >= 0.3]
    assert sorted(b["class_index"] for b in found) == sorted(t[0] for t in truth)
    for cls, *box in truth:
        assert any(
            b["class_index"] == cls
            and all(abs(b[k] - v) < 6 for k, v in zip(keys, box, strict=True))
            for b in found
        )


def test_predict_accepts_file_bytes_and_returns_sorted_scores(
    fitted: CenterNetDetector, shapes: dict[str, Any]
) -> None:
    arrays = shapes["test"][0][:3]
    from_bytes = fitted.predict([png_bytes(a) for a in arrays])
    assert from_bytes == fitted.predict(arrays)
    for boxes in from_bytes:
        scores = [b["score"] for b in boxes]
        assert scores == sorted(scores, reverse=True)
        assert all(s >= fitted.score_floor for s in scores)


def test_save_load_round_trip_gives_identical_predictions(
    fitted: CenterNetDetector, shapes: dict[str, Any], tmp_path: Path
) -> None:
    images = shapes["test"][0][:4]
    fitted.save(tmp_path / "v1")
    loaded = load_detector(tmp_path / "v1")
    assert isinstance(loaded, CenterNetDetector)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.n_classes_ == 2 and loaded.n_steps_ == fitted.n_steps_
    assert loaded.predict(images) == fitted.predict(images)


def test_incremental_fit_starts_from_the_previous_weights(
    fitted: CenterNetDetector, shapes: dict[str, Any]
) -> None:
    """A few gentle steps from the previous version keep its skill (a third class is added
    meanwhile); the same steps from ImageNet's weights alone are far from it."""
    images, boxes = shapes["train"]
    few = {**FAST, "max_steps": 4, "lr": 3e-4, "random_state": 1}
    continued = CenterNetDetector(**few).fit(images[:16], boxes[:16], 3, init_from=fitted)
    assert continued.n_classes_ == 3
    fresh = CenterNetDetector(**few).fit(images[:16], boxes[:16], 2)
    continued_map = _map50(continued, *shapes["test"])
    assert continued_map >= 0.8
    assert _map50(fresh, *shapes["test"]) < 0.3


def test_same_random_state_same_model(shapes: dict[str, Any]) -> None:
    images, boxes = shapes["train"]
    params = {**FAST, "max_steps": 2, "random_state": 7}
    a = CenterNetDetector(**params).fit(images[:8], boxes[:8], 2)
    b = CenterNetDetector(**params).fit(images[:8], boxes[:8], 2)
    assert a.loss_history_ == b.loss_history_
    assert a.predict(images[8:10]) == b.predict(images[8:10])


def test_an_image_without_boxes_is_a_valid_training_example(shapes: dict[str, Any]) -> None:
    images, _ = shapes["train"]
    detector = CenterNetDetector(**{**FAST, "max_steps": 1}).fit(images[:2], [[], []], 1)
    assert detector.n_classes_ == 1


@pytest.mark.parametrize(
    ("boxes", "problem"),
    [
        ([[(2, 0, 0, 10, 10)]], "image 0: box 0 has class 2"),
        ([[(0, 10, 10, 10, 20)]], "no positive area"),
        ([[(0, 1, 2)]], "must be (class_index"),
        ([[{"class_index": 0, "x_min": 1}]], "has no 'y_min'"),
        ([[], []], "1 images but 2 box lists"),
    ],
)
def test_bad_boxes_are_named(boxes: list[Any], problem: str) -> None:
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=None) as caught:
        CenterNetDetector(**FAST).fit([image], boxes, 2)
    assert problem in str(caught.value)


def test_bad_hyperparameters_and_unfitted_use() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        CenterNetDetector(input_size=100).fit([np.zeros((8, 8, 3), np.uint8)], [[]], 1)
    with pytest.raises(RuntimeError, match="not fitted"):
        CenterNetDetector().predict([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(TypeError, match="positional argument"):
        CenterNetDetector(128)  # type: ignore[misc]


def test_summary_of_boxes_follows_the_documented_rule() -> None:
    boxes = [
        {"class_index": 1, "score": 0.9},
        {"class_index": 1, "score": 0.35},
        {"class_index": 0, "score": 0.1},
    ]
    predicted, probs, confidence = summarise_boxes(boxes, 3)
    assert predicted == [1]
    assert probs == [0.1, 0.9, 0.0]
    assert confidence == pytest.approx(0.65)  # the 0.35 box: max(0.35, 0.65)
    assert summarise_boxes([], 2) == ([], [0.0, 0.0], 1.0)


class _ConstantDetector:
    """A plug-in: predicts one fixed box on every image."""

    name = "constant-box"

    def __init__(self, *, side: float = 4.0) -> None:
        self.side = side

    def fit(self, images: Any, boxes_per_image: Any, n_classes: int, **_: Any) -> _ConstantDetector:
        return self

    def predict(self, images: Any) -> list[list[dict[str, Any]]]:
        box = {"class_index": 0, "x_min": 0.0, "y_min": 0.0, "x_max": self.side, "y_max": self.side}
        return [[{**box, "score": 1.0}] for _ in images]

    def save(self, directory: Any) -> None:
        import json

        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "detector.json").write_text(
            json.dumps({"name": self.name, "params": {"side": self.side}})
        )

    def load(self, directory: Any) -> _ConstantDetector:
        import json

        self.side = json.loads((Path(directory) / "detector.json").read_text())["params"]["side"]
        return self


def test_registry_builds_plugins_by_name(tmp_path: Path) -> None:
    assert DEFAULT_DETECTOR in detector_names()
    assert isinstance(make_detector(DEFAULT_DETECTOR, input_size=160), CenterNetDetector)
    register_detector("constant-box", _ConstantDetector)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_detector("constant-box", _ConstantDetector)
        plugin = make_detector("constant-box", side=7.0)
        assert plugin.predict([b"x"])[0][0]["x_max"] == 7.0
        plugin.save(tmp_path / "plug")
        assert load_detector(tmp_path / "plug").side == 7.0
        assert "constant-box" in detector_names()
    finally:
        unregister_detector("constant-box")
    with pytest.raises(ValueError, match="unknown detector 'constant-box'; known detectors"):
        make_detector("constant-box")
    with pytest.raises(TypeError, match="callable"):
        register_detector("x", 3)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no saved detector"):
        load_detector(tmp_path / "nothing")


def test_an_entry_point_plugin_registers_its_detector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package with an entry point in the group ``labella.detectors`` (a real dist-info on the
    path) is loaded the first time an unknown name is asked for."""
    import labella.learners.detector as registry

    (tmp_path / "labella_demo_detector.py").write_text(
        "from labella.learners.detector import register_detector\n"
        "class Demo:\n"
        "    name = 'demo-plugin'\n"
        "    def __init__(self, **params): self.params = params\n"
        "    def fit(self, *a, **k): return self\n"
        "    def predict(self, images): return [[] for _ in images]\n"
        "    def save(self, directory): pass\n"
        "    def load(self, directory): return self\n"
        "def setup():\n"
        "    register_detector('demo-plugin', Demo)\n"
    )
    dist = tmp_path / "labella_demo_detector-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: labella-demo-detector\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[labella.detectors]\ndemo = labella_demo_detector:setup\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    try:
        plugin = make_detector("demo-plugin", input_size=64)
        assert plugin.params == {"input_size": 64}
        assert plugin.predict([b"x", b"y"]) == [[], []]
    finally:
        unregister_detector("demo-plugin")
