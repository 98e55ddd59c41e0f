"""Shared fixtures. API and service tests run twice: on a real SQLite file and on a real
PostgreSQL server that this session starts (skipped only when PostgreSQL is not installed and
LABELLA_REQUIRE_POSTGRES is unset; `make test` installs it and sets that variable)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from labella.api.app import create_app
from labella.config import Settings
from labella.jobs.worker import Worker
from labella.services import projects as project_service
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database
from tests.pg_server import (
    PostgresServer,
    PostgresUnavailable,
    create_database,
    drop_database,
    start_postgres,
)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        if os.environ.get("LABELLA_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required but could not start: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedding_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the whole session: each text is encoded once, whatever the test."""
    shared = os.environ.get("LABELLA_TEST_EMBEDDING_CACHE")
    if shared:
        path = Path(shared)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'labella-test.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = create_database(server, name)
    yield url
    drop_database(server, name)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, embedding_cache_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        embedding_cache_dir=embedding_cache_dir,
        run_worker=False,
        worker_poll_seconds=0.05,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    settings.ensure_dirs()
    database = Database.from_settings(settings)
    upgrade_database(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    app = create_app(settings, db=db)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def worker(db: Database, settings: Settings) -> Worker:
    """A worker that tests drive by hand (run_until_idle), so job timing is deterministic."""
    from labella.jobs import executors  # noqa: F401

    return Worker(db, settings, worker_id="test-worker:0")


@pytest.fixture
def make_project(db: Database) -> Callable[..., Any]:
    counter = iter(range(1, 10_000))

    def factory(classes: tuple[str, ...] = ("negative", "positive"), **overrides: Any) -> Any:
        spec = project_service.ProjectSpec(
            name=overrides.pop("name", f"project {next(counter)}"),
            classes=[project_service.ClassSpec(name=c) for c in classes],
            **overrides,
        )
        return project_service.create_project(db, spec)

    return factory
