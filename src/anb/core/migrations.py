"""Alembic, configured in code so the migrations ship inside the package."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from anb.core.db import get_engine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "anb:migrations")
    return config


def upgrade_to_head() -> None:
    config = alembic_config()
    with get_engine().begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
