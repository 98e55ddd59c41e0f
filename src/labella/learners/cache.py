"""On-disk embedding cache, so that no item is ever encoded twice by the same encoder."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from labella.learners.encoders import Encoder

ProgressCallback = Callable[[int, int], None]

# SQLite's default limit on host parameters is 999 in older builds; stay under it.
_LOOKUP_BATCH = 900
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def cache_file_name(encoder_name: str) -> str:
    """A file name for ``encoder_name`` that is safe on every OS and unique per encoder name."""
    safe = _SAFE_NAME.sub("_", encoder_name).strip("._")
    if safe == encoder_name:
        return f"{safe}.sqlite"
    # Two names can sanitise to the same string ("a/b", "a_b"); a digest keeps them apart.
    digest = hashlib.sha256(encoder_name.encode()).hexdigest()[:12]
    return f"{safe or 'encoder'}-{digest}.sqlite"


def _validate_keys(keys: Sequence[str]) -> list[str]:
    if isinstance(keys, str | bytes):
        raise TypeError("keys must be a sequence of strings, not a single string")
    as_list = list(keys)
    for index, key in enumerate(as_list):
        if not isinstance(key, str):
            raise TypeError(f"keys[{index}] is {type(key).__name__}, expected str")
    return as_list


class EmbeddingCache:
    """On-disk cache of embeddings keyed by (encoder name, content key), so an item's embedding is
    never computed twice (across projects too).

    One SQLite file (WAL mode) per encoder under ``root``. Each thread gets its own connection, so
    a worker thread can write while request threads read.
    """

    def __init__(self, root: Path, encoder_name: str, dim: int) -> None:
        if not isinstance(encoder_name, str) or not encoder_name:
            raise ValueError("encoder_name must be a non-empty string")
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.root = Path(root)
        self.encoder_name = encoder_name
        self.dim = int(dim)
        self.path = self.root / cache_file_name(encoder_name)
        self._local = threading.local()
        self._connections: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self.root.mkdir(parents=True, exist_ok=True)
        self._initialise_schema()

    # -- connections ------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise RuntimeError(f"embedding cache {self.path} is closed")
        # check_same_thread=False only so close() can close every thread's connection; each
        # connection is still used by the one thread that opened it.
        conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._local.conn = conn
        with self._connections_lock:
            self._close_connections_of_finished_threads()
            self._connections.append((weakref.ref(threading.current_thread()), conn))
        return conn

    def _close_connections_of_finished_threads(self) -> None:
        alive = []
        for thread_ref, conn in self._connections:
            thread = thread_ref()
            if thread is not None and thread.is_alive():
                alive.append((thread_ref, conn))
            else:
                conn.close()
        self._connections = alive

    def close(self) -> None:
        """Close every thread's connection; the cache cannot be used afterwards."""
        with self._connections_lock:
            self._closed = True
            for _, conn in self._connections:
                conn.close()
            self._connections = []
        self._local = threading.local()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _initialise_schema(self) -> None:
        conn = self._connection()
        with conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS embeddings "
                "(key TEXT PRIMARY KEY, vec BLOB NOT NULL) WITHOUT ROWID"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('encoder', ?), ('dim', ?)",
                (self.encoder_name, str(self.dim)),
            )
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        if meta.get("encoder") != self.encoder_name or meta.get("dim") != str(self.dim):
            raise ValueError(
                f"embedding cache {self.path} holds {meta.get('dim')}-d vectors of encoder "
                f"{meta.get('encoder')!r}, not {self.dim}-d vectors of {self.encoder_name!r}"
            )

    # -- reads -------------------------------------------------------------------------------

    def _stored(self, keys: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        conn = self._connection()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _LOOKUP_BATCH):
            batch = unique[start : start + _LOOKUP_BATCH]
            placeholders = ",".join("?" * len(batch))
            yield from conn.execute(
                f"SELECT key, vec FROM embeddings WHERE key IN ({placeholders})", batch
            )

    def get_many(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for ``keys`` (float32 ``(n, dim)``, zero rows where missing) and a found mask."""
        keys = _validate_keys(keys)
        expected_bytes = self.dim * 4
        found_vectors = {
            key: blob for key, blob in self._stored(keys) if len(blob) == expected_bytes
        }
        blobs = [found_vectors.get(key) for key in keys]
        found = np.fromiter((blob is not None for blob in blobs), dtype=bool, count=len(keys))
        zero = bytes(expected_bytes)
        # One join into a writable buffer instead of a numpy call per row: 100k rows in ~0.1 s.
        joined = bytearray().join(blob if blob is not None else zero for blob in blobs)
        vectors = np.frombuffer(joined, dtype=np.float32).reshape(len(keys), self.dim)
        return vectors, found

    def missing(self, keys: Sequence[str]) -> list[str]:
        """The distinct keys that have no stored vector, in first-seen order."""
        keys = _validate_keys(keys)
        expected_bytes = self.dim * 4
        present = {key for key, blob in self._stored(keys) if len(blob) == expected_bytes}
        return [key for key in dict.fromkeys(keys) if key not in present]

    def __len__(self) -> int:
        (count,) = self._connection().execute("SELECT COUNT(*) FROM embeddings").fetchone()
        return int(count)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return not self.missing([key])

    # -- writes ------------------------------------------------------------------------------

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store one vector per key; storing a key again replaces its vector."""
        keys = _validate_keys(keys)
        array = np.asarray(vectors)
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(
                f"vectors must have shape (n, {self.dim}) for encoder {self.encoder_name!r}, "
                f"got {array.shape}"
            )
        if array.shape[0] != len(keys):
            raise ValueError(f"got {len(keys)} keys but {array.shape[0]} vectors")
        if array.dtype.kind not in "iuf":
            raise ValueError(f"vectors must be real numbers, got dtype {array.dtype}")
        array = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(array).all():
            raise ValueError("vectors contain NaN or infinity; refusing to cache them")
        conn = self._connection()
        with conn:
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings (key, vec) VALUES (?, ?)",
                zip(keys, (row.tobytes() for row in array), strict=True),
            )


def embed_with_cache(
    encoder: Encoder,
    cache: EmbeddingCache,
    keys: Sequence[str],
    inputs: Sequence[Any],
    *,
    batch_size: int = 64,
    progress: ProgressCallback | None = None,
    chunk: int = 512,
) -> np.ndarray:
    """Embeddings for ``inputs`` (texts, or image files' bytes for an image encoder; float32
    ``(n, dim)``, input order), encoding only uncached keys.

    Misses are encoded ``chunk`` at a time and each chunk is written to the cache as soon as it is
    done, so an interrupted job loses at most one chunk of work. ``progress(done, total)`` counts
    items (cached ones are done from the start). Items that share a key are encoded once.
    """
    keys = _validate_keys(keys)
    if isinstance(inputs, str | bytes):
        raise TypeError("inputs must be a sequence, not a single string")
    inputs = list(inputs)
    if len(keys) != len(inputs):
        raise ValueError(f"got {len(keys)} keys but {len(inputs)} inputs")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    if encoder.name != cache.encoder_name or encoder.dim != cache.dim:
        raise ValueError(
            f"encoder {encoder.name!r} ({encoder.dim}-d) does not match the cache for "
            f"{cache.encoder_name!r} ({cache.dim}-d)"
        )
    total = len(keys)
    vectors, found = cache.get_many(keys)
    positions_by_key: dict[str, list[int]] = {}
    for index in np.flatnonzero(~found):
        positions_by_key.setdefault(keys[index], []).append(int(index))
    missing_keys = list(positions_by_key)
    reporter = _ProgressReporter(progress, total)
    done = total - int((~found).sum())
    reporter(done)

    for start in range(0, len(missing_keys), chunk):
        chunk_keys = missing_keys[start : start + chunk]
        chunk_inputs = [inputs[positions_by_key[key][0]] for key in chunk_keys]
        chunk_items = sum(len(positions_by_key[key]) for key in chunk_keys)
        encoded = np.asarray(
            encoder.encode(
                chunk_inputs,
                batch_size=batch_size,
                progress=reporter.scaled(done, chunk_items),
            ),
            dtype=np.float32,
        )
        if encoded.shape != (len(chunk_keys), cache.dim):
            raise RuntimeError(
                f"encoder {encoder.name!r} returned shape {encoded.shape} for "
                f"{len(chunk_keys)} inputs, expected ({len(chunk_keys)}, {cache.dim})"
            )
        cache.put_many(chunk_keys, encoded)
        for row, key in enumerate(chunk_keys):
            vectors[positions_by_key[key]] = encoded[row]
        done += chunk_items
        reporter(done)
    return vectors


class _ProgressReporter:
    """Forwards (done, total) to a callback, skipping repeats so each value is reported once."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self._callback = callback
        self._total = total
        self._last = -1

    def __call__(self, done: int) -> None:
        if self._callback is not None and done > self._last:
            self._last = done
            self._callback(done, self._total)

    def scaled(self, base: int, items: int) -> ProgressCallback:
        """A callback for one encoder call covering ``items`` items after ``base`` done ones."""

        def report(encoded: int, of: int) -> None:
            if of > 0:
                self(base + encoded * items // of)

        return report
