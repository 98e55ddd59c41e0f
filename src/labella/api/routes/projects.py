"""Project routes: parse, call the service, shape the answer."""

from __future__ import annotations

from fastapi import APIRouter, status

from labella.api.deps import DbDep
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
from labella.services import projects as service

router = APIRouter(prefix="/api/projects", tags=["projects"])


def _class_spec(cls: ClassIn | str) -> service.ClassSpec:
    if isinstance(cls, str):
        return service.ClassSpec(name=cls)
    return service.ClassSpec(name=cls.name, color=cls.color, shortcut=cls.shortcut)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectOut)
def create_project(body: ProjectCreate, db: DbDep) -> ProjectOut:
    spec = service.ProjectSpec(
        name=body.name,
        kind=body.kind,
        multi_label=body.multi_label,
        classes=[_class_spec(c) for c in body.classes],
        description=body.description,
        strategy=body.strategy,
        strategy_params=body.strategy_params,
        retrain_every=body.retrain_every,
    )
    return ProjectOut.model_validate(service.create_project(db, spec))


@router.get("", response_model=list[ProjectOut])
def list_projects(db: DbDep) -> list[ProjectOut]:
    return [ProjectOut.model_validate(p) for p in service.list_projects(db)]


@router.get("/{project_id}", response_model=ProjectOut)
def get_project(project_id: int, db: DbDep) -> ProjectOut:
    return ProjectOut.model_validate(service.get_project(db, project_id))


@router.patch("/{project_id}", response_model=ProjectOut)
def update_project(project_id: int, body: ProjectPatch, db: DbDep) -> ProjectOut:
    project = service.update_project(
        db,
        project_id,
        description=body.description,
        strategy=body.strategy,
        strategy_params=body.strategy_params,
        retrain_every=body.retrain_every,
    )
    return ProjectOut.model_validate(project)


@router.get("/{project_id}/status", response_model=ProjectStatusOut)
def project_status(project_id: int, db: DbDep) -> ProjectStatusOut:
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
def add_class(project_id: int, body: ClassIn, db: DbDep) -> ProjectOut:
    return ProjectOut.model_validate(service.add_class(db, project_id, _class_spec(body)))


@router.patch("/{project_id}/classes/{class_id}", response_model=ProjectOut)
def update_class(project_id: int, class_id: int, body: ClassPatch, db: DbDep) -> ProjectOut:
    project = service.update_class(
        db, project_id, class_id, name=body.name, color=body.color, shortcut=body.shortcut
    )
    return ProjectOut.model_validate(project)


@router.delete("/{project_id}/classes/{class_id}", response_model=ProjectOut)
def delete_class(project_id: int, class_id: int, db: DbDep) -> ProjectOut:
    return ProjectOut.model_validate(service.delete_class(db, project_id, class_id))
