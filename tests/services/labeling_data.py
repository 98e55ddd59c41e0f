"""Planting helpers for the labeling-loop tests: items with chosen priorities and random keys, and
a model version with chosen predictions, written straight into the real database."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, insert, select

from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import Item, ModelVersion, Prediction


def add_items(
    db: Database,
    project_id: int,
    count: int,
    *,
    priorities: Sequence[float | None] | None = None,
    random_keys: Sequence[float] | None = None,
    embedded: bool = True,
    prefix: str = "text",
) -> list[int]:
    """Insert ``count`` unlabeled items; returns their ids in insertion order."""
    rows = [
        {
            "project_id": project_id,
            "text": f"{prefix} {i}",
            "external_id": f"{prefix}-{i}",
            "content_hash": f"{prefix}-{project_id}-{i}",
            "status": "unlabeled",
            "priority": priorities[i] if priorities is not None else None,
            "priority_reason": f"planted {priorities[i]}"
            if priorities is not None and priorities[i] is not None
            else None,
            "random_key": random_keys[i] if random_keys is not None else (i * 0.618034) % 1.0,
            "embedded": embedded,
        }
        for i in range(count)
    ]
    with db.transaction() as session:
        ids = session.scalars(
            insert(Item).returning(Item.id, sort_by_parameter_order=True), rows
        ).all()
    return [int(i) for i in ids]


def plant_model(
    db: Database, project_id: int, probs: dict[int, Sequence[float]], *, n_labels: int = 10
) -> ModelVersion:
    """A new model version of the project whose predictions are ``probs`` (item id -> one
    probability per class, in class position order); single-label: argmax is predicted."""
    with db.transaction() as session:
        project = repo.get_project(session, project_id)
        class_ids = [c.id for c in sorted(project.classes, key=lambda c: c.position)]
        latest = session.scalar(
            select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project.id)
        )
        model = ModelVersion(
            project_id=project.id,
            version=(latest or 0) + 1,
            head="linear",
            encoder="planted",
            n_labels=n_labels,
            metrics={"class_ids": class_ids},
            artifact_path="planted",
        )
        session.add(model)
        session.flush()
        session.query(Prediction).filter(Prediction.project_id == project.id).delete()
        for item_id, row in probs.items():
            if project.multi_label:
                predicted = [c for c, p in zip(class_ids, row, strict=True) if p >= 0.5]
                confidence = sum(max(p, 1 - p) for p in row) / len(row)
            else:
                best = max(range(len(row)), key=lambda j: row[j])
                predicted = [class_ids[best]]
                confidence = row[best]
            session.add(
                Prediction(
                    item_id=item_id,
                    project_id=project.id,
                    model_version_id=model.id,
                    probs=list(row),
                    predicted=predicted,
                    confidence=confidence,
                )
            )
        session.flush()
        return model
