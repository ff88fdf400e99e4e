"""Alembic environment: runs on the connection handed over by anb.core.migrations."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from anb.core.db import Base, get_engine
from anb.public import models as _public_models  # noqa: F401 - register the tables
from anb.users import models as _users_models  # noqa: F401
from anb.videos import models as _videos_models  # noqa: F401

MIGRATION_LOCK = 7_251_031  # any constant: serialises concurrent `anb migrate` on PostgreSQL


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        with get_engine().begin() as own_connection:
            _run(own_connection)
    else:
        _run(connection)


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()


run_migrations()
