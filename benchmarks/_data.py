"""Loaders for the benchmark data sets in ``../shared/data`` (see its README).

Benchmarks only: tests never read these files. ``LABELLA_SHARED_DATA`` overrides the location.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_ROOT = Path(
    os.environ.get("LABELLA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@dataclass(frozen=True)
class TextSplit:
    """Texts with integer labels indexing ``classes``."""

    texts: list[str]
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class TextTask:
    name: str
    pool: TextSplit
    test: TextSplit
    description: str


def _normalise(text: str) -> str:
    return " ".join(text.split())


def read_tsv(path: Path, *, header: bool) -> list[tuple[str, str]]:
    """(text, label) rows of a two-column TSV; texts may hold quotes, so no CSV quoting."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found; the benchmarks read ../shared/data (set LABELLA_SHARED_DATA)"
        )
    rows = []
    with path.open(encoding="utf-8") as stream:
        if header:
            next(stream)
        for number, line in enumerate(stream, start=2 if header else 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            text, sep, label = line.rpartition("\t")
            if not sep:
                raise ValueError(f"{path}:{number}: expected text<TAB>label")
            rows.append((text.strip(), label.strip()))
    return rows


def _split(rows: list[tuple[str, str]], classes: list[str]) -> TextSplit:
    index = {name: i for i, name in enumerate(classes)}
    return TextSplit(
        texts=[text for text, _ in rows],
        labels=np.asarray([index[label] for _, label in rows], dtype=np.int64),
        classes=classes,
    )


def _dedupe(
    rows: list[tuple[str, str]], exclude: frozenset[str] | set[str] = frozenset()
) -> list[tuple[str, str]]:
    """First occurrence of each text (as an import keeps it), minus texts in ``exclude``."""
    seen = set(exclude)
    kept = []
    for text, label in rows:
        key = _normalise(text)
        if key and key not in seen:
            seen.add(key)
            kept.append((text, label))
    return kept


def load_sst2(*, pool_size: int = 20_000, min_words: int = 5, seed: int = 0) -> TextTask:
    """SST-2: a seeded random ``pool_size`` sample of the training rows with at least
    ``min_words`` words (train.tsv mixes whole sentences with short phrases), deduplicated and
    disjoint from the test texts; the GLUE validation sentences (test.tsv) for accuracy."""
    root = DATA_ROOT / "text" / "sst2"
    test_rows = read_tsv(root / "test.tsv", header=True)
    test_texts = {_normalise(text) for text, _ in test_rows}
    train = [
        row for row in read_tsv(root / "train.tsv", header=True) if len(row[0].split()) >= min_words
    ]
    train = _dedupe(train, exclude=test_texts)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(train), size=min(pool_size, len(train)), replace=False))
    pool = [train[i] for i in chosen]
    classes = ["0", "1"]
    return TextTask(
        name="sst2",
        pool=_split(pool, classes),
        test=_split(test_rows, classes),
        description=(
            f"SST-2: {len(pool):,} training rows of {min_words}+ words (seeded sample), "
            f"{len(test_rows):,} test sentences"
        ),
    )


def load_agnews() -> TextTask:
    """AG News: dev.tsv as the pool, test.tsv for accuracy (no headers; text<TAB>class)."""
    root = DATA_ROOT / "text" / "agnews"
    test_rows = read_tsv(root / "test.tsv", header=False)
    test_texts = {_normalise(text) for text, _ in test_rows}
    pool = _dedupe(read_tsv(root / "dev.tsv", header=False), exclude=test_texts)
    classes = ["Business", "Sci/Tech", "Sports", "World"]
    return TextTask(
        name="agnews",
        pool=_split(pool, classes),
        test=_split(test_rows, classes),
        description=f"AG News: {len(pool):,} dev rows as the pool, {len(test_rows):,} test rows",
    )


TASKS = {"sst2": load_sst2, "agnews": load_agnews}
