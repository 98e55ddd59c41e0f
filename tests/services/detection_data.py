"""Planting helpers for the detection active-learning tests: a detector version with chosen boxes,
human box labels and cached image embeddings, written straight into the real database and cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import func, select, update

from labella.config import Settings
from labella.services.encoding import open_cache
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    Item,
    ItemStatus,
    Label,
    LabelBox,
    LabelSource,
    LabelValue,
    ModelVersion,
    Prediction,
    utcnow,
)

Box = tuple[str, float, float, float, float]  # class name, x_min, y_min, x_max, y_max
ScoredBox = tuple[str, float, float, float, float, float]  # ... and the score


def class_ids(db: Database, project_id: int) -> dict[str, int]:
    with db.reader() as session:
        return {c.name: c.id for c in repo.get_project(session, project_id).classes}


def box_dicts(db: Database, project_id: int, boxes: Sequence[ScoredBox]) -> list[dict[str, Any]]:
    ids = class_ids(db, project_id)
    return [
        {"class_id": ids[name], "x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1, "score": s}
        for name, x0, y0, x1, y1, s in boxes
    ]


def plant_detector(
    db: Database, project_id: int, predictions: dict[int, Sequence[ScoredBox]]
) -> ModelVersion:
    """A new detector version whose prediction for each item is the given boxes (the interface's
    image-level summary filled in as the detector does)."""
    ids = class_ids(db, project_id)
    order = list(ids.values())
    with db.transaction() as session:
        latest = session.scalar(
            select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project_id)
        )
        model = ModelVersion(
            project_id=project_id,
            version=(latest or 0) + 1,
            head="centernet",
            encoder="efficientnet-lite0",
            n_labels=10,
            metrics={},
            artifact_path="planted",
        )
        session.add(model)
        session.flush()
        session.query(Prediction).filter(Prediction.project_id == project_id).delete()
        for item_id, boxes in predictions.items():
            dicts = box_dicts(db, project_id, boxes)
            shown = [b for b in dicts if b["score"] >= 0.3]
            session.add(
                Prediction(
                    item_id=item_id,
                    project_id=project_id,
                    model_version_id=model.id,
                    boxes=dicts,
                    predicted=sorted({b["class_id"] for b in shown}),
                    probs=[
                        max((b["score"] for b in dicts if b["class_id"] == c), default=0.0)
                        for c in order
                    ],
                    confidence=min((max(b["score"], 1 - b["score"]) for b in dicts), default=1.0),
                )
            )
        session.flush()
        session.expunge(model)
    return model


def label_boxes(
    db: Database, project_id: int, item_id: int, boxes: Sequence[Box], *, eval_sample: bool = False
) -> None:
    """A human's box label for the item (an empty list: "nothing here"), superseding its
    current label."""
    ids = class_ids(db, project_id)
    with db.transaction() as session:
        session.execute(
            update(Label)
            .where(Label.item_id == item_id, Label.is_current.is_(True))
            .values(is_current=False, superseded_at=utcnow())
        )
        label = Label(
            project_id=project_id,
            item_id=item_id,
            source=LabelSource.HUMAN.value,
            annotator="ann",
            is_current=True,
        )
        label.boxes = [
            LabelBox(class_id=ids[name], x_min=x0, y_min=y0, x_max=x1, y_max=y1)
            for name, x0, y0, x1, y1 in boxes
        ]
        label.values = [LabelValue(class_id=c) for c in sorted({ids[b[0]] for b in boxes})]
        session.add(label)
        session.execute(
            update(Item)
            .where(Item.id == item_id)
            .values(status=ItemStatus.LABELED.value, eval_sample=eval_sample)
        )


def cache_embeddings(
    db: Database, settings: Settings, project_id: int, vectors: dict[int, np.ndarray]
) -> None:
    """Store each item's vector in the project encoder's cache and flag it embedded."""
    with db.reader() as session:
        encoder = repo.get_project(session, project_id).encoder
        hashes = dict(
            session.execute(
                select(Item.id, Item.content_hash).where(Item.id.in_(list(vectors)))
            ).all()
        )
    model, cache = open_cache(settings, encoder)
    try:
        keys = [hashes[i] for i in vectors]
        block = np.zeros((len(keys), model.dim), dtype=np.float32)
        for row, vector in enumerate(vectors.values()):
            block[row, : len(vector)] = vector
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        cache.put_many(keys, block)
    finally:
        cache.close()
    with db.transaction() as session:
        session.execute(update(Item).where(Item.id.in_(list(vectors))).values(embedded=True))
