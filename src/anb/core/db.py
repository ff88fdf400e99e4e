"""Database engine and sessions, created lazily once per process (and again after a fork).

The transaction rule: a request's database work, or one step of a job, is one unit of work
(`unit_of_work`, `in_session`, `run_db`). Services only `flush()`; the unit commits when it
ends without an error and rolls back otherwise, so a service can neither forget its commit
nor split the unit in two (`session.commit()` in a unit raises). What must happen only once
the data is stored (sending a job, deleting the files of a deleted row, invalidating cached
pages) is registered with `after_commit`; what undoes work done outside the database before
a commit that then failed, with `on_rollback`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from threading import Lock
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, DateTime, Delete, Engine, Update, create_engine, event
from sqlalchemy.engine import Connection, Dialect, ExceptionContext
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, PoolProxiedConnection
from sqlalchemy.types import TypeDecorator

from anb.core.concurrency import database_pool
from anb.core.pg8000_exchanges import connect_in_one_exchange
from anb.core.pg8000_statements import rewrite_statements_once
from anb.core.pg8000_timestamps import read_timestamps_in_c
from anb.core.settings import get_settings

log = logging.getLogger(__name__)
_lock = Lock()
_engines: dict[tuple[str, int, bool], Engine] = {}
_application_name = "anb-api"
POOL_TIMEOUT_SECONDS = 10  # a backstop: a thread of the database pool always finds a connection
# A pooled connection left unused this long is checked (a round trip) before it is used again;
# one in steady use is not: checking on every checkout was one of a vote's six round trips.
PING_AFTER_IDLE_SECONDS = 1.0
T = TypeVar("T")


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


def build_engine(
    url: str,
    *,
    application_name: str = "anb",
    ca_file: Path | None = None,
    pool_size: int = 5,
    pooled: bool = True,
) -> Engine:
    """An engine for `url` holding at most `pool_size` connections (no overflow: the API runs
    as many database threads as connections, so none waits for one). PostgreSQL connections
    verify the server's certificate against `ca_file` when given (RDS: the AWS RDS CA
    bundle); pg8000 takes TLS and timeouts as connect() arguments, not URL options.
    Unpooled, it opens a connection for each use (for checks that must not wait for one)."""
    pool: dict[str, object] = {"poolclass": NullPool}
    if pooled:
        pool = {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": POOL_TIMEOUT_SECONDS}
    if url.startswith("sqlite"):
        sqlite_args = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(url, connect_args=sqlite_args, **pool)
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    rewrite_statements_once()
    connect_args: dict[str, object] = {"application_name": application_name, "timeout": 10}
    if ca_file is not None:
        connect_args["ssl_context"] = ssl.create_default_context(cafile=str(ca_file))
    engine = create_engine(url, connect_args=connect_args, **pool)
    event.listen(engine, "do_connect", connect_in_one_exchange)
    event.listen(engine, "handle_error", _socket_errors_are_disconnects)
    event.listen(engine, "connect", read_timestamps_in_c)
    if pooled:
        _ping_connections_left_idle(engine)
    return engine


def _socket_errors_are_disconnects(context: ExceptionContext) -> None:
    """pg8000 lets a reset socket's OSError through unwrapped, which SQLAlchemy does not take
    for a disconnect: the dead connection went back to the pool and failed the next request
    too. Marked as one, it is replaced (and the pool's older connections with it)."""
    if isinstance(context.original_exception, OSError):
        context.is_disconnect = True


def _ping_connections_left_idle(engine: Engine) -> None:
    """Check a pooled connection before use when it has been idle for
    PING_AFTER_IDLE_SECONDS: one that died meanwhile (a database restart or failover) is
    replaced before any statement runs on it. A connection that fails while in steady use
    fails its request (503), and SQLAlchemy then replaces every connection of the pool."""

    @event.listens_for(engine, "checkin")
    def remember_when_idle(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(
        dbapi_connection: DBAPIConnection,
        record: ConnectionPoolEntry,
        _proxy: PoolProxiedConnection,
    ) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except (engine.dialect.loaded_dbapi.Error, OSError) as exc:  # pg8000: also raw OSError
            raise DisconnectionError("the pooled connection is gone") from exc


def _configure_sqlite(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by _begin_immediate
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_immediate(connection: Connection) -> None:
    """Take SQLite's write lock up front: a read-then-write transaction then waits its turn
    (busy_timeout) instead of failing with "database is locked" under concurrency."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(*, pooled: bool = True) -> Engine:
    """This process's engine: created at first use, so after Gunicorn forks its workers.
    The unpooled one serves readiness checks, which must not wait for a busy pool."""
    settings = get_settings()
    url = settings.resolved_database_url
    key = (url, os.getpid(), pooled)
    with _lock:
        if key not in _engines:
            if url.startswith("sqlite:///"):
                os.makedirs(os.path.dirname(url.removeprefix("sqlite:///")) or ".", exist_ok=True)
            _engines[key] = build_engine(
                url,
                application_name=_application_name,
                ca_file=settings.database_ca_file,
                pool_size=settings.db_pool_size,
                pooled=pooled,
            )
        return _engines[key]


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


class TransactionRuleBroken(RuntimeError):
    """A service committed or rolled back a unit of work itself (see the module's rule)."""


class UnitSession(Session):
    """The session of a unit of work: only the unit ends its transaction."""

    def commit(self) -> None:
        raise TransactionRuleBroken(
            "services flush(); the unit of work (unit_of_work, in_session, run_db) commits"
        )

    def rollback(self) -> None:
        raise TransactionRuleBroken(
            "services raise; the unit of work rolls back when an error leaves it"
        )


_AFTER_COMMIT, _ON_ROLLBACK = "anb_after_commit", "anb_on_rollback"


def after_commit(session: Session, action: Callable[[], object]) -> None:
    """Run `action` after the unit of work of `session` has committed, in the order
    registered; an action that raises makes the unit's caller raise (the data is stored)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


def on_rollback(session: Session, action: Callable[[], object]) -> None:
    """Run `action` if the unit of work of `session` does not commit (to undo what was done
    outside the database for it); its errors are logged, the unit's own error is raised."""
    session.info.setdefault(_ON_ROLLBACK, []).append(action)


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One request's database work, or one step of a job: committed when the block ends
    normally, rolled back when it raises; then its `after_commit` or `on_rollback` actions
    run, once the connection is back in the pool."""
    # Not through a `sessionmaker`: each one makes a subclass of the session class, whose
    # event dispatch SQLAlchemy then sets up, ~7 % of an API process's CPU under load.
    session = UnitSession(get_engine(), expire_on_commit=False)
    try:
        yield session
        Session.commit(session)
    except BaseException:
        _close_quietly(session)
        _undo(session.info.pop(_ON_ROLLBACK, []))
        raise
    _close_quietly(session)
    for action in session.info.pop(_AFTER_COMMIT, []):
        action()


def _undo(actions: list[Callable[[], object]]) -> None:
    for action in reversed(actions):
        try:
            action()
        except Exception:
            log.exception("undoing work of a unit that did not commit failed")


def in_session(func: Callable[[Session], T]) -> T:
    """`func(session)` as one unit of work: the connection is held only meanwhile."""
    with unit_of_work() as session:
        return func(session)


async def run_db(func: Callable[[Session], T]) -> T:
    """`in_session(func)` in a thread of the database pool, or `Overloaded` when the wait for
    one would be too long (see `anb.core.concurrency`)."""
    return await database_pool().run(in_session, func)


def rows_affected(session: Session, statement: Update | Delete) -> int:
    """Execute an UPDATE or DELETE (without RETURNING) and answer how many rows it changed.
    `Session.execute()` returns a CursorResult for such a statement but is typed to return a
    plain Result (it cannot promise one for every statement), which has no `rowcount`: the
    cast is SQLAlchemy's own advice for this case (its 2.0.44 changelog)."""
    return cast("CursorResult[Any]", session.execute(statement)).rowcount


def _close_quietly(session: Session) -> None:
    """Close (rolling back what is unfinished) without raising: this runs after the answer
    was sent, when a lost connection can no longer change it; the pool drops the connection."""
    try:
        session.close()
    except Exception:
        log.warning("closing a database session failed; its connection is discarded", exc_info=True)
        with suppress(Exception):
            session.invalidate()
