"""Text encoders: the real MiniLM model, loaded offline, and the encoder registry."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

import labella
from labella.learners.encoders import (
    MiniLMEncoder,
    TextEncoder,
    get_text_encoder,
    register_text_encoder,
    text_encoder_names,
)

SENTENCES = [
    "The cat sat quietly on the warm windowsill.",
    "A kitten was resting on the sunny window ledge.",
    "Quarterly revenue rose eight percent on strong cloud sales.",
    "The company's profits grew thanks to its cloud business.",
    "How do I reset my router password?",
]


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    return MiniLMEncoder()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_importing_learners_loads_no_model_library() -> None:
    src = Path(labella.__file__).resolve().parents[1]
    code = (
        "import sys\n"
        "import labella.learners.cache, labella.learners.encoders\n"
        "import labella.learners.evaluation, labella.learners.heads\n"
        "heavy = {'torch', 'sentence_transformers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_minilm_gives_384d_unit_vectors_that_capture_meaning(minilm: MiniLMEncoder) -> None:
    calls: list[tuple[int, int]] = []
    vectors = minilm.encode(SENTENCES, batch_size=2, progress=lambda d, t: calls.append((d, t)))

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert vectors.shape == (5, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert calls == [(2, 5), (4, 5), (5, 5)]

    cats, kitten, revenue, profits, router = vectors
    assert cosine(cats, kitten) > cosine(cats, revenue) + 0.3
    assert cosine(revenue, profits) > cosine(revenue, router) + 0.3
    assert cosine(cats, kitten) > cosine(kitten, profits)


def test_minilm_keeps_input_order_when_sorting_by_length(minilm: MiniLMEncoder) -> None:
    batched = minilm.encode(SENTENCES, batch_size=2)
    one_by_one = np.vstack([minilm.encode([text]) for text in SENTENCES])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_minilm_truncates_long_texts(minilm: MiniLMEncoder) -> None:
    long_text = "word " * 2000
    vectors = minilm.encode([long_text, long_text + "tail that is past the limit"])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)


def test_minilm_concurrent_first_use_loads_once_and_agrees() -> None:
    encoder = MiniLMEncoder()
    assert not encoder.loaded
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(encoder.encode(SENTENCES))
        except BaseException as error:  # surfaced in the main thread below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(results) == 3
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


def test_minilm_empty_input_and_bad_input() -> None:
    encoder = MiniLMEncoder()
    empty = encoder.encode([])
    assert empty.shape == (0, 384)
    assert empty.dtype == np.float32
    assert not encoder.loaded  # nothing to encode, nothing loaded
    with pytest.raises(TypeError, match="not a single string"):
        encoder.encode("just one string")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        encoder.encode(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(["x"], batch_size=0)


def test_registry_returns_one_shared_minilm() -> None:
    first = get_text_encoder()
    assert first is get_text_encoder("all-MiniLM-L6-v2")
    assert isinstance(first, MiniLMEncoder)
    assert isinstance(first, TextEncoder)
    assert first.name == "all-MiniLM-L6-v2"
    assert first.dim == 384


def test_registry_rejects_unknown_names_listing_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown text encoder 'nope'.*all-MiniLM-L6-v2"):
        get_text_encoder("nope")


def test_registry_accepts_plugins(make_hashing_encoder: type) -> None:
    name = f"hashing-{uuid.uuid4().hex}"
    builds: list[object] = []

    def factory() -> TextEncoder:
        encoder = make_hashing_encoder(name=name, dim=8)
        builds.append(encoder)
        return encoder

    register_text_encoder(name, factory)
    assert name in text_encoder_names()
    encoder = get_text_encoder(name)
    assert get_text_encoder(name) is encoder
    assert len(builds) == 1
    assert encoder.encode(["a b c"]).shape == (1, 8)

    with pytest.raises(ValueError, match="already registered"):
        register_text_encoder(name, factory)
    register_text_encoder(name, lambda: make_hashing_encoder(name=name, dim=4), replace=True)
    assert get_text_encoder(name).dim == 4


def test_registry_rejects_a_factory_whose_encoder_has_another_name(
    make_hashing_encoder: type,
) -> None:
    name = f"alias-{uuid.uuid4().hex}"
    register_text_encoder(name, lambda: make_hashing_encoder(name="something-else"))
    with pytest.raises(ValueError, match="cache namespace"):
        get_text_encoder(name)
