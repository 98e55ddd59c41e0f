"""Shared fixtures for the learners tests: a small real encoder and synthetic data."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from labella.learners.encoders import l2_normalise, validate_texts


class HashingEncoder:
    """A real, deterministic bag-of-words encoder: each token adds +-1 to a hashed bucket.

    It records how many texts it has encoded, so tests can see what was (not) recomputed.
    """

    def __init__(self, name: str = "hashing-test", dim: int = 32) -> None:
        self.name = name
        self.dim = dim
        self.calls = 0
        self.texts_encoded: list[str] = []

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        texts = validate_texts(texts)
        self.calls += 1
        self.texts_encoded.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in text.lower().split() or [""]:
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dim
                out[row, bucket] += 1.0 if digest[4] % 2 else -1.0
            if progress is not None and ((row + 1) % batch_size == 0 or row + 1 == len(texts)):
                progress(row + 1, len(texts))
        # A text whose buckets cancel out gets a fixed unit vector instead of zeros.
        out[np.linalg.norm(out, axis=1) == 0, 0] = 1.0
        return l2_normalise(out)


@pytest.fixture
def hashing_encoder() -> HashingEncoder:
    return HashingEncoder()


@pytest.fixture
def make_hashing_encoder() -> type[HashingEncoder]:
    return HashingEncoder


BlobMaker = Callable[..., tuple[np.ndarray, np.ndarray]]


def _blobs(
    n_per_class: int, n_classes: int, *, dim: int = 16, spread: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around random unit-norm-ish centres, rows shuffled."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centres[y] + spread * rng.normal(size=(len(y), dim)) / np.sqrt(dim)
    order = rng.permutation(len(y))
    return X[order].astype(np.float32), y[order]


@pytest.fixture
def make_blobs() -> BlobMaker:
    return _blobs
