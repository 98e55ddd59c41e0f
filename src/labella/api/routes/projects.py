"""Project routes: parse, call the service, shape the answer."""

from __future__ import annotations

from fastapi import APIRouter, status

from labella.api.deps import DbDep, PathId, SettingsDep, WorkerDep
from labella.api.policy import AdminDep, CurrentUserDep, ManageProject, ViewProject
from labella.api.schemas import (
    ClassIn,
    ClassPatch,
    EncodingStatus,
    JobOut,
    ModelVersionOut,
    ProjectCreate,
    ProjectOut,
    ProjectPatch,
    ProjectStatusOut,
)
from labella.services import accounts, finetuning
from labella.services import projects as service

router = APIRouter(prefix="/api/projects", tags=["projects"])


def _class_spec(cls: ClassIn | str) -> service.ClassSpec:
    if isinstance(cls, str):
        return service.ClassSpec(name=cls)
    return service.ClassSpec(name=cls.name, color=cls.color, shortcut=cls.shortcut)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectOut)
def create_project(
    body: ProjectCreate, db: DbDep, settings: SettingsDep, user: AdminDep
) -> ProjectOut:
    """Site administrators create projects and become their owner."""
    spec = service.ProjectSpec(
        name=body.name,
        kind=body.kind,
        multi_label=body.multi_label,
        classes=[_class_spec(c) for c in body.classes],
        description=body.description,
        strategy=body.strategy,
        strategy_params=body.strategy_params,
        retrain_every=body.retrain_every,
        online_update_every=body.online_update_every,
        cost_per_label=body.cost_per_label,
        encoder=body.encoder,
        overlap=body.overlap,
        overlap_share=body.overlap_share,
        review_sample_share=body.review_sample_share,
        auto_finetune_at=body.auto_finetune_at,
        self_training=body.self_training,
    )
    project = service.create_project(
        db,
        spec,
        actor=user.username,
        owner_id=user.id if user.via != "local" else None,
        settings=settings,
    )
    return ProjectOut.model_validate(project)


@router.get("", response_model=list[ProjectOut])
def list_projects(db: DbDep, user: CurrentUserDep) -> list[ProjectOut]:
    """The projects the caller is a member of (every project for a site administrator)."""
    visible = accounts.visible_project_ids(db, user)
    return [
        ProjectOut.model_validate(p)
        for p in service.list_projects(db)
        if visible is None or p.id in visible
    ]


@router.get("/{project_id}", response_model=ProjectOut)
def get_project(project_id: PathId, db: DbDep, member: ViewProject) -> ProjectOut:
    return ProjectOut.model_validate(service.get_project(db, project_id))


@router.patch("/{project_id}", response_model=ProjectOut)
def update_project(
    project_id: PathId,
    body: ProjectPatch,
    db: DbDep,
    settings: SettingsDep,
    worker: WorkerDep,
    member: ManageProject,
) -> ProjectOut:
    if body.encoder is not None:
        # checked before any setting changes, so a bad name leaves the project as it was
        finetuning.check_encoder_choice(settings, service.get_project(db, project_id), body.encoder)
    project = service.update_project(
        db,
        project_id,
        description=body.description,
        strategy=body.strategy,
        strategy_params=body.strategy_params,
        retrain_every=body.retrain_every,
        online_update_every=body.online_update_every,
        cost_per_label=body.cost_per_label,
        overlap=body.overlap,
        overlap_share=body.overlap_share,
        review_sample_share=body.review_sample_share,
        auto_finetune_at=body.auto_finetune_at,
        self_training=body.self_training,
        actor=member.username,
    )
    if body.encoder is not None:
        project = finetuning.switch_encoder(
            db, settings, project_id, body.encoder, actor=member.username
        )
        if worker is not None:
            worker.wake()
    return ProjectOut.model_validate(project)


@router.get("/{project_id}/status", response_model=ProjectStatusOut)
def project_status(project_id: PathId, db: DbDep, member: ViewProject) -> ProjectStatusOut:
    st = service.project_status(db, project_id)
    return ProjectStatusOut(
        project=ProjectOut.model_validate(st.project),
        counts=st.counts,
        total_items=st.total,
        encoding=EncodingStatus(
            embedded=st.embedded,
            total=st.total,
            fraction=(st.embedded / st.total) if st.total else 1.0,
        ),
        model=ModelVersionOut.model_validate(st.model_version) if st.model_version else None,
        active_jobs=[JobOut.model_validate(j) for j in st.active_jobs],
    )


@router.post(
    "/{project_id}/classes", status_code=status.HTTP_201_CREATED, response_model=ProjectOut
)
def add_class(project_id: PathId, body: ClassIn, db: DbDep, member: ManageProject) -> ProjectOut:
    project = service.add_class(db, project_id, _class_spec(body), actor=member.username)
    return ProjectOut.model_validate(project)


@router.patch("/{project_id}/classes/{class_id}", response_model=ProjectOut)
def update_class(
    project_id: PathId, class_id: PathId, body: ClassPatch, db: DbDep, member: ManageProject
) -> ProjectOut:
    project = service.update_class(
        db,
        project_id,
        class_id,
        name=body.name,
        color=body.color,
        shortcut=body.shortcut,
        actor=member.username,
    )
    return ProjectOut.model_validate(project)


@router.delete("/{project_id}/classes/{class_id}", response_model=ProjectOut)
def delete_class(
    project_id: PathId, class_id: PathId, db: DbDep, member: ManageProject
) -> ProjectOut:
    project = service.delete_class(db, project_id, class_id, actor=member.username)
    return ProjectOut.model_validate(project)
