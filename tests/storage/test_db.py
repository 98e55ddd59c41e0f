"""The database handle: a SQLite write that waits longer than ``sqlite_busy_seconds`` for the
write lock (another process's long transaction, such as a large import) fails with Busy, writes
nothing, and the same write goes through once the lock is free."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labella.config import Settings
from labella.errors import Busy
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database
from labella.storage.models import Project


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection holds SQLite's write lock (BEGIN IMMEDIATE) until the block ends."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("COMMIT")
    finally:
        other.close()


def open_sqlite(tmp_path: Path, busy_seconds: float) -> tuple[Database, Path]:
    path = tmp_path / "busy.db"
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{path}",
        sqlite_busy_seconds=busy_seconds,
        _env_file=None,  # type: ignore[call-arg]
    )
    db = Database.from_settings(settings)
    upgrade_database(db.engine)
    return db, path


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[tuple[Database, Path]]:
    db, path = open_sqlite(tmp_path, busy_seconds=0.2)
    yield db, path
    db.dispose()


@pytest.fixture
def patient_db(tmp_path: Path) -> Iterator[Database]:
    """Waits 10 s for the lock: long enough that not waiting shows."""
    db, _ = open_sqlite(tmp_path, busy_seconds=10)
    yield db
    db.dispose()


def add_project(db: Database, name: str) -> None:
    with db.transaction() as session:
        session.add(Project(name=name))


def count_projects(db: Database) -> int:
    with db.reader() as session:
        return int(session.scalar(select(func.count()).select_from(Project)) or 0)


def test_a_write_that_waits_too_long_for_the_lock_is_busy_and_writes_nothing(
    sqlite_db: tuple[Database, Path],
) -> None:
    db, path = sqlite_db
    add_project(db, "before")
    with write_lock_held(path):
        with pytest.raises(Busy, match="busy with another write") as raised:
            add_project(db, "while locked")
        assert (raised.value.retry_after or 0) > 0
        assert count_projects(db) == 1  # readers are not held up (WAL)
    add_project(db, "after")
    assert count_projects(db) == 2


def test_other_database_errors_are_not_busy(sqlite_db: tuple[Database, Path]) -> None:
    db, _ = sqlite_db
    with pytest.raises(Exception) as raised, db.transaction() as session:
        session.execute(select(func.no_such_function()))
    assert not isinstance(raised.value, Busy)


def test_a_write_that_may_be_skipped_does_not_wait_for_a_writer_of_this_process(
    patient_db: Database,
) -> None:
    db = patient_db
    holding, release = threading.Event(), threading.Event()

    def long_write() -> None:
        with db.transaction() as session:
            session.add(Project(name="long import"))
            session.flush()
            holding.set()
            release.wait(30)

    writer = threading.Thread(target=long_write)
    writer.start()
    try:
        assert holding.wait(10)
        started = time.perf_counter()
        with pytest.raises(Busy) as refused, db.transaction(wait=False) as session:
            session.add(Project(name="bookkeeping"))
        assert time.perf_counter() - started < 5  # at once, not after busy_seconds (10)
        assert "stayed so" not in refused.value.message  # it did not wait, and says no more
    finally:
        release.set()
        writer.join()
    assert count_projects(db) == 1  # the long write; nothing of the skipped one
    with db.transaction(wait=False) as session:  # free again: it writes
        session.add(Project(name="bookkeeping"))
    assert count_projects(db) == 2


def test_a_write_that_may_be_skipped_does_not_wait_for_a_writer_of_another_process(
    tmp_path: Path,
) -> None:
    db, path = open_sqlite(tmp_path, busy_seconds=10)
    try:
        with write_lock_held(path):
            started = time.perf_counter()
            with pytest.raises(Busy) as refused, db.transaction(wait=False) as session:
                session.add(Project(name="bookkeeping"))
            assert time.perf_counter() - started < 5  # at once, not after busy_seconds (10)
            assert "stayed so" not in refused.value.message
        with db.transaction(wait=False) as session:  # free again: it writes
            session.add(Project(name="bookkeeping"))
        # the connection's own patience is back: an ordinary write still waits for the lock
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
        assert count_projects(db) == 1
    finally:
        db.dispose()
