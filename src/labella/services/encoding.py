"""Encoding: every item of a project is embedded once by the project's encoder, in a background job.

Vectors live in the on-disk embedding cache (keyed by the item's content hash), never in the
database; the ``item.embedded`` flag records which items the cache holds. The job walks the items
still marked unembedded in id order, ``settings.encode_chunk`` at a time, and flags each chunk in
its own short transaction, so a killed job resumes where it stopped and a re-run is harmless
(cached items cost a lookup, not an encoder call).

Text items are encoded from ``item.text``; image items (the project's encoder has the image
modality) from their file's bytes, read through the media store and checked against the content
hash. An image that is gone or changed on disk since its import is left unembedded and named in
the job's result; the other items go on.

When every item is embedded, the job hands over to the model side: with no model yet it writes the
cold-start ranking (or queues a training job if imported labels already allow one); with a model it
predicts the newly embedded items and re-ranks the queue.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import func, select, update

from labella.config import Settings
from labella.jobs import queue
from labella.jobs.runtime import JobContext, executor
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import Item, Job, Project

ENCODE_JOB = "encode"

# Stay below SQLite's historical limit of 999 bound parameters per statement.
_IN_BATCH = 500
_MAX_EXAMPLES = 20


class ProgressReporter(Protocol):
    """``JobContext.progress``: record (done, total, message); ``force`` skips the throttle."""

    def __call__(
        self, done: int, total: int, message: str | None = None, *, force: bool = False
    ) -> None: ...


def _no_progress(done: int, total: int, message: str | None = None, *, force: bool = False) -> None:
    return None


@dataclass(frozen=True)
class EncodeResult:
    total: int
    embedded: int
    encoded: int
    """Vectors the encoder computed in this run (cache misses)."""
    reused: int
    """Items flagged embedded in this run whose vector was already cached."""
    seconds: float
    followup: str
    unreadable: int = 0
    """Image items left unembedded because their file is gone or changed on disk."""
    unreadable_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "embedded": self.embedded,
            "encoded": self.encoded,
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
            "followup": self.followup,
            "unreadable": self.unreadable,
            "unreadable_examples": self.unreadable_examples,
        }


def request_encoding(db: Database, project_id: int) -> Job:
    """Queue an encode job for the project (or return the one already queued)."""
    with db.transaction() as session:
        repo.get_project(session, project_id)
        return queue.enqueue(session, kind=ENCODE_JOB, project_id=project_id)


def open_cache(settings: Settings, encoder_name: str) -> Any:
    """The project encoder and its embedding cache, as a pair."""
    from labella.learners.cache import EmbeddingCache
    from labella.learners.encoders import get_encoder
    from labella.services.finetuning import ensure_registered

    # a project's fine-tuned encoder is saved in the models directory: a restarted process
    # registers it here, on first use, instead of failing on an unknown name
    ensure_registered(settings, encoder_name)
    encoder = get_encoder(encoder_name)
    cache = EmbeddingCache(settings.embeddings_dir, encoder.name, encoder.dim)
    return encoder, cache


@dataclass(frozen=True)
class _ChunkProgress:
    """Progress of one chunk's encoding, reported against the whole project."""

    progress: ProgressReporter
    base: int
    total: int
    message: str

    def __call__(self, chunk_done: int, _chunk_total: int) -> None:
        self.progress(self.base + chunk_done, self.total, self.message)


def _counts(db: Database, project_id: int) -> tuple[int, int]:
    with db.reader() as session:
        total = session.scalar(select(func.count()).where(Item.project_id == project_id)) or 0
        return int(total), repo.count_embedded(session, project_id)


@dataclass(frozen=True)
class _Pending:
    item_id: int
    key: str
    text: str
    media_uri: str | None


def _next_chunk(db: Database, project_id: int, size: int, after_id: int) -> list[_Pending]:
    # Keyset on the id, not "the first unembedded items": an image that cannot be read stays
    # unembedded and must not be fetched again by the same run.
    with db.reader() as session:
        rows = session.execute(
            select(Item.id, Item.content_hash, Item.text, Item.media_uri)
            .where(
                Item.project_id == project_id,
                Item.embedded.is_(False),
                Item.id > after_id,
            )
            .order_by(Item.id)
            .limit(size)
        ).all()
    return [
        _Pending(int(row.id), str(row.content_hash), row.text or "", row.media_uri) for row in rows
    ]


@dataclass
class _ImageReader:
    """Reads the bytes of image items, setting aside those that cannot be read."""

    settings: Settings
    unreadable: int = 0
    examples: list[str] = field(default_factory=list)

    def read(self, pending: list[_Pending]) -> tuple[list[_Pending], list[bytes]]:
        from labella.errors import LabellaError
        from labella.storage.media import MediaStore

        store = MediaStore(self.settings)
        kept: list[_Pending] = []
        data: list[bytes] = []
        for item in pending:
            try:
                if item.media_uri is None:
                    raise LabellaError("the item has no image")
                data.append(store.read(item.media_uri, expected_hash=item.key))
            except LabellaError as exc:
                self.unreadable += 1
                if len(self.examples) < _MAX_EXAMPLES:
                    self.examples.append(f"item {item.item_id}: {exc.message}")
                continue
            kept.append(item)
        return kept, data


def mark_embedded(db: Database, item_ids: Sequence[int], *, encoder: str) -> None:
    """Flag items as embedded, in one short transaction (the cache already holds their vectors
    under ``encoder``): only while their project still uses ``encoder``, since a fine-tuning
    (another worker lane) may have switched it meanwhile and re-flagged the items by its cache."""
    still_used = select(Project.id).where(Project.encoder == encoder)
    with db.transaction() as session:
        for start in range(0, len(item_ids), _IN_BATCH):
            batch = list(item_ids[start : start + _IN_BATCH])
            session.execute(
                update(Item)
                .where(Item.id.in_(batch), Item.project_id.in_(still_used))
                .values(embedded=True)
            )


def encode_project(
    db: Database,
    settings: Settings,
    project_id: int,
    *,
    progress: ProgressReporter = _no_progress,
    note: str = "",
) -> EncodeResult:
    """Embed every unembedded item of the project, then rank or schedule training.

    ``progress`` counts items, cached ones included, against the project's item count; ``note``
    prefixes its messages (e.g. that the job was re-queued after a restart).
    """
    started = time.perf_counter()
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        encoder_name = project.encoder
    from labella.learners.encoders import IMAGE, encoder_modality
    from labella.services.finetuning import ensure_registered

    ensure_registered(settings, encoder_name)
    images = _ImageReader(settings) if encoder_modality(encoder_name) == IMAGE else None
    encoder, cache = open_cache(settings, encoder_name)
    chunk_size = max(1, settings.encode_chunk)
    encoded = reused = 0
    last_id = 0
    try:
        total, done = _counts(db, project_id)
        progress(done, total, f"{note}encoding {total - done} items", force=True)
        while True:
            chunk = _next_chunk(db, project_id, chunk_size, last_id)
            if not chunk:
                break
            last_id = chunk[-1].item_id
            missing = set(cache.missing([item.key for item in chunk]))
            cached = [item for item in chunk if item.key not in missing]
            todo = [item for item in chunk if item.key in missing]
            inputs: list[Any]
            if images is not None:
                # only misses are read from disk: a cached image costs a look-up, not a read
                todo, inputs = images.read(todo)
            else:
                inputs = [item.text for item in todo]
            base = done + len(cached)
            report = _ChunkProgress(progress, base, total, f"{note}encoding items ({encoder.name})")

            from labella.learners.cache import embed_with_cache

            embed_with_cache(
                encoder,
                cache,
                [item.key for item in todo],
                inputs,
                batch_size=settings.encode_batch_size,
                progress=report,
                chunk=chunk_size,
            )
            mark_embedded(db, [item.item_id for item in cached + todo], encoder=encoder_name)
            encoded += len({item.key for item in todo})
            reused += len(cached) + len(todo) - len({item.key for item in todo})
            total, done = _counts(db, project_id)
            progress(done, total, f"{note}embedded {done} of {total} items", force=True)
    finally:
        cache.close()
    followup = _after_encoding(db, settings, project_id)
    total, done = _counts(db, project_id)
    return EncodeResult(
        total=total,
        embedded=done,
        encoded=encoded,
        reused=reused,
        seconds=time.perf_counter() - started,
        followup=followup,
        unreadable=0 if images is None else images.unreadable,
        unreadable_examples=[] if images is None else list(images.examples),
    )


def _after_encoding(db: Database, settings: Settings, project_id: int) -> str:
    """Hand the embedded pool to the model side; returns what was done, in words."""
    from labella.services import ranking, training

    with db.transaction() as session:
        project = repo.get_project(session, project_id)
        latest = repo.latest_model_version(session, project_id)
        from labella.services.finetuning import maybe_schedule_finetune, model_is_stale

        # imported labels count toward the automatic fine-tuning as a person's do: checked here,
        # once their items are embedded, rather than at the next label a person gives
        maybe_schedule_finetune(session, project)

        if model_is_stale(project, latest):
            # trained on another encoder's vectors (the project switched encoders since): it
            # cannot score these, so a training on them is due
            latest = None
        if latest is None:
            labels = training.load_labeled_rows(session, project)
            if training.readiness_problem(labels, project) is None:
                job = training.enqueue_training(
                    session, project_id, reason="labels exist before any model"
                )
                return f"queued training job {job.id} on {labels.n_usable} existing labels"
    if latest is None:
        ranked = ranking.rank_project(db, settings, project_id)
        return f"cold-start ranking of {ranked.n_ranked} items"
    predicted = training.predict_missing(db, settings, project_id, latest)
    ranked = ranking.rank_project(db, settings, project_id, model_version=latest)
    return (
        f"predicted {predicted} new items with model v{latest.version}; "
        f"ranked {ranked.n_ranked} items"
    )


def resume_note(context: JobContext) -> str:
    """A message prefix saying that the job was re-queued after its server stopped, if it was."""
    with context.db.reader() as session:
        job = session.get(Job, context.job_id)
        if job is None or job.attempts <= 1:
            return ""
        return f"resumed after a restart (attempt {job.attempts}): "


@executor(ENCODE_JOB)
def run_encode_job(context: JobContext) -> dict[str, Any]:
    if context.project_id is None:
        raise ValueError("an encode job needs a project")
    note = resume_note(context)
    result = encode_project(
        context.db, context.settings, context.project_id, progress=context.progress, note=note
    )
    summary = (
        f"{note}embedded {result.embedded} of {result.total} items "
        f"({result.encoded} encoded, {result.reused} from cache); {result.followup}"
    )
    if result.unreadable:
        summary += (
            f"; {result.unreadable} images could not be read and stay unembedded "
            f"({result.unreadable_examples[0]}{', ...' if result.unreadable > 1 else ''})"
        )
    return {**result.as_dict(), "message": summary}
