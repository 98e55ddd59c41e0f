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


# Every test user's password. Its argon2 hash is computed once per session (hashing is slow on
# purpose) and stored for each user the fixtures make.
TEST_PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def test_password_hash() -> str:
    from labella.services import accounts

    return accounts.hash_password(TEST_PASSWORD)


def signed_in_client(app: Any, db: Database, username: str, password_hash: str, **user: Any) -> Any:
    """A TestClient signed in as a new user by an API token (``.username`` says who)."""
    from labella.services import accounts

    accounts.create_user(db, username, password_hash=password_hash, actor="test", **user)
    token = accounts.create_token(db, username, name="tests", actor="test")
    api_client = TestClient(app, headers={"Authorization": f"Bearer {token.secret}"})
    api_client.username = username  # type: ignore[attr-defined]
    return api_client


@pytest.fixture
def client(settings: Settings, db: Database, test_password_hash: str) -> Iterator[TestClient]:
    """The app, signed in as a site administrator ``admin`` (owner of every project)."""
    app = create_app(settings, db=db)
    with TestClient(app) as test_client:
        admin = signed_in_client(app, db, "admin", test_password_hash, is_admin=True)
        test_client.headers.update(admin.headers)
        test_client.username = "admin"  # type: ignore[attr-defined]
        yield test_client


@pytest.fixture
def anonymous_client(client: TestClient) -> TestClient:
    """The same app with no credentials at all."""
    return TestClient(client.app)


@pytest.fixture
def make_user(client: TestClient, db: Database, test_password_hash: str) -> Callable[..., Any]:
    """``make_user(role="annotator", project=pid)``: a new user (a member of ``project`` with
    ``role`` when given) and a TestClient signed in as them by an API token; ``admin=True`` makes
    a site administrator. Their password is ``TEST_PASSWORD``."""
    from labella.services import accounts

    counter = iter(range(1, 10_000))

    def factory(
        role: str | None = None,
        project: int | None = None,
        *,
        username: str | None = None,
        admin: bool = False,
    ) -> Any:
        name = username or f"{role or 'user'}{next(counter)}"
        user_client = signed_in_client(client.app, db, name, test_password_hash, is_admin=admin)
        if project is not None:
            accounts.add_member(db, project, name, role or "annotator", actor="test")
        return user_client

    return factory


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
