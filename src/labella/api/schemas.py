"""HTTP request and response bodies. The domain never imports these; routes convert."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ClassIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    color: str = ""
    shortcut: str = ""


class ClassOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    position: int
    color: str
    shortcut: str


class ClassPatch(BaseModel):
    name: str | None = None
    color: str | None = None
    shortcut: str | None = None


class ProjectCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: str = "text_classification"
    multi_label: bool = False
    classes: list[ClassIn | str] = Field(min_length=1)
    description: str = ""
    strategy: str = "margin"
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    retrain_every: int = Field(default=50, ge=1)


class ProjectPatch(BaseModel):
    description: str | None = None
    strategy: str | None = None
    strategy_params: dict[str, Any] | None = None
    retrain_every: int | None = Field(default=None, ge=1)


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    description: str
    kind: str
    multi_label: bool
    strategy: str
    strategy_params: dict[str, Any]
    encoder: str
    head: str
    retrain_every: int
    created_at: datetime
    classes: list[ClassOut]


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    project_id: int | None
    kind: str
    status: str
    params: dict[str, Any]
    progress_done: int
    progress_total: int
    message: str
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    version: int
    head: str
    encoder: str
    n_labels: int
    metrics: dict[str, Any]
    created_at: datetime


class EncodingStatus(BaseModel):
    embedded: int
    total: int
    fraction: float


class ProjectStatusOut(BaseModel):
    project: ProjectOut
    counts: dict[str, int]
    total_items: int
    encoding: EncodingStatus
    model: ModelVersionOut | None
    active_jobs: list[JobOut]
