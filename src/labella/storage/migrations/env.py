"""Alembic environment. The app passes its own connection (``config.attributes["connection"]``), so
migrations run on exactly the engine the server uses; the ``alembic`` CLI falls back to settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from labella.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from labella.config import Settings
        from labella.storage.db import create_db_engine

        engine = create_db_engine(Settings())
        with engine.connect() as conn:
            _run(conn)
        return
    _run(connection)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
