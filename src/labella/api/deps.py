"""FastAPI dependencies, as ``Annotated`` aliases routes can declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from labella.config import Settings
from labella.jobs.worker import Worker
from labella.storage.db import Database
from labella.storage.models import MAX_ID


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_worker(request: Request) -> Worker | None:
    worker: Worker | None = request.app.state.worker
    return worker


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
WorkerDep = Annotated[Worker | None, Depends(get_worker)]

PathId = Annotated[int, Path(ge=1, le=MAX_ID, description="An id (a whole number from 1)")]
"""A row id in the path (``{project_id}``, ``{item_id}``...). One beyond ``MAX_ID`` names no row;
refused here, it is a 422 instead of a driver's error (a 500)."""
