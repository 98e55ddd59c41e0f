"""Project use cases: create, list, inspect and change projects and their label sets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import selectinload

from labella.config import Settings
from labella.errors import Conflict, InvalidInput, NotFound
from labella.services import audit
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import (
    MAX_ID,
    Job,
    JobStatus,
    Label,
    LabelClass,
    LabelValue,
    ModelVersion,
    Project,
    ProjectKind,
)

SUPPORTED_KINDS = (
    ProjectKind.TEXT_CLASSIFICATION,
    ProjectKind.IMAGE_CLASSIFICATION,
    ProjectKind.OBJECT_DETECTION,
)
# What each kind's items are made of, i.e. which encoders can embed them.
KIND_MODALITY = {
    ProjectKind.TEXT_CLASSIFICATION.value: "text",
    ProjectKind.IMAGE_CLASSIFICATION.value: "image",
    ProjectKind.OBJECT_DETECTION.value: "image",
}
DEFAULT_ENCODERS = {"text": "all-MiniLM-L6-v2", "image": "efficientnet-lite0"}
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
    strategy: str | None = None
    """None: :func:`default_strategy` for the project's label mode."""
    strategy_params: dict[str, Any] = field(default_factory=dict)
    retrain_every: int = 50
    head: str = "linear"
    encoder: str | None = None
    """A registered encoder of the kind's modality; None: the kind's default
    (all-MiniLM-L6-v2 for texts, efficientnet-lite0 for images)."""
    online_update_every: int = 1
    cost_per_label: float = 0.0
    overlap: int = 1
    """Annotators per overlapped item (services.assignment); 1: every item is labeled once."""
    overlap_share: float = 1.0
    review_sample_share: float = 0.0
    auto_finetune_at: int | None = None
    """Human labels at which the encoder fine-tunes itself (services.finetuning), 0: never;
    None: the settings' ``auto_finetune_at`` for a text classification project, else 0."""
    self_training: bool | None = None
    """Training also learns from the model's confident predictions on the unlabeled items
    (learners.self_training); None: on for a single-label text project, else off (image
    projects may turn it on; multi-label and detection projects cannot)."""


def default_strategy(*, multi_label: bool) -> str:
    """The strategy a new project gets: cluster-margin (uncertain *and* spread out, so a batch
    does not spend its labels on near-duplicates; see benchmarks/RESULTS.md) for single-label
    projects, and its multi-label counterpart's uncertainty, label-wise margin, otherwise."""
    return "ml_margin" if multi_label else "cluster_margin"


def _check_overlap_kind(overlap: int | None, kind: str) -> None:
    # Overlap settles an item by comparing the annotators' class sets; for boxes that would keep
    # one annotator's boxes and silently drop the others', so it is refused, not approximated.
    if overlap is not None and overlap > 1 and kind == ProjectKind.OBJECT_DETECTION:
        raise InvalidInput(
            "overlap (several annotators per item) is not available for object-detection "
            "projects: their answers are boxes, which are not merged yet; use overlap 1"
        )


def _self_training_applies(kind: str, *, multi_label: bool) -> bool:
    """Whether a project of this kind can self-train: its head picks one class per item, which
    is what the confident pseudo-labels are made of (multi-label and box heads have no such
    single prediction to trust)."""
    return kind != ProjectKind.OBJECT_DETECTION and not multi_label


def _self_training_by_default(kind: str, *, multi_label: bool) -> bool:
    """Single-label text projects self-train unless told not to: on MiniLM it adds 1-2 points
    at a few hundred labels. Image projects may turn it on; on EfficientNet-Lite0 features it
    measured within noise of off (benchmarks/RESULTS.md, "Self-training on the pool")."""
    return kind == ProjectKind.TEXT_CLASSIFICATION and not multi_label


def _check_self_training(value: bool | None, kind: str, *, multi_label: bool) -> bool | None:
    """``value`` if a project of this kind may use it as ``self_training``; None stays None."""
    if value and not _self_training_applies(kind, multi_label=multi_label):
        mode = "object-detection" if kind == ProjectKind.OBJECT_DETECTION else "multi-label"
        raise InvalidInput(
            "self_training applies to single-label classification projects only, "
            f"not to a {mode} project; leave it off"
        )
    return value


def _check_retrain_every(retrain_every: int) -> int:
    if not 1 <= retrain_every <= MAX_ID:
        raise InvalidInput(
            f"retrain_every must be between 1 and {MAX_ID} labels, got {retrain_every}"
        )
    return retrain_every


def _check_online_settings(online_update_every: int | None, cost_per_label: float | None) -> None:
    if online_update_every is not None and not 0 <= online_update_every <= 10_000:
        raise InvalidInput(
            "online_update_every must be between 0 (no online updates) and 10000 labels, "
            f"got {online_update_every}"
        )
    if cost_per_label is not None and not (math.isfinite(cost_per_label) and cost_per_label >= 0):
        raise InvalidInput(f"cost_per_label must be a number >= 0, got {cost_per_label}")


@dataclass(frozen=True)
class ProjectStatus:
    project: Project
    counts: dict[str, int]
    embedded: int
    total: int
    model_version: ModelVersion | None
    active_jobs: list[Job]


def _check_strategy(
    name: str, params: dict[str, Any], *, kind: str = ProjectKind.TEXT_CLASSIFICATION.value
) -> None:
    from labella.strategies import available_strategies, get_strategy
    from labella.strategies.detection import available_detection_strategies

    if name in available_detection_strategies():
        _check_detection_strategy(name, params, kind)
        return
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


def _check_detection_strategy(name: str, params: dict[str, Any], kind: str) -> None:
    """A strategy that ranks images by their detector boxes (``strategies.detection``); an
    object-detection project keeping a classification strategy is ranked with the default one."""
    from labella.strategies.detection import get_detection_strategy

    if kind != ProjectKind.OBJECT_DETECTION:
        raise InvalidInput(
            f"strategy {name!r} ranks images by a detector's boxes; it is for object-detection "
            "projects only"
        )
    try:
        get_detection_strategy(name, **params)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"bad settings for strategy {name!r}: {exc}") from exc


def _check_encoder(name: str | None, kind: str) -> str:
    """The encoder a new project of ``kind`` uses: ``name`` if it is registered for the kind's
    modality (plug-ins included), else the kind's default."""
    from labella.learners.encoders import encoder_modality, encoder_names

    modality = KIND_MODALITY[kind]
    if name is None or not name.strip():
        return DEFAULT_ENCODERS[modality]
    name = name.strip()
    try:
        found = encoder_modality(name)
    except ValueError:
        found = None
    if found != modality:
        known = ", ".join(encoder_names(modality))
        raise InvalidInput(
            f"unknown {modality} encoder {name!r} for a {kind.replace('_', ' ')} project; "
            f"registered {modality} encoders: {known}"
        )
    return name


CLASS_FIELD_MAX_CHARS: dict[str, int] = {
    name: getattr(LabelClass.__table__.c[name].type, "length", None) or 0
    for name in ("name", "color", "shortcut")
}
"""The widths of the label_class columns, read from the model so the two cannot drift apart."""


def _check_class_fields(**fields: str | None) -> None:
    for field_name, value in fields.items():
        limit = CLASS_FIELD_MAX_CHARS[field_name]
        if value is not None and len(value) > limit:
            raise InvalidInput(
                f"a class {field_name} may have at most {limit} characters, got {len(value)}"
            )


def _clean_class_names(classes: list[ClassSpec], *, multi_label: bool) -> list[ClassSpec]:
    cleaned = [ClassSpec(c.name.strip(), c.color, c.shortcut) for c in classes]
    if any(not c.name for c in cleaned):
        raise InvalidInput("class names must not be empty")
    for c in cleaned:
        _check_class_fields(name=c.name, color=c.color, shortcut=c.shortcut)
    names = [c.name for c in cleaned]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(f"class names must be unique; repeated: {', '.join(duplicates)}")
    minimum = 1 if multi_label else 2
    if len(cleaned) < minimum:
        kind = "a multi-label" if multi_label else "a single-label"
        raise InvalidInput(f"{kind} project needs at least {minimum} classes, got {len(cleaned)}")
    return cleaned


def create_project(
    db: Database,
    spec: ProjectSpec,
    *,
    actor: str = "system",
    owner_id: int | None = None,
    settings: Settings | None = None,
) -> Project:
    """A new project; ``owner_id`` (the creating user) becomes its owner member. ``settings``
    give the default ``auto_finetune_at`` of a text project (without: that setting's default)."""
    name = spec.name.strip()
    if not name:
        raise InvalidInput("project name must not be empty")
    if spec.kind not in {k.value for k in ProjectKind}:
        kinds = ", ".join(k.value for k in ProjectKind)
        raise InvalidInput(f"unknown project kind {spec.kind!r}; choose one of: {kinds}")
    if spec.kind not in SUPPORTED_KINDS:
        raise InvalidInput(f"project kind {spec.kind!r} is not available in this version yet")
    encoder = _check_encoder(spec.encoder, spec.kind)
    _check_retrain_every(spec.retrain_every)
    classes = _clean_class_names(spec.classes, multi_label=spec.multi_label)
    strategy = spec.strategy or default_strategy(multi_label=spec.multi_label)
    _check_strategy(strategy, spec.strategy_params, kind=spec.kind)
    _check_online_settings(spec.online_update_every, spec.cost_per_label)
    from labella.services import assignment, review

    assignment.check_overlap_settings(spec.overlap, spec.overlap_share)
    _check_overlap_kind(spec.overlap, spec.kind)
    review.check_sample_share(spec.review_sample_share)
    auto_finetune_at = _auto_finetune_at_of(spec, name, encoder, settings)
    self_training = _check_self_training(
        spec.self_training, spec.kind, multi_label=spec.multi_label
    )
    if self_training is None:
        self_training = _self_training_by_default(spec.kind, multi_label=spec.multi_label)
    with db.transaction() as session:
        if repo.get_project_by_name(session, name) is not None:
            raise Conflict(f"a project named {name!r} already exists")
        project = Project(
            name=name,
            description=spec.description,
            kind=spec.kind,
            multi_label=spec.multi_label,
            strategy=strategy,
            strategy_params=dict(spec.strategy_params),
            retrain_every=spec.retrain_every,
            head=spec.head,
            encoder=encoder,
            online_update_every=spec.online_update_every,
            cost_per_label=spec.cost_per_label,
            overlap=spec.overlap,
            overlap_share=spec.overlap_share,
            review_sample_share=spec.review_sample_share,
            auto_finetune_at=auto_finetune_at,
            self_training=self_training,
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
        if owner_id is not None:
            from labella.services.accounts import add_owner

            add_owner(session, project.id, owner_id)
        audit.record(
            session,
            actor=actor,
            action="project.create",
            project_id=project.id,
            detail={"name": name, "classes": [c.name for c in classes]},
        )
        return repo.get_project(session, project.id)


def _auto_finetune_at_of(
    spec: ProjectSpec, name: str, encoder: str, settings: Settings | None
) -> int:
    from labella.services import finetuning

    if spec.auto_finetune_at is None:
        # without settings (tests, scripts): the setting's own default, not the environment's
        default = Settings.model_fields["auto_finetune_at"].default
        return finetuning.default_auto_finetune_at(
            spec.kind,
            multi_label=spec.multi_label,
            encoder=encoder,
            settings_value=settings.auto_finetune_at if settings is not None else int(default),
        )
    return finetuning.check_auto_finetune_at(
        spec.auto_finetune_at,
        kind=spec.kind,
        multi_label=spec.multi_label,
        encoder=encoder,
        name=name,
    )


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
    online_update_every: int | None = None,
    cost_per_label: float | None = None,
    overlap: int | None = None,
    overlap_share: float | None = None,
    review_sample_share: float | None = None,
    auto_finetune_at: int | None = None,
    self_training: bool | None = None,
    actor: str = "system",
) -> Project:
    from labella.services import assignment, review

    _check_online_settings(online_update_every, cost_per_label)
    assignment.check_overlap_settings(overlap, overlap_share)
    review.check_sample_share(review_sample_share)
    with db.transaction() as session:
        project = repo.get_project(session, project_id, for_update=True)
        before = _settings_of(project)
        if review_sample_share is not None:
            project.review_sample_share = review_sample_share
        if overlap_share is not None:
            project.overlap_share = overlap_share
        if overlap is not None and overlap != project.overlap:
            _check_overlap_kind(overlap, project.kind)
            project.overlap = overlap
            # items that now have enough answers are decided (services.assignment)
            assignment.settle_pending(session, project)
        if online_update_every is not None:
            project.online_update_every = online_update_every
        if cost_per_label is not None:
            project.cost_per_label = cost_per_label
        if strategy is not None or strategy_params is not None:
            new_strategy = strategy or project.strategy
            new_params = (
                strategy_params
                if strategy_params is not None
                else (project.strategy_params if strategy is None else {})
            )
            _check_strategy(new_strategy, new_params, kind=project.kind)
            project.strategy = new_strategy
            project.strategy_params = dict(new_params)
        if retrain_every is not None:
            project.retrain_every = _check_retrain_every(retrain_every)
        if description is not None:
            project.description = description
        if auto_finetune_at is not None:
            from labella.services import finetuning

            project.auto_finetune_at = finetuning.check_auto_finetune_at(
                auto_finetune_at,
                kind=project.kind,
                multi_label=project.multi_label,
                encoder=project.encoder,
                name=project.name,
            )
        if self_training is not None:
            _check_self_training(self_training, project.kind, multi_label=project.multi_label)
            project.self_training = self_training
        after = _settings_of(project)
        changed = {k: {"from": before[k], "to": after[k]} for k in after if after[k] != before[k]}
        if changed:
            audit.record(
                session, actor=actor, action="project.update", project_id=project_id, detail=changed
            )
        session.flush()
        return repo.get_project(session, project_id)


_AUDITED_SETTINGS = (
    "description",
    "strategy",
    "strategy_params",
    "retrain_every",
    "online_update_every",
    "cost_per_label",
    "overlap",
    "overlap_share",
    "review_sample_share",
    "auto_finetune_at",
    "self_training",
)


def _settings_of(project: Project) -> dict[str, Any]:
    """The project's settings as plain values, to record what an update changed."""
    values = {name: getattr(project, name, None) for name in _AUDITED_SETTINGS}
    values["strategy_params"] = dict(values["strategy_params"] or {})
    return values


def add_class(db: Database, project_id: int, cls: ClassSpec, *, actor: str = "system") -> Project:
    name = cls.name.strip()
    if not name:
        raise InvalidInput("class name must not be empty")
    _check_class_fields(name=name, color=cls.color, shortcut=cls.shortcut)
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
        audit.record(
            session, actor=actor, action="class.add", project_id=project_id, detail={"name": name}
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
    actor: str = "system",
) -> Project:
    """Rename a class (labels follow, since they refer to the class by id) or restyle it."""
    _check_class_fields(name=None if name is None else name.strip(), color=color, shortcut=shortcut)
    with db.transaction() as session:
        project = repo.get_project(session, project_id, for_update=True)
        cls = _find_class(project, class_id)
        before = {"name": cls.name, "color": cls.color, "shortcut": cls.shortcut}
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
        after = {"name": cls.name, "color": cls.color, "shortcut": cls.shortcut}
        changed = {k: {"from": before[k], "to": after[k]} for k in after if after[k] != before[k]}
        if changed:
            audit.record(
                session,
                actor=actor,
                action="class.update",
                project_id=project_id,
                detail={"class_id": class_id, **changed},
            )
        session.flush()
        return repo.get_project(session, project_id)


def delete_class(db: Database, project_id: int, class_id: int, *, actor: str = "system") -> Project:
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
        audit.record(
            session,
            actor=actor,
            action="class.delete",
            project_id=project_id,
            detail={"class_id": class_id, "name": cls.name},
        )
        session.flush()
        return repo.get_project(session, project_id)
