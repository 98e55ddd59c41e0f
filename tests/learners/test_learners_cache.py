"""The on-disk embedding cache and cached encoding."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labella.learners.cache import EmbeddingCache, cache_file_name, embed_with_cache

DIM = 8


def unit_rows(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def cache(tmp_path: Path) -> EmbeddingCache:
    return EmbeddingCache(tmp_path, "enc", DIM)


def test_round_trip_and_missing_mask(cache: EmbeddingCache) -> None:
    vectors = unit_rows(3)
    cache.put_many(["a", "b", "c"], vectors)

    got, found = cache.get_many(["c", "zz", "a", "a"])

    assert got.dtype == np.float32
    assert got.shape == (4, DIM)
    np.testing.assert_array_equal(found, [True, False, True, True])
    np.testing.assert_array_equal(got[0], vectors[2])
    np.testing.assert_array_equal(got[1], np.zeros(DIM))
    np.testing.assert_array_equal(got[2], vectors[0])
    np.testing.assert_array_equal(got[3], vectors[0])
    assert cache.missing(["zz", "a", "yy", "zz"]) == ["zz", "yy"]
    assert len(cache) == 3
    assert "a" in cache
    assert "zz" not in cache


def test_lookups_span_many_sql_batches(cache: EmbeddingCache) -> None:
    keys = [f"item-{i}" for i in range(2500)]
    vectors = unit_rows(2500)
    cache.put_many(keys[::2], vectors[::2])

    got, found = cache.get_many(keys)

    np.testing.assert_array_equal(found, np.arange(2500) % 2 == 0)
    np.testing.assert_array_equal(got[::2], vectors[::2])
    assert not got[1::2].any()
    assert cache.missing(keys) == keys[1::2]


def test_put_is_idempotent(cache: EmbeddingCache) -> None:
    vectors = unit_rows(2)
    cache.put_many(["a", "b"], vectors)
    cache.put_many(["a", "b"], vectors)
    cache.put_many(["a", "a"], np.vstack([vectors[0], vectors[0]]))

    assert len(cache) == 2
    got, found = cache.get_many(["a", "b"])
    assert found.all()
    np.testing.assert_array_equal(got, vectors)


def test_survives_reopening(tmp_path: Path) -> None:
    vectors = unit_rows(2)
    with EmbeddingCache(tmp_path, "enc", DIM) as first:
        first.put_many(["a", "b"], vectors)

    reopened = EmbeddingCache(tmp_path, "enc", DIM)

    got, found = reopened.get_many(["b", "a"])
    assert found.all()
    np.testing.assert_array_equal(got, vectors[::-1])
    assert len(reopened) == 2


def test_closed_cache_refuses_use(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "enc", DIM)
    cache.close()
    with pytest.raises(RuntimeError, match="closed"):
        cache.get_many(["a"])


def test_wrong_dim_or_shape_is_rejected(cache: EmbeddingCache) -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 8\)"):
        cache.put_many(["a"], np.ones((1, DIM + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="2 keys but 1 vectors"):
        cache.put_many(["a", "b"], np.ones((1, DIM), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        cache.put_many(["a"], np.full((1, DIM), np.nan, dtype=np.float32))
    with pytest.raises(TypeError, match="not a single string"):
        cache.get_many("abc")
    assert len(cache) == 0


def test_reopening_with_another_dim_is_rejected(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path, "enc", DIM).put_many(["a"], unit_rows(1))
    with pytest.raises(ValueError, match="holds 8-d vectors"):
        EmbeddingCache(tmp_path, "enc", DIM * 2)


def test_each_encoder_gets_its_own_safe_file(tmp_path: Path) -> None:
    one = EmbeddingCache(tmp_path, "org/model:v1", DIM)
    other = EmbeddingCache(tmp_path, "org_model_v1", DIM)
    one.put_many(["a"], unit_rows(1))

    assert one.path.parent == tmp_path
    assert one.path != other.path
    assert "/" not in cache_file_name("org/model:v1")
    assert cache_file_name("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2.sqlite"
    assert len(other) == 0


def test_worker_thread_writes_while_another_thread_reads(cache: EmbeddingCache) -> None:
    keys = [f"k{i}" for i in range(400)]
    vectors = unit_rows(400)
    errors: list[BaseException] = []
    seen_counts: list[int] = []

    def writer() -> None:
        try:
            for start in range(0, 400, 40):
                cache.put_many(keys[start : start + 40], vectors[start : start + 40])
        except BaseException as error:  # surfaced in the main thread below
            errors.append(error)

    def reader() -> None:
        try:
            for _ in range(20):
                got, found = cache.get_many(keys)
                # Whatever is visible is complete and correct.
                np.testing.assert_array_equal(got[found], vectors[found])
                seen_counts.append(int(found.sum()))
        except BaseException as error:  # surfaced in the main thread below
            errors.append(error)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert seen_counts == sorted(seen_counts)
    assert cache.missing(keys) == []


def test_embed_with_cache_encodes_only_missing_keys(tmp_path: Path, hashing_encoder: Any) -> None:
    encoder = hashing_encoder
    cache = EmbeddingCache(tmp_path, encoder.name, encoder.dim)
    texts = [f"text number {i} about topic {i % 3}" for i in range(10)]
    keys = [f"key-{i}" for i in range(10)]

    first = embed_with_cache(encoder, cache, keys[:6], texts[:6], chunk=4)
    assert encoder.texts_encoded == texts[:6]

    everything = embed_with_cache(encoder, cache, keys, texts)
    assert encoder.texts_encoded == texts[:6] + texts[6:]
    np.testing.assert_array_equal(everything[:6], first)
    np.testing.assert_allclose(everything, encoder.encode(texts), atol=1e-6)

    calls_before = encoder.calls
    again = embed_with_cache(encoder, cache, keys[::-1], texts[::-1])
    assert encoder.calls == calls_before
    np.testing.assert_array_equal(again, everything[::-1])


def test_embed_with_cache_reports_progress_counting_cached_items(
    tmp_path: Path, hashing_encoder: Any
) -> None:
    encoder = hashing_encoder
    cache = EmbeddingCache(tmp_path, encoder.name, encoder.dim)
    texts = [f"doc {i}" for i in range(10)]
    keys = [f"k{i}" for i in range(10)]
    embed_with_cache(encoder, cache, keys[:4], texts[:4])
    reports: list[tuple[int, int]] = []

    embed_with_cache(
        encoder,
        cache,
        keys,
        texts,
        batch_size=2,
        chunk=3,
        progress=lambda d, t: reports.append((d, t)),
    )

    done = [d for d, _ in reports]
    assert reports[0] == (4, 10)
    assert reports[-1] == (10, 10)
    assert done == sorted(set(done))
    assert {t for _, t in reports} == {10}
    assert 7 in done  # the end of the first 3-item chunk


def test_embed_with_cache_encodes_a_repeated_key_once(tmp_path: Path, hashing_encoder: Any) -> None:
    encoder = hashing_encoder
    cache = EmbeddingCache(tmp_path, encoder.name, encoder.dim)

    out = embed_with_cache(encoder, cache, ["same", "other", "same"], ["x y", "z", "x y"])

    assert encoder.texts_encoded == ["x y", "z"]
    np.testing.assert_array_equal(out[0], out[2])
    assert len(cache) == 2


def test_embed_with_cache_keeps_finished_chunks_when_interrupted(
    tmp_path: Path, make_hashing_encoder: Any
) -> None:
    class StopsAfterTwoCalls(make_hashing_encoder):
        """The hashing encoder, with its process 'killed' on the third request."""

        def encode(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
            if self.calls == 2:
                raise RuntimeError("killed")
            return super().encode(texts, **kwargs)

    encoder = StopsAfterTwoCalls()
    cache = EmbeddingCache(tmp_path, encoder.name, encoder.dim)
    keys = [f"k{i}" for i in range(10)]
    texts = [f"doc {i}" for i in range(10)]

    with pytest.raises(RuntimeError, match="killed"):
        embed_with_cache(encoder, cache, keys, texts, chunk=4)

    assert cache.missing(keys) == keys[8:]
    resumed = make_hashing_encoder()
    embed_with_cache(resumed, cache, keys, texts, chunk=4)
    assert resumed.texts_encoded == texts[8:]


def test_embed_with_cache_rejects_mismatched_inputs(tmp_path: Path, hashing_encoder: Any) -> None:
    cache = EmbeddingCache(tmp_path, hashing_encoder.name, hashing_encoder.dim)
    other = EmbeddingCache(tmp_path, "another-encoder", hashing_encoder.dim)
    with pytest.raises(ValueError, match="2 keys but 1 inputs"):
        embed_with_cache(hashing_encoder, cache, ["a", "b"], ["x"])
    with pytest.raises(ValueError, match="does not match the cache"):
        embed_with_cache(hashing_encoder, other, ["a"], ["x"])
    with pytest.raises(ValueError, match="chunk"):
        embed_with_cache(hashing_encoder, cache, ["a"], ["x"], chunk=0)
    assert hashing_encoder.calls == 0
