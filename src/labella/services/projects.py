"""Project use cases: create, list, inspect and change projects and their label sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import selectinload

from labella.errors import Conflict, InvalidInput, NotFound
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    Job,
    JobStatus,
    Label,
    LabelClass,
    LabelValue,
    ModelVersion,
    Project,
    ProjectKind,
)

SUPPORTED_KINDS = (ProjectKind.TEXT_CLASSIFICATION,)
PALETTE = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
]


@dataclass(frozen=True)
class ClassSpec:
    name: str
    color: str = ""
    shortcut: str = ""


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    classes: list[ClassSpec]
    kind: str = ProjectKind.TEXT_CLASSIFICATION
    multi_label: bool = False
    description: str = ""
    strategy: str = "margin"
    strategy_params: dict[str, Any] = field(default_factory=dict)
    retrain_every: int = 50
    head: str = "linear"


@dataclass(frozen=True)
class ProjectStatus:
    project: Project
    counts: dict[str, int]
    embedded: int
    total: int
    model_version: ModelVersion | None
    active_jobs: list[Job]


def _check_strategy(name: str, params: dict[str, Any]) -> None:
    from labella.strategies import available_strategies, get_strategy

    if name not in available_strategies():
        raise InvalidInput(
            f"unknown query strategy {name!r}; choose one of: {', '.join(available_strategies())}"
        )
    try:
        get_strategy(name, **params)
    except TypeError as exc:
        raise InvalidInput(f"bad settings for strategy {name!r}: {exc}") from exc
    except ValueError as exc:
        raise InvalidInput(f"bad settings for strategy {name!r}: {exc}") from exc


def _clean_class_names(classes: list[ClassSpec], *, multi_label: bool) -> list[ClassSpec]:
    cleaned = [ClassSpec(c.name.strip(), c.color, c.shortcut) for c in classes]
    if any(not c.name for c in cleaned):
        raise InvalidInput("class names must not be empty")
    names = [c.name for c in cleaned]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(f"class names must be unique; repeated: {', '.join(duplicates)}")
    minimum = 1 if multi_label else 2
    if len(cleaned) < minimum:
        kind = "a multi-label" if multi_label else "a single-label"
        raise InvalidInput(f"{kind} project needs at least {minimum} classes, got {len(cleaned)}")
    return cleaned


def create_project(db: Database, spec: ProjectSpec) -> Project:
    name = spec.name.strip()
    if not name:
        raise InvalidInput("project name must not be empty")
    if spec.kind not in {k.value for k in ProjectKind}:
        kinds = ", ".join(k.value for k in ProjectKind)
        raise InvalidInput(f"unknown project kind {spec.kind!r}; choose one of: {kinds}")
    if spec.kind not in SUPPORTED_KINDS:
        raise InvalidInput(f"project kind {spec.kind!r} is not available in this version yet")
    if spec.retrain_every < 1:
        raise InvalidInput("retrain_every must be at least 1 label")
    classes = _clean_class_names(spec.classes, multi_label=spec.multi_label)
    _check_strategy(spec.strategy, spec.strategy_params)
    with db.transaction() as session:
        if repo.get_project_by_name(session, name) is not None:
            raise Conflict(f"a project named {name!r} already exists")
        project = Project(
            name=name,
            description=spec.description,
            kind=spec.kind,
            multi_label=spec.multi_label,
            strategy=spec.strategy,
            strategy_params=dict(spec.strategy_params),
            retrain_every=spec.retrain_every,
            head=spec.head,
        )
        for position, cls in enumerate(classes):
            project.classes.append(
                LabelClass(
                    name=cls.name,
                    position=position,
                    color=cls.color or PALETTE[position % len(PALETTE)],
                    shortcut=cls.shortcut or (str(position + 1) if position < 9 else ""),
                )
            )
        session.add(project)
        session.flush()
        return repo.get_project(session, project.id)


def list_projects(db: Database) -> list[Project]:
    with db.reader() as session:
        return list(
            session.scalars(
                select(Project).order_by(Project.id).options(selectinload(Project.classes))
            )
        )


def get_project(db: Database, project_id: int) -> Project:
    with db.reader() as session:
        return repo.get_project(session, project_id)


def project_status(db: Database, project_id: int) -> ProjectStatus:
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        counts = repo.count_items_by_status(session, project_id)
        active = list(
            session.scalars(
                select(Job)
                .where(
                    Job.project_id == project_id,
                    Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
                )
                .order_by(Job.id)
            )
        )
        return ProjectStatus(
            project=project,
            counts=counts,
            embedded=repo.count_embedded(session, project_id),
            total=sum(counts.values()),
            model_version=repo.latest_model_version(session, project_id),
            active_jobs=active,
        )


def update_project(
    db: Database,
    project_id: int,
    *,
    description: str | None = None,
    strategy: str | None = None,
    strategy_params: dict[str, Any] | None = None,
    retrain_every: int | None = None,
) -> Project:
    with db.transaction() as session:
        project = repo.get_project(session, project_id, for_update=True)
        if strategy is not None or strategy_params is not None:
            new_strategy = strategy or project.strategy
            new_params = (
                strategy_params
                if strategy_params is not None
                else (project.strategy_params if strategy is None else {})
            )
            _check_strategy(new_strategy, new_params)
            project.strategy = new_strategy
            project.strategy_params = dict(new_params)
        if retrain_every is not None:
            if retrain_every < 1:
                raise InvalidInput("retrain_every must be at least 1 label")
            project.retrain_every = retrain_every
        if description is not None:
            project.description = description
        session.flush()
        return repo.get_project(session, project_id)


def add_class(db: Database, project_id: int, cls: ClassSpec) -> Project:
    name = cls.name.strip()
    if not name:
        raise InvalidInput("class name must not be empty")
    with db.transaction() as session:
        project = repo.get_project(session, project_id, for_update=True)
        if any(c.name == name for c in project.classes):
            raise Conflict(f"project {project.name!r} already has a class named {name!r}")
        position = max((c.position for c in project.classes), default=-1) + 1
        session.add(
            LabelClass(
                project_id=project_id,
                name=name,
                position=position,
                color=cls.color or PALETTE[position % len(PALETTE)],
                shortcut=cls.shortcut or (str(position + 1) if position < 9 else ""),
            )
        )
        session.flush()
        session.expire(project)
        return repo.get_project(session, project_id)


def _find_class(project: Project, class_id: int) -> LabelClass:
    for cls in project.classes:
        if cls.id == class_id:
            return cls
    raise NotFound(f"class {class_id} does not exist in project {project.id}")


def update_class(
    db: Database,
    project_id: int,
    class_id: int,
    *,
    name: str | None = None,
    color: str | None = None,
    shortcut: str | None = None,
) -> Project:
    """Rename a class (labels follow, since they refer to the class by id) or restyle it."""
    with db.transaction() as session:
        project = repo.get_project(session, project_id, for_update=True)
        cls = _find_class(project, class_id)
        if name is not None:
            new_name = name.strip()
            if not new_name:
                raise InvalidInput("class name must not be empty")
            if any(c.name == new_name and c.id != class_id for c in project.classes):
                raise Conflict(f"project {project.name!r} already has a class named {new_name!r}")
            cls.name = new_name
        if color is not None:
            cls.color = color
        if shortcut is not None:
            cls.shortcut = shortcut
        session.flush()
        return repo.get_project(session, project_id)


def delete_class(db: Database, project_id: int, class_id: int) -> Project:
    """Delete a class that no label (current or historical) uses; refuse otherwise."""
    with db.transaction() as session:
        project = repo.get_project(session, project_id, for_update=True)
        cls = _find_class(project, class_id)
        in_use = session.scalar(
            select(exists().where(LabelValue.class_id == class_id, LabelValue.label_id == Label.id))
        )
        if in_use:
            raise Conflict(
                f"class {cls.name!r} is used by labels and cannot be deleted; rename it instead"
            )
        minimum = 1 if project.multi_label else 2
        if len(project.classes) - 1 < minimum:
            raise Conflict(f"a project of this kind needs at least {minimum} classes")
        project.classes.remove(cls)
        session.flush()
        return repo.get_project(session, project_id)
