"""Migration 0010 (self-training) leaves projects made before it with ``self_training`` off, so
they keep training as they did, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from labella.services import projects
from labella.storage.db import Database
from labella.storage.migrate import downgrade_database, upgrade_database


def test_projects_from_before_0010_read_self_training_off(
    db: Database, make_project: Callable[..., Any]
) -> None:
    project = make_project()
    assert project.self_training is True  # a new single-label project has it on

    downgrade_database(db.engine, "0009")
    with db.engine.connect() as connection:
        columns = connection.execute(text("SELECT * FROM project")).keys()
    assert "self_training" not in columns

    upgrade_database(db.engine)
    restored = projects.get_project(db, project.id)
    assert restored.self_training is False
    assert restored.auto_finetune_at == project.auto_finetune_at
