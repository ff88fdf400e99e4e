"""Alembic, configured in code so the migrations ship inside the package."""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from anb.core.db import get_engine


@dataclass(frozen=True)
class Upgrade:
    """The schema's revision before and after an upgrade (`None`: an empty database)."""

    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "anb:migrations")
    return config


def upgrade_to_head() -> Upgrade:
    """Upgrade the schema and answer what changed: the caller says it in one line, rather
    than Alembic's INFO lines (`anb` keeps those at WARNING)."""
    config = alembic_config()
    with get_engine().begin() as connection:
        before = _revision(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        return Upgrade(before, _revision(connection))


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
