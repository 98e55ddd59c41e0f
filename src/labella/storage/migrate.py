"""Bring a database's schema up to date with the Alembic migrations (run at server start)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    _migrate(engine, command.upgrade, revision)


def downgrade_database(engine: Engine, revision: str) -> None:
    _migrate(engine, command.downgrade, revision)


def _migrate(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    config = alembic_config()
    with engine.connect() as connection, _foreign_keys_off(connection), connection.begin():
        config.attributes["connection"] = connection
        step(config, revision)
        _check_foreign_keys(connection)  # inside the transaction: a failure rolls it back


class MigrationBrokeForeignKeys(RuntimeError):
    """A migration left rows that refer to missing rows (it is rolled back)."""


@contextmanager
def _foreign_keys_off(connection: Connection) -> Iterator[None]:
    """On SQLite, foreign keys off while migrating (checked by :func:`_check_foreign_keys`).

    SQLite alters most things by rebuilding a table (Alembic's batch mode: copy, drop the old
    table, rename). With foreign keys on, dropping the old ``item`` table deletes every label
    that refers to it through ON DELETE CASCADE; the SQLite manual's procedure for such changes
    is to switch foreign keys off, change the schema, and run ``PRAGMA foreign_key_check``. The
    pragma has no effect inside a transaction, so it goes straight to the driver before BEGIN.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        return  # PostgreSQL alters tables in place and checks its constraints itself
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise MigrationBrokeForeignKeys(
            f"the migration left {len(broken)} rows referring to missing rows, e.g. {broken[0]}"
        )
