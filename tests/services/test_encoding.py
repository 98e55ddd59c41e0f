"""The encode job: real MiniLM embeddings, cached on disk, flagged per chunk, resumable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, update

from labella.config import Settings
from labella.jobs.worker import Worker
from labella.learners.cache import EmbeddingCache
from labella.learners.encoders import get_text_encoder
from labella.services import encoding
from labella.services.importing import content_hash
from labella.storage.db import Database
from labella.storage.models import Item, Job, JobStatus

TEXTS = [
    "The striker scored twice in the second half.",
    "Whisk the eggs with sugar until pale and fluffy.",
    "The central bank raised interest rates by a quarter point.",
    "Our goalkeeper saved a penalty in the final minute.",
    "Simmer the tomato sauce for twenty minutes.",
    "Shares of the chip maker fell after weak earnings.",
    "The marathon runner broke the course record.",
]


def insert_texts(db: Database, project_id: int, texts: list[str]) -> list[int]:
    with db.transaction() as session:
        items = [
            Item(project_id=project_id, text=t, content_hash=content_hash(t), random_key=i / 100)
            for i, t in enumerate(texts)
        ]
        session.add_all(items)
        session.flush()
        return [item.id for item in items]


def cache_for(settings: Settings) -> EmbeddingCache:
    encoder = get_text_encoder(settings.text_encoder)
    return EmbeddingCache(settings.embeddings_dir, encoder.name, encoder.dim)


def embedded_flags(db: Database, project_id: int) -> list[bool]:
    with db.reader() as session:
        return list(
            session.scalars(
                select(Item.embedded).where(Item.project_id == project_id).order_by(Item.id)
            )
        )


def test_encode_job_embeds_caches_and_reports_progress(
    db: Database, settings: Settings, worker: Worker, make_project: Callable[..., Any]
) -> None:
    project = make_project(("sports", "cooking", "finance"))
    insert_texts(db, project.id, TEXTS)
    job = encoding.request_encoding(db, project.id)
    assert worker.run_until_idle() >= 1

    with db.reader() as session:
        finished = session.get(Job, job.id)
        assert finished is not None
    assert finished.status == JobStatus.SUCCEEDED, finished.error
    assert (finished.progress_done, finished.progress_total) == (len(TEXTS), len(TEXTS))
    assert finished.result is not None
    assert finished.result["encoded"] + finished.result["reused"] == len(TEXTS)
    assert "cold-start ranking" in finished.message
    assert embedded_flags(db, project.id) == [True] * len(TEXTS)

    cache = cache_for(settings)
    try:
        keys = [content_hash(t) for t in TEXTS]
        assert cache.missing(keys) == []
        vectors, found = cache.get_many(keys)
    finally:
        cache.close()
    assert found.all()
    assert vectors.shape == (len(TEXTS), 384)
    # MiniLM vectors are unit length; two football sentences are closer than football and baking
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4
    assert float(vectors[0] @ vectors[3]) > float(vectors[0] @ vectors[1])


def test_second_run_encodes_nothing(
    db: Database, settings: Settings, worker: Worker, make_project: Callable[..., Any]
) -> None:
    project = make_project(("sports", "cooking", "finance"))
    insert_texts(db, project.id, TEXTS)
    first = encoding.encode_project(db, settings, project.id)
    assert first.embedded == len(TEXTS)

    # Nothing left: the job walks no item at all.
    again = encoding.encode_project(db, settings, project.id)
    assert (again.encoded, again.reused) == (0, 0)

    # Even with the flags lost, every vector comes from the cache: no encoder call.
    with db.transaction() as session:
        session.execute(update(Item).where(Item.project_id == project.id).values(embedded=False))
    rerun = encoding.encode_project(db, settings, project.id)
    assert (rerun.encoded, rerun.reused) == (0, len(TEXTS))
    assert embedded_flags(db, project.id) == [True] * len(TEXTS)


class Killed(Exception):
    """Stands in for the process dying after the first chunk was committed."""


def test_a_killed_encode_resumes_at_the_next_chunk(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project(("sports", "cooking", "finance"))
    ids = insert_texts(db, project.id, TEXTS)
    settings.encode_chunk = 3
    reports: list[tuple[int, int, str | None]] = []

    def die_after_first_chunk(
        done: int, total: int, message: str | None = None, *, force: bool = False
    ) -> None:
        reports.append((done, total, message))
        if message and message.startswith("embedded"):
            raise Killed()

    with pytest.raises(Killed):
        encoding.encode_project(db, settings, project.id, progress=die_after_first_chunk)
    assert embedded_flags(db, project.id) == [True] * 3 + [False] * (len(TEXTS) - 3)
    assert reports[-1][:2] == (3, len(TEXTS))

    resumed: list[int] = []
    result = encoding.encode_project(
        db,
        settings,
        project.id,
        progress=lambda done, total, message=None, *, force=False: resumed.append(done),
    )
    # The resumed run starts from the 3 already done and only walks the other items.
    assert resumed[0] == 3
    assert resumed[-1] == len(TEXTS)
    assert result.encoded + result.reused == len(TEXTS) - 3
    assert embedded_flags(db, project.id) == [True] * len(TEXTS)
    with db.reader() as session:
        assert session.scalar(
            select(func.count()).where(Item.id.in_(ids), Item.embedded.is_(True))
        ) == len(TEXTS)


def test_encode_job_embeds_image_items_from_their_files(
    db: Database,
    settings: Settings,
    worker: Worker,
    make_project: Callable[..., Any],
    tmp_path: Any,
) -> None:
    """Image projects: the job reads each image's bytes (checked against its hash) and encodes
    them with the project's image encoder; a file gone from disk is reported, not fatal."""
    import numpy as np

    from labella.learners.encoders import get_encoder
    from labella.services.image_import import import_folder
    from tests.image_files import write_image

    project = make_project(("cat", "dog"), kind="image_classification")
    photos = tmp_path / "photos"
    paths = [write_image(photos / f"{i}.{fmt}", i) for i, fmt in enumerate(["jpg", "png", "webp"])]
    import_folder(db, settings, project.id, photos, roots=[photos])
    paths[2].unlink()
    assert worker.run_until_idle() >= 1

    with db.reader() as session:
        job = session.scalars(select(Job).where(Job.kind == "encode")).one()
        rows = session.execute(
            select(Item.text, Item.embedded, Item.content_hash)
            .where(Item.project_id == project.id)
            .order_by(Item.id)
        ).all()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result is not None and job.result["unreadable"] == 1
    assert "no longer on disk" in job.result["unreadable_examples"][0]
    assert "could not be read" in job.message
    assert [(r.text, r.embedded) for r in rows] == [
        ("0.jpg", True),
        ("1.png", True),
        ("2.webp", False),
    ]

    encoder = get_encoder(project.encoder)
    cache = EmbeddingCache(settings.embeddings_dir, encoder.name, encoder.dim)
    try:
        vectors, found = cache.get_many([r.content_hash for r in rows])
    finally:
        cache.close()
    assert found.tolist() == [True, True, False]
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)
    # the same pixels encoded directly give the cached vector
    direct = encoder.encode([paths[0].read_bytes()])
    assert np.allclose(direct[0], vectors[0], atol=1e-5)
