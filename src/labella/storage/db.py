"""The database handle: engine plus two session factories.

SQLite gets WAL, foreign keys and a busy timeout on every connection. Its write transactions start
with ``BEGIN IMMEDIATE`` so that read-then-write units of work (claiming a job, leasing items) take
the write lock up front instead of failing on a lock upgrade; read-only units use a plain ``BEGIN``
and never wait for writers (WAL). Writers of one process queue for SQLite's single write lock on a
Python lock first (see :meth:`Database.transaction`). PostgreSQL is used as configured.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from labella.config import Settings
from labella.errors import Busy

_WRITE_OPTION = "labella_write"
_NO_WAIT_OPTION = "labella_no_wait"
_BUSY_RETRY_SECONDS = 5


class Database:
    def __init__(self, engine: Engine, *, busy_seconds: float = 30.0) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # Longer than this in the queue and a writer goes on to SQLite's own busy timeout (the
        # same length, set on each connection by create_db_engine) anyway.
        self.busy_seconds = busy_seconds
        self._writer = sessionmaker(
            bind=engine.execution_options(**{_WRITE_OPTION: True}),
            expire_on_commit=False,
            autoflush=False,
        )
        self._skippable_writer = sessionmaker(
            bind=engine.execution_options(**{_WRITE_OPTION: True, _NO_WAIT_OPTION: True}),
            expire_on_commit=False,
            autoflush=False,
        )
        self._reader = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)
        # SQLite writes one transaction at a time. Its busy handler makes a waiting writer poll
        # with sleeps of up to 100 ms, so under many concurrent writers some wait for seconds
        # while others get in at once (20 annotators, benchmarks/RESULTS.md: p95 of /next 1.18 s
        # without this queue, 0.35 s with it, same throughput). A lock hands over at once.
        # Reentrant: a nested write transaction of the same thread behaves as without it.
        self._write_queue = threading.RLock() if self.is_sqlite else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(create_db_engine(settings), busy_seconds=settings.sqlite_busy_seconds)

    @contextmanager
    def transaction(self, *, wait: bool = True) -> Iterator[Session]:
        """One unit of work that may write: commit on success, roll back on any error.
        Services open these; repositories never commit.

        On SQLite, :class:`Busy` when another writer held the write lock for longer than
        ``busy_seconds`` (nothing of this unit was written); with ``wait=False`` at once when a
        writer of this process or of another one holds it (for bookkeeping that may be skipped)."""
        if self._write_queue is not None and not wait:
            if not self._write_queue.acquire(blocking=False):
                raise self._busy(waited=False)
            queued = True
        else:
            queued = self._write_queue is not None and self._write_queue.acquire(
                timeout=self.busy_seconds
            )
        try:
            session = (self._writer if wait else self._skippable_writer)()
            try:
                yield session
                session.commit()
            except OperationalError as exc:
                session.rollback()
                if _is_sqlite_busy(exc):
                    raise self._busy(waited=wait) from exc
                raise
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
        finally:
            if queued:
                assert self._write_queue is not None
                self._write_queue.release()

    def _busy(self, *, waited: bool = True) -> Busy:
        how_long = f" and stayed so for up to {self.busy_seconds:g} s" if waited else ""
        return Busy(
            f"the database is busy with another write (such as a large import){how_long}; "
            "nothing was changed, try again",
            retry_after=_BUSY_RETRY_SECONDS,
        )

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only unit of work; anything written in it is discarded. The objects it loaded
        stay usable afterwards (closing detaches them; a rollback would expire them)."""
        session = self._reader()
        try:
            yield session
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def create_db_engine(settings: Settings) -> Engine:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.ensure_dirs()
        busy_ms = round(settings.sqlite_busy_seconds * 1000)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": settings.sqlite_busy_seconds},
            pool_size=8,
            max_overflow=16,
        )
        event.listen(engine, "connect", partial(_configure_sqlite_connection, busy_ms=busy_ms))
        event.listen(engine, "begin", _begin_sqlite_transaction)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any, *, busy_ms: int) -> None:
    # Take BEGIN away from pysqlite so that _begin_sqlite_transaction decides its mode.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")
    # 64 MiB page cache per connection instead of 2 MiB: the queue and items-table indexes of a
    # 100,000-item project then stay in memory between requests.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _is_sqlite_busy(exc: OperationalError) -> bool:
    if not isinstance(exc.orig, sqlite3.Error):
        return False
    # the primary result code: the extended ones (SQLITE_BUSY_SNAPSHOT, ...) keep it in the low byte
    return (exc.orig.sqlite_errorcode & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _begin_sqlite_transaction(connection: Any) -> None:
    options = connection.get_execution_options()
    if not options.get(_WRITE_OPTION):
        connection.exec_driver_sql("BEGIN")
    elif not options.get(_NO_WAIT_OPTION):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        # A write that may be skipped must not sit in SQLite's busy handler either while another
        # process (a CLI import, a worker) holds the write lock; once BEGIN IMMEDIATE has the
        # lock nothing else in the transaction waits (WAL), so the timeout comes back at once.
        patience = int(connection.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0)
        connection.exec_driver_sql("PRAGMA busy_timeout=0")
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={patience:d}")
