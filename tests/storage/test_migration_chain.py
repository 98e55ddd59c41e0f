"""Every migration down to the first and back up keeps every item and label, on both backends:
SQLite rebuilds tables to alter them, and with foreign keys on that would cascade-delete the labels
(``storage.migrate`` turns them off while migrating and checks them after)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from labella.services import labeling, projects
from labella.storage.db import Database
from labella.storage.migrate import downgrade_database, upgrade_database
from tests.services.labeling_data import add_items


def test_down_to_0001_and_up_again_keeps_items_and_labels(
    db: Database, make_project: Callable[..., Any]
) -> None:
    project = make_project(cost_per_label=0.5)
    first, second = add_items(db, project.id, 2)
    labeling.submit_label(db, project.id, first, classes=["positive"], annotator="ann")

    downgrade_database(db.engine, "0001")
    with db.engine.connect() as connection:
        items = dict(connection.execute(text("SELECT id, status FROM item")).all())
        labels = connection.execute(text("SELECT item_id, annotator FROM label")).all()
        columns = connection.execute(text("SELECT * FROM project")).keys()
    assert items == {first: "labeled", second: "unlabeled"}
    assert [tuple(row) for row in labels] == [(first, "ann")]
    assert "cost_per_label" not in columns
    if db.is_sqlite:
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1

    upgrade_database(db.engine)
    restored = projects.get_project(db, project.id)
    assert (restored.cost_per_label, restored.online_update_every) == (0.0, 1)
    assert labeling.item_history(db, project.id, first).current_label is not None
