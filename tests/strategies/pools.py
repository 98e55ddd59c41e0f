"""Pool factories shared by the strategy tests: every input a strategy may need, seeded."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from labella.strategies import PoolView, QueryStrategy


def planted_inputs(
    n_items: int, *, n_classes: int = 4, dim: int = 8, n_samples: int = 5, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random but seeded model outputs with the shapes and dtypes the app produces."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n_items, n_classes))
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    embeddings = rng.normal(size=(n_items, dim))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    samples = rng.dirichlet(np.full(n_classes, 0.5), size=(n_samples, n_items))
    return {
        "probs": softmax.astype(np.float32),
        "sigmoid": (1.0 / (1.0 + np.exp(-logits))).astype(np.float32),
        "embeddings": embeddings.astype(np.float32),
        "prob_samples": samples.astype(np.float32),
        "clusters": rng.integers(0, max(1, n_items // 10), size=n_items).astype(np.int32),
    }


def build_pool(
    inputs: Collection[str],
    *,
    n_items: int = 120,
    n_labeled: int = 20,
    multi_label: bool = False,
    seed: int = 0,
) -> PoolView:
    """A pool holding only the named inputs, with ``n_labeled`` seeded labeled items."""
    arrays = planted_inputs(n_items, seed=seed)
    labeled = np.zeros(n_items, dtype=bool)
    if n_labeled:
        chosen = np.random.default_rng(seed + 1).choice(n_items, n_labeled, replace=False)
        labeled[chosen] = True
    probs = arrays["sigmoid"] if multi_label else arrays["probs"]
    return PoolView(
        labeled=labeled,
        probs=probs if "probs" in inputs else None,
        embeddings=arrays["embeddings"] if "embeddings" in inputs else None,
        prob_samples=arrays["prob_samples"] if "prob_samples" in inputs else None,
        clusters=arrays["clusters"] if "clusters" in inputs else None,
        multi_label=multi_label,
    )


def pool_for(
    strategy: QueryStrategy,
    *,
    exclude: str | None = None,
    extra: Collection[str] = (),
    n_items: int = 120,
    n_labeled: int = 20,
    seed: int = 0,
) -> PoolView:
    """A pool with what ``strategy`` requires (plus ``extra``, minus ``exclude``) in its mode."""
    inputs = (set(strategy.requires) | set(extra)) - {exclude}
    return build_pool(
        inputs,
        n_items=n_items,
        n_labeled=n_labeled,
        multi_label=strategy.label_mode == "multi",
        seed=seed,
    )
