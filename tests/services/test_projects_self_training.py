"""The ``self_training`` project setting (services.projects): on by default for single-label
classification projects, off for multi-label and object-detection ones, which refuse it with a
reason naming it and without storing anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from labella.errors import InvalidInput
from labella.services import projects as project_service
from labella.storage.db import Database
from labella.storage.models import AuditEvent


def spec(name: str, **fields: Any) -> project_service.ProjectSpec:
    return project_service.ProjectSpec(
        name=name,
        classes=[project_service.ClassSpec("a"), project_service.ClassSpec("b")],
        **fields,
    )


def updates(db: Database, project_id: int) -> list[dict[str, Any]]:
    with db.reader() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.project_id == project_id, AuditEvent.action == "project.update")
            .order_by(AuditEvent.id)
        )
        return [dict(event.detail or {}) for event in events]


def test_the_default_follows_the_kind_and_an_explicit_choice_is_kept(db: Database) -> None:
    made = {
        name: project_service.create_project(db, spec(name, **fields)).self_training
        for name, fields in {
            "text": {},
            "images": {"kind": "image_classification"},
            "text tags": {"multi_label": True},
            "image tags": {"kind": "image_classification", "multi_label": True},
            "boxes": {"kind": "object_detection"},
            "text off": {"self_training": False},
            "images on": {"kind": "image_classification", "self_training": True},
            "tags off": {"multi_label": True, "self_training": False},
        }.items()
    }
    assert made == {
        "text": True,
        "images": False,
        "text tags": False,
        "image tags": False,
        "boxes": False,
        "text off": False,
        "images on": True,
        "tags off": False,
    }


@pytest.mark.parametrize(
    ("fields", "mode"),
    [
        ({"multi_label": True}, "multi-label"),
        ({"kind": "image_classification", "multi_label": True}, "multi-label"),
        ({"kind": "object_detection"}, "object-detection"),
    ],
)
def test_turning_it_on_where_it_does_not_apply_is_refused_and_stores_nothing(
    db: Database, fields: dict[str, Any], mode: str
) -> None:
    with pytest.raises(InvalidInput, match=rf"self_training .*single-label classification.*{mode}"):
        project_service.create_project(db, spec("refused", self_training=True, **fields))
    assert project_service.list_projects(db) == []

    project = project_service.create_project(db, spec("kept", **fields))
    with pytest.raises(InvalidInput, match="self_training applies to single-label"):
        project_service.update_project(
            db, project.id, self_training=True, description="not this either"
        )
    after = project_service.get_project(db, project.id)
    assert (after.self_training, after.description) == (False, "")
    assert updates(db, project.id) == []
    # turning it off again is harmless
    project_service.update_project(db, project.id, self_training=False)
    assert project_service.get_project(db, project.id).self_training is False


def test_an_update_toggles_it_and_is_audited(
    db: Database, make_project: Callable[..., Any]
) -> None:
    project = make_project()
    assert project.self_training is True
    off = project_service.update_project(db, project.id, self_training=False, actor="ann")
    assert off.self_training is False
    # None leaves it as it is
    project_service.update_project(db, project.id, retrain_every=20)
    assert project_service.get_project(db, project.id).self_training is False
    on = project_service.update_project(db, project.id, self_training=True)
    assert on.self_training is True
    changes = [
        detail["self_training"] for detail in updates(db, project.id) if "self_training" in detail
    ]
    assert changes == [{"from": True, "to": False}, {"from": False, "to": True}]
