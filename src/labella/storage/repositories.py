"""Queries shared by the services. Functions take a session and never commit."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    any_,
    bindparam,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session, selectinload

from labella.errors import NotFound
from labella.storage.models import Item, ItemStatus, Label, LabelSource, ModelVersion, Project


def get_project(session: Session, project_id: int, *, for_update: bool = False) -> Project:
    query = select(Project).where(Project.id == project_id).options(selectinload(Project.classes))
    if for_update and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    project = session.scalar(query)
    if project is None:
        raise NotFound(f"project {project_id} does not exist")
    return project


def get_project_by_name(session: Session, name: str) -> Project | None:
    return session.scalar(
        select(Project).where(Project.name == name).options(selectinload(Project.classes))
    )


def get_item(session: Session, project_id: int, item_id: int) -> Item:
    item = session.get(Item, item_id)
    if item is None or item.project_id != project_id:
        raise NotFound(f"item {item_id} does not exist in project {project_id}")
    return item


def count_items_by_status(session: Session, project_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Item.status, func.count()).where(Item.project_id == project_id).group_by(Item.status)
    ).all()
    counts = {status.value: 0 for status in ItemStatus}
    counts.update({status: int(n) for status, n in rows})
    return counts


def count_embedded(session: Session, project_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).where(Item.project_id == project_id, Item.embedded.is_(True))
        )
        or 0
    )


def count_human_labels(session: Session, project_id: int) -> int:
    """Items whose current label is a human's (skips excluded)."""
    return int(
        session.scalar(
            select(func.count()).where(
                Label.project_id == project_id,
                Label.is_current.is_(True),
                Label.source == LabelSource.HUMAN,
                Label.skipped.is_(False),
            )
        )
        or 0
    )


def latest_model_version(session: Session, project_id: int) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion)
        .where(ModelVersion.project_id == project_id)
        .order_by(ModelVersion.version.desc())
        .limit(1)
    )


_HASH_BATCH = 5000  # digests per look-up statement


def project_has_items(session: Session, project_id: int) -> bool:
    return bool(session.scalar(select(exists().where(Item.project_id == project_id))))


def item_ids_by_content_hash(
    session: Session, project_id: int, digests: Iterable[str]
) -> dict[str, int]:
    """The id of each project item whose content hash is among ``digests`` (hashes the project
    does not hold are absent). Uses the (project, content hash) unique index, so the cost follows
    the number of digests, not the size of the project."""
    wanted = sorted(set(digests))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), _HASH_BATCH):
        part = wanted[start : start + _HASH_BATCH]
        query = select(Item.content_hash, Item.id).where(
            Item.project_id == project_id, column_among(session, Item.content_hash, part)
        )
        found.update((str(digest), int(item_id)) for digest, item_id in session.execute(query))
    return found


def column_among(
    session: Session,
    column: ColumnElement[Any] | InstrumentedAttribute[Any],
    values: list[str] | list[int],
) -> ColumnElement[bool]:
    """``column IN values`` with the values as one parameter (an array on PostgreSQL, a JSON list
    read by ``json_each`` on SQLite): an IN list of thousands of bound values costs SQLAlchemy more
    to compile than the database to search (a third of a 100,000-row import)."""
    if session.get_bind().dialect.name == "postgresql":
        element = Integer() if values and isinstance(values[0], int) else String()
        return column == any_(bindparam("among", values, type_=ARRAY(element), unique=True))
    listed = func.json_each(bindparam("among", json.dumps(values), unique=True))
    return column.in_(select(listed.table_valued("value").c.value))


_MARK_BATCH = 500


def mark_random_items(
    session: Session, candidates: Select[Any], *, need: int, seed: list[int], values: dict[str, Any]
) -> list[int]:
    """Draw ``need`` of the item ids ``candidates`` selects (all of them when fewer), uniformly at
    random with ``seed``, update those items with ``values``, and return their ids. The draw is
    over the ids in id order, so the same seed and candidates give the same items."""
    pool = np.asarray(session.scalars(candidates.order_by(Item.id)).all(), dtype=np.int64)
    if need <= 0 or len(pool) == 0:
        return []
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(pool, size=min(need, len(pool)), replace=False)).tolist()
    for start in range(0, len(chosen), _MARK_BATCH):
        session.execute(
            update(Item)
            .where(Item.id.in_(chosen[start : start + _MARK_BATCH]))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    return [int(item_id) for item_id in chosen]
