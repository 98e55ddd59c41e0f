"""The FastAPI app factory. Nothing heavy happens at import time: the database, the schema
upgrade and the worker are set up when the app starts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from labella.api.limits import RequestSizeLimit
from labella.config import Settings
from labella.errors import LabellaError, Unauthorized
from labella.jobs.worker import Worker
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, db: Database | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = db or Database.from_settings(settings)
        upgrade_database(database.engine)
        app.state.db = database
        app.state.worker = None
        if settings.run_worker:
            from labella.jobs import executors  # noqa: F401  (registers the job kinds)

            worker = Worker(database, settings)
            worker.start()
            app.state.worker = worker
        try:
            yield
        finally:
            if app.state.worker is not None:
                app.state.worker.stop()
            if db is None:
                database.dispose()

    app = FastAPI(
        title="Labella",
        version="0.1.0",
        description="Active-learning data labeling: label the items that teach the model most.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(RequestSizeLimit, limit=settings.max_request_bytes)
    _install_error_handlers(app)
    _include_routers(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LabellaError)
    async def domain_error(_request: Request, exc: LabellaError) -> JSONResponse:
        body: dict[str, object] = {"detail": exc.message, "code": exc.code}
        if exc.details:
            body["details"] = exc.details
        headers: dict[str, str] = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = 'Bearer realm="labella"'
        return JSONResponse(status_code=exc.status_code, content=body, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            problems.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
        return JSONResponse(
            status_code=422,
            content={
                "detail": "; ".join(problems),
                "code": "invalid_input",
                "errors": jsonable_encoder(exc.errors()),
            },
        )


def _include_routers(app: FastAPI) -> None:
    from labella.api.routes import jobs, projects

    app.include_router(projects.router)
    app.include_router(jobs.router)

    from labella.api.routes import labeling as labeling_routes

    app.include_router(labeling_routes.router)

    from labella.api.routes import models as model_routes

    app.include_router(model_routes.router)

    from labella.api.routes import data as data_routes

    app.include_router(data_routes.router)

    from labella.api.routes import items as item_routes

    app.include_router(item_routes.router)

    from labella.api.routes import review as review_routes

    app.include_router(review_routes.router)

    from labella.api.routes import agreement as agreement_routes

    app.include_router(agreement_routes.router)

    from labella.api.routes import evaluation as evaluation_routes

    app.include_router(evaluation_routes.router)

    from labella.api.routes import accounts as account_routes
    from labella.api.routes import members as member_routes

    app.include_router(account_routes.router)
    app.include_router(member_routes.router)

    from labella.api.routes import media as media_routes

    app.include_router(media_routes.router)

    from labella.api.routes import detection as detection_routes

    app.include_router(detection_routes.router)

    from labella.api.routes import detection_autolabel as detection_autolabel_routes

    app.include_router(detection_autolabel_routes.router)

    from labella.api.routes import boxes as box_routes

    app.include_router(box_routes.router)

    from labella.web import routes as web_routes

    web_routes.install(app)
