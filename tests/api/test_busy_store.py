"""While another process holds SQLite's write lock longer than ``sqlite_busy_seconds`` (a large
import, a backup), a write request is answered 503 with Retry-After and a message, not a 500; the
CLI prints one line. Reads go on (WAL), and the same request succeeds once the lock is free."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from labella.api.app import create_app
from labella.cli.main import app as cli
from labella.config import Settings
from labella.storage.db import Database
from tests.conftest import signed_in_client
from tests.storage.test_db import write_lock_held


@pytest.fixture
def busy_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        sqlite_busy_seconds=0.2,
        run_worker=False,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def busy_client(busy_settings: Settings, test_password_hash: str) -> Iterator[TestClient]:
    db = Database.from_settings(busy_settings)
    app = create_app(busy_settings, db=db)
    with TestClient(app):
        yield signed_in_client(app, db, "admin", test_password_hash, is_admin=True)
    db.dispose()


def database_file(settings: Settings) -> Path:
    return Path(settings.resolved_database_url.removeprefix("sqlite:///"))


def test_a_write_while_the_store_is_locked_gets_503_then_succeeds(
    busy_client: TestClient, busy_settings: Settings
) -> None:
    body = {"name": "reviews", "classes": ["negative", "positive"]}
    with write_lock_held(database_file(busy_settings)):
        # the token's first use is recorded by a write that does not wait and is skipped: the token
        # still works, and reads go on
        assert busy_client.get("/api/projects").json() == []
        refused = busy_client.post("/api/projects", json=body)
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "5"
        assert refused.json()["code"] == "busy"
        assert "busy with another write" in refused.json()["detail"]
        assert busy_client.get("/api/projects").json() == []
    assert busy_client.post("/api/projects", json=body).status_code == 201


def test_the_cli_says_busy_in_one_line(
    busy_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELLA_DATA_DIR", str(busy_settings.data_dir))
    monkeypatch.setenv("LABELLA_SQLITE_BUSY_SECONDS", "0.2")
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["project", "list"]).exit_code == 0  # creates the store
    with write_lock_held(database_file(busy_settings)):
        result = runner.invoke(cli, ["project", "create", "reviews", "--classes", "a,b"])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: the database is busy with another write")
    assert len(result.stderr.strip().splitlines()) == 1
