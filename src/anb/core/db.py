"""Database engine and sessions, created lazily once per process (and again after a fork)."""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from threading import Lock

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from anb.core.settings import get_settings

log = logging.getLogger(__name__)
_lock = Lock()
_engines: dict[tuple[str, int], Engine] = {}
_application_name = "anb-api"


def use_application_name(name: str) -> None:
    """Name this process's database connections (PostgreSQL's `application_name`), e.g.
    `anb-worker`; it applies to engines created from now on."""
    global _application_name
    _application_name = name


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def build_engine(url: str, *, application_name: str = "anb", ca_file: Path | None = None) -> Engine:
    """An engine for `url`. PostgreSQL connections verify the server's certificate against
    `ca_file` when given (RDS: the AWS RDS CA bundle); pg8000 takes TLS and timeouts as
    connect() arguments, not URL options."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    connect_args: dict[str, object] = {"application_name": application_name, "timeout": 10}
    if ca_file is not None:
        connect_args["ssl_context"] = ssl.create_default_context(cafile=str(ca_file))
    return create_engine(url, pool_pre_ping=True, pool_size=10, connect_args=connect_args)


def _configure_sqlite(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by _begin_immediate
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_immediate(connection) -> None:
    """Take SQLite's write lock up front: a read-then-write transaction then waits its turn
    (busy_timeout) instead of failing with "database is locked" under concurrency."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine() -> Engine:
    """This process's engine: created at first use, so after Gunicorn forks its workers."""
    settings = get_settings()
    url = settings.resolved_database_url
    key = (url, os.getpid())
    with _lock:
        if key not in _engines:
            if url.startswith("sqlite:///"):
                os.makedirs(os.path.dirname(url.removeprefix("sqlite:///")) or ".", exist_ok=True)
            _engines[key] = build_engine(
                url, application_name=_application_name, ca_file=settings.database_ca_file
            )
        return _engines[key]


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope() -> Iterator[Session]:
    """One session per request or job; the caller commits, anything unfinished rolls back."""
    session = sessionmaker(get_engine(), expire_on_commit=False)()
    try:
        yield session
    finally:
        _close_quietly(session)


def _close_quietly(session: Session) -> None:
    """Close (rolling back what is unfinished) without raising: this runs after the answer
    was sent, when a lost connection can no longer change it; the pool drops the connection."""
    try:
        session.close()
    except Exception:
        log.warning("closing a database session failed; its connection is discarded", exc_info=True)
        with suppress(Exception):
            session.invalidate()
