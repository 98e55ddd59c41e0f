"""Array plumbing shared by the strategies: bounded-memory chunking and top-k selection.

Scores are computed chunk by chunk so temporaries stay around a few MiB whatever the pool size.
Selection keeps only the items above a cut-off estimated from a strided sample (one comparison
pass), then ``np.argpartition`` and a sort of only the chosen ``k``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

CHUNK_ROWS = 65_536
"""Most rows scored at once."""

CHUNK_ELEMENTS = 1 << 20
"""Most array elements in one chunk (4 MiB of float32), so wide arrays get fewer rows."""

CLASS_MAJOR_ELEMENTS = 1 << 17
"""Elements per transposed probability chunk (512 KiB of float32): the chunk and its running
top-two vectors stay in a core's L2 cache, which is what the per-class passes are bound by."""

ChunkScorer = Callable[[np.ndarray], np.ndarray]


def chunk_rows(width: int, budget: int = CHUNK_ELEMENTS) -> int:
    """Rows per chunk for an array with ``width`` elements per row."""
    return max(1, min(CHUNK_ROWS, budget // max(1, width)))


def row_chunks(n_rows: int, width: int, budget: int = CHUNK_ELEMENTS) -> Iterator[slice]:
    step = chunk_rows(width, budget)
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def class_major_chunks(probs: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(rows, chunk)`` with ``chunk`` a float32, C-contiguous ``(n_classes, len(rows))``.

    Transposing a chunk lets per-class arithmetic run over contiguous memory: with ten classes
    this is about three times faster than ``np.partition``/``max(axis=1)`` over short rows.
    """
    n_rows, n_classes = probs.shape
    budget = max(CLASS_MAJOR_ELEMENTS, 1024 * n_classes)  # wide rows: fewer, bigger chunks
    for rows in row_chunks(n_rows, n_classes, budget):
        yield rows, np.array(probs[rows].T, dtype=np.float32, order="C")


def score_rows(probs: np.ndarray, score_chunk: ChunkScorer) -> np.ndarray:
    """Apply ``score_chunk`` to class-major chunks of ``probs``; float32 ``(n_rows,)``."""
    out = np.empty(probs.shape[0], dtype=np.float32)
    for rows, chunk in class_major_chunks(probs):
        out[rows] = score_chunk(chunk)
    return out


COLUMN_LOOP_MAX_CLASSES = 64
"""Above this many classes a per-row ``np.partition`` beats three passes per class."""


def score_top_two(
    probs: np.ndarray, combine: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """``combine(largest, second_largest)`` for every row of ``probs``; float32 ``(n_rows,)``."""
    n_rows, n_classes = probs.shape
    if n_classes <= COLUMN_LOOP_MAX_CLASSES:
        return score_rows(probs, lambda columns: combine(*top_two(columns)))
    out = np.empty(n_rows, dtype=np.float32)
    for rows in row_chunks(n_rows, n_classes):
        chunk = np.asarray(probs[rows], dtype=np.float32)
        top = np.partition(chunk, n_classes - 2, axis=1)
        out[rows] = combine(top[:, n_classes - 1], top[:, n_classes - 2])
    return out


def top_two(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest and second-largest value of each column of a ``(n_classes >= 2, m)`` array."""
    first = np.maximum(columns[0], columns[1])
    second = np.minimum(columns[0], columns[1])
    scratch = np.empty_like(first)
    for row in columns[2:]:
        np.minimum(first, row, out=scratch)
        np.maximum(second, scratch, out=second)
        np.maximum(first, row, out=first)
    return first, second


def select_top_scores(
    scores: np.ndarray,
    labeled: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    source: str = "scores",
) -> np.ndarray:
    """The ``k`` highest-scoring unlabeled items, best first, ties broken by ``rng``.

    ``scores`` is the caller's scratch array: labeled entries are overwritten with ``-inf``.
    ``k`` must not exceed the number of unlabeled items.
    """
    scores[labeled] = -np.inf
    return top_k_indices(scores, k, rng=rng, source=source)


def top_k_indices(
    scores: np.ndarray, k: int, *, rng: np.random.Generator, source: str = "scores"
) -> np.ndarray:
    """Indices of the ``k`` largest ``scores`` sorted descending; ties broken by ``rng``.

    Ties are resolved at random both at the cut-off (which of several equal scores make it in)
    and in the returned order, so neither depends on item order in the pool. Raises ValueError
    when a selectable score is NaN or a selected one is infinite.
    """
    n = scores.shape[0]
    k = min(k, n)
    if k == n:
        chosen = np.arange(n, dtype=np.int64)
    else:
        if np.isnan(scores.max()):
            raise _not_finite(source)
        candidates = _candidates_above_sampled_cutoff(scores, k)
        if candidates is None:
            chosen = _top_k_with_random_ties(scores, k, rng)
        else:
            chosen = candidates[_top_k_with_random_ties(scores[candidates], k, rng)]
    # canonical order first, so the random tie-break keys do not depend on how we got here
    chosen = np.sort(chosen)
    chosen_scores = scores[chosen]
    if not np.isfinite(chosen_scores).all():
        raise _not_finite(source)
    order = np.lexsort((rng.random(chosen.size), -chosen_scores))
    return chosen[order].astype(np.int64, copy=False)


def _not_finite(source: str) -> ValueError:
    return ValueError(
        f"{source} of some unlabeled items are NaN or infinite; "
        "check the model outputs passed in the PoolView"
    )


_SAMPLE_STRIDE = 16


def _candidates_above_sampled_cutoff(scores: np.ndarray, k: int) -> np.ndarray | None:
    """A small superset of the top ``k``, or None when filtering would not pay off.

    A cut-off taken from every 16th score keeps about ``2k + 16`` items; whenever at least ``k``
    scores reach it, every top-``k`` item (and every item tied with the k-th) is among them, so
    the result is exact. Otherwise (an unlucky sample) the caller falls back to the full array.
    This replaces a linear-time ``argpartition`` over all items by one comparison pass.
    """
    n = scores.shape[0]
    sample = scores[::_SAMPLE_STRIDE]
    rank = -(-2 * k // _SAMPLE_STRIDE) + 1
    if rank * 8 > sample.shape[0]:
        return None
    cutoff = np.partition(sample, sample.shape[0] - rank)[sample.shape[0] - rank]
    candidates = np.flatnonzero(scores >= cutoff)
    if candidates.size < k or candidates.size > n // 4:
        return None
    return candidates


def _top_k_with_random_ties(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The ``k`` largest (unordered); equal scores at the cut-off are drawn by ``rng``."""
    n = scores.shape[0]
    if k >= n:
        return np.arange(n, dtype=np.int64)
    part = np.argpartition(scores, n - k)[n - k :]
    part_scores = scores[part]
    kth = part_scores.min()
    n_tied_in = int(np.count_nonzero(part_scores == kth))
    if int(np.count_nonzero(scores == kth)) == n_tied_in:
        return part
    above = part[part_scores > kth]
    tied = np.flatnonzero(scores == kth)
    drawn = rng.choice(tied, size=k - above.size, replace=False)
    return np.concatenate([above, drawn])


def row_sq_norms(embeddings: np.ndarray) -> np.ndarray:
    """Squared L2 norm of every row, float32, chunked."""
    out = np.empty(embeddings.shape[0], dtype=np.float32)
    for rows in row_chunks(embeddings.shape[0], embeddings.shape[1]):
        chunk = np.asarray(embeddings[rows], dtype=np.float32)
        out[rows] = np.einsum("ij,ij->i", chunk, chunk)
    return out


def matvec(embeddings: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``embeddings @ vector`` as float32, chunked so float64 inputs are never copied whole."""
    out = np.empty(embeddings.shape[0], dtype=np.float32)
    vector = np.asarray(vector, dtype=np.float32)
    for rows in row_chunks(embeddings.shape[0], embeddings.shape[1]):
        out[rows] = np.asarray(embeddings[rows], dtype=np.float32) @ vector
    return out
