"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from anb.core.db import Base, get_engine
from anb.core.migrations import upgrade_to_head


def test_migrated_schema_matches_the_models(configure) -> None:
    with get_engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrading_twice_is_harmless(configure) -> None:
    upgrade_to_head()
    with get_engine().connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0006"
