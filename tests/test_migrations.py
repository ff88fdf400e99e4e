"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from anb.core.db import Base, get_engine
from anb.core.migrations import alembic_config, upgrade_to_head


def test_migrated_schema_matches_the_models(configure) -> None:
    with get_engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrading_twice_is_harmless(configure) -> None:
    upgrade_to_head()
    with get_engine().connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0006"


def test_0006_copies_each_owners_scope_keys_and_downgrades(configure) -> None:
    """Videos uploaded before 0006 get their owners' keys, past the first batch of the copy
    (5 000 videos), and the downgrade takes them away again."""
    config = alembic_config()
    users = [
        {"id": f"u{n}", "email": f"u{n}@example.com", "city": city, "key": key}
        for n, (city, key) in enumerate([("Bogotá", "bogota"), ("Lima", "lima")])
    ]
    videos = [{"id": f"v{n:05d}", "owner": f"u{n % 2}"} for n in range(5003)]
    with get_engine().begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
        connection.execute(
            text(
                "INSERT INTO users (id, email, password_hash, first_name, last_name, city,"
                " country, city_key, country_key, name_key, created_at) VALUES (:id, :email,"
                " 'x', 'Ana', 'Pérez', :city, 'País', :key, 'pais', 'ana perez', :at)"
            ),
            [{**user, "at": "2026-01-01 00:00:00"} for user in users],
        )
        connection.execute(
            text(
                "INSERT INTO videos (id, owner_id, title, status, task_id, original_key,"
                " original_bytes, votes, uploaded_at) VALUES (:id, :owner, 'Jugada',"
                " 'uploaded', :id, 'k', 0, 0, :at)"
            ),
            [{**video, "at": "2026-01-01 00:00:00"} for video in videos],
        )
        command.upgrade(config, "0006")
        copied = connection.execute(
            text(
                "SELECT count(*) FROM videos JOIN users ON users.id = videos.owner_id"
                " WHERE videos.city_key = users.city_key AND videos.country_key = 'pais'"
            )
        ).scalar()
        assert copied == len(videos)
        command.downgrade(config, "0005")
        columns = {column["name"] for column in inspect(connection).get_columns("videos")}
        assert not columns & {"city_key", "country_key"}
        command.upgrade(config, "head")
