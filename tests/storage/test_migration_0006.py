"""Migration 0006 (overlap and agreement) downgrades without losing what the older schema can hold
and upgrades again, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from sqlalchemy import text

from labella.services import labeling, projects
from labella.storage.db import Database
from labella.storage.migrate import alembic_config, upgrade_database
from tests.services.labeling_data import add_items


def test_downgrade_to_0005_keeps_items_and_labels(
    db: Database, make_project: Callable[..., Any]
) -> None:
    single = make_project()
    [labeled] = add_items(db, single.id, 1, prefix="single")
    labeling.submit_label(db, single.id, labeled, classes=["positive"], annotator="ann")
    overlapped = make_project()
    projects.update_project(db, overlapped.id, overlap=2)
    [split] = add_items(db, overlapped.id, 1, prefix="split")
    labeling.submit_label(db, overlapped.id, split, classes=["negative"], annotator="u1")
    labeling.submit_label(db, overlapped.id, split, classes=["positive"], annotator="u2")

    config = alembic_config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    with db.engine.connect() as connection:
        statuses = dict(connection.execute(text("SELECT id, status FROM item")).all())
        labels = connection.execute(text("SELECT item_id, annotator FROM label")).all()
        flags = connection.execute(text("SELECT count(*) FROM label_flag")).scalar_one()
    # every item and the single label stay; the answers and the undecided review entry go
    assert statuses == {labeled: "labeled", split: "unlabeled"}
    assert [tuple(row) for row in labels] == [(labeled, "ann")]
    assert flags == 0

    upgrade_database(db.engine)
    assert projects.get_project(db, overlapped.id).overlap == 1
    history = labeling.item_history(db, single.id, labeled)
    assert history.current_label is not None and history.current_label.kind == "label"
