"""Connections to PostgreSQL: named after their role, TLS verified when a CA is configured,
statements and timestamps read as pg8000 reads them, for less CPU, and each statement sent in
one exchange with the server."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError

from anb.core import db, pg8000_statements, pg8000_timestamps


def test_connections_carry_the_application_name(postgres_database: str) -> None:
    engine = db.build_engine(postgres_database, application_name="anb-worker")
    with engine.connect() as connection:
        name = connection.execute(
            text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        ).scalar()
    engine.dispose()
    assert name == "anb-worker"


def test_a_ca_file_makes_connections_use_verified_tls(
    postgres_database: str, tmp_path: Path
) -> None:
    """The local server speaks no TLS: a client that insists on it must fail, not fall back."""
    import certifi

    engine = db.build_engine(postgres_database, ca_file=Path(certifi.where()))
    with pytest.raises(DBAPIError) as refused, engine.connect():
        pass
    engine.dispose()
    assert "ssl" in str(refused.value).lower() or "tls" in str(refused.value).lower()


def test_the_process_engine_is_rebuilt_after_a_fork(configure) -> None:
    import os

    first = db.get_engine()
    assert db.get_engine() is first
    key = next(key for key, engine in db._engines.items() if engine is first)
    assert key[1] == os.getpid()  # keyed by process: a forked worker builds its own


PLACEHOLDER_CASES = [
    "SELECT a FROM t WHERE b = %s AND c = %s",
    "SELECT '%s stays', E'it\\'s %s', \"col%\" FROM t WHERE x LIKE 'a%%' AND y = %s",
    "SELECT 1 -- a comment with %s\n, %s",
    "SELECT $$ %s $$, %s, 5 %% 3",
]


@pytest.mark.parametrize("statement", PLACEHOLDER_CASES)
def test_kept_placeholder_rewrites_equal_pg8000s_own(statement: str) -> None:
    pg8000_statements.rewrite_statements_once()
    original = pg8000_statements._pg8000_rewrite
    assert original is not None and original is not pg8000_statements._rewrite_once
    arguments = ("a", "b")
    kept = pg8000_statements._rewrite_once("format", statement, arguments)
    assert kept == original("format", statement, arguments)
    assert pg8000_statements._rewrite_once("format", statement, arguments) == kept  # kept


def test_a_statement_sent_again_is_not_rewritten_again(postgres_database: str) -> None:
    engine = db.build_engine(postgres_database)
    query = text(f"SELECT :value || '%-{uuid.uuid4().hex}'")  # a text no test sent before
    before = pg8000_statements._rewritten.cache_info()
    with engine.connect() as connection:
        answers = [connection.execute(query, {"value": v}).scalar() for v in ("x", "y", "z")]
    engine.dispose()
    after = pg8000_statements._rewritten.cache_info()
    assert [answer.split("%")[0] for answer in answers] == ["x", "y", "z"]
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 2)


TIMESTAMP_CASES = [  # (session time zone, value): offsets of hours, minutes and seconds
    ("UTC", "'2026-12-03 10:00:00.123456+00'::timestamptz"),
    ("UTC", "'2026-12-03 10:00:00+00'::timestamptz"),
    ("Asia/Kolkata", "'2026-12-03 10:00:00.5+00'::timestamptz"),
    ("America/St_Johns", "'2026-07-01 23:59:59.999999+00'::timestamptz"),
    ("UTC", "'infinity'::timestamptz"),
    ("UTC", "'-infinity'::timestamptz"),
    ("UTC", "'0044-03-15 12:00:00+00 BC'::timestamptz"),
    ("UTC", "'2026-12-03 10:00:00.25'::timestamp"),
    ("UTC", "'2026-12-03 10:00:00'::timestamp"),
    ("UTC", "'infinity'::timestamp"),
]


@pytest.mark.parametrize(("zone", "value"), TIMESTAMP_CASES)
def test_timestamps_read_in_c_equal_pg8000s_own(
    postgres_database: str, zone: str, value: str
) -> None:
    from pg8000 import converters

    engine = db.build_engine(postgres_database)
    with engine.connect() as connection:
        connection.execute(text(f"SET TIME ZONE '{zone}'"))
        read, as_text = connection.execute(text(f"SELECT {value}, ({value})::text")).one()
        parsers = connection.connection.dbapi_connection.pg_types
    engine.dispose()
    own = converters.timestamptz_in if "timestamptz" in value else converters.timestamp_in
    assert read == own(as_text)
    assert parsers[pg8000_timestamps.TIMESTAMPTZ] is not converters.timestamptz_in
    assert parsers[pg8000_timestamps.TIMESTAMP] is not converters.timestamp_in


def test_an_offset_with_seconds_is_read_where_pg8000_gives_up(postgres_database: str) -> None:
    """Amsterdam's local mean time (+00:19:32): pg8000's own parser answers the text."""
    engine = db.build_engine(postgres_database)
    with engine.connect() as connection:
        connection.execute(text("SET TIME ZONE 'Europe/Amsterdam'"))
        read = connection.execute(text("SELECT '1850-01-01 00:00:00+00'::timestamptz")).scalar()
    engine.dispose()
    assert read == datetime(1850, 1, 1, tzinfo=UTC)
    assert read.utcoffset() == timedelta(minutes=19, seconds=32)


class _CountedFlushes:
    """A connection's socket file that counts the times pg8000 sends what it wrote."""

    def __init__(self, file: object) -> None:
        self.file = file
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        self.file.flush()

    def __getattr__(self, name: str) -> object:
        return getattr(self.file, name)


def test_a_transaction_of_one_statement_takes_two_exchanges(postgres_database: str) -> None:
    """begin with a statement with parameters, then commit: two exchanges (pg8000's own took
    1 + 3 + 3), with the statement's rows."""
    engine = db.build_engine(postgres_database)
    with engine.connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        counted = _CountedFlushes(dbapi_connection._sock)
        dbapi_connection._sock = counted
        rows = connection.execute(
            text("SELECT n, :label || n FROM generate_series(1, :count) AS n"),
            {"label": "row ", "count": 50_000},
        ).all()
        connection.commit()
        dbapi_connection._sock = counted.file
    engine.dispose()
    assert counted.flushes == 2
    assert len(rows) == 50_000 and rows[-1] == (50_000, "row 50000")


@pytest.fixture
def scratch_table(postgres_database: str) -> Iterator[tuple[Engine, str]]:
    engine = db.build_engine(postgres_database)
    table = f"scratch_{uuid.uuid4().hex[:12]}"
    with engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE {table} (k int PRIMARY KEY)"))
        connection.execute(text(f"INSERT INTO {table} VALUES (:k)"), {"k": 1})
    yield engine, table
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {table}"))
    engine.dispose()


def _keys(connection: Connection, table: str) -> list[int]:
    return list(connection.execute(text(f"SELECT k FROM {table} ORDER BY k")).scalars())


def test_failing_statements_fail_as_before_and_the_connection_stays_in_step(
    scratch_table: tuple[Engine, str],
) -> None:
    """A refused row, a syntax error and a value pg8000 cannot encode (a lone surrogate,
    which a JSON body can carry) each raise; the same connection then answers the next
    statement with its own rows, and nothing of the failed transaction is stored."""
    engine, table = scratch_table
    failures = [
        (IntegrityError, f"INSERT INTO {table} VALUES (:k)", {"k": 1}),
        (ProgrammingError, f"INSERT INTO {table} VALUES (:k", {"k": 2}),
        (UnicodeEncodeError, "SELECT :v", {"v": "\ud800"}),
    ]
    with engine.connect() as connection:
        for error, statement, parameters in failures:
            connection.execute(text(f"INSERT INTO {table} VALUES (:k)"), {"k": 3})
            with pytest.raises(error):
                connection.execute(text(statement), parameters)
            connection.rollback()
            assert connection.execute(text("SELECT :v"), {"v": "next"}).scalar() == "next"
            assert _keys(connection, table) == [1]
            connection.rollback()


def test_copy_still_streams_its_rows_in_a_transaction(scratch_table: tuple[Engine, str]) -> None:
    engine, table = scratch_table
    with engine.connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        cursor = dbapi_connection.cursor()
        cursor.execute(f"COPY {table} FROM STDIN", stream=io.BytesIO(b"7\n"))
        dbapi_connection.rollback()
        cursor.execute(f"COPY {table} FROM STDIN", stream=io.BytesIO(b"5\n6\n"))
        dbapi_connection.commit()
    with engine.connect() as connection:
        assert _keys(connection, table) == [1, 5, 6]


def _backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar()


def _terminate(engine, pid: int) -> None:
    with db.build_engine(str(engine.url), pooled=False).connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_a_connection_that_died_while_idle_is_replaced_before_use(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # every checkout counts as idle
    engine = db.build_engine(postgres_database, pool_size=1)
    first = _backend_pid(engine)
    _terminate(engine, first)
    second = _backend_pid(engine)  # no error: the ping found it dead, a new one was opened
    engine.dispose()
    assert second != first


def test_a_connection_in_steady_use_is_not_pinged(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ping is skipped for a connection just used (the check that saves the round trip):
    if it died meanwhile, the statement fails (the API answers 503) and the pool is renewed."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    engine = db.build_engine(postgres_database, pool_size=1)
    first = _backend_pid(engine)
    _terminate(engine, first)
    with pytest.raises((DBAPIError, OSError)):  # pg8000 lets a reset socket's error through
        _backend_pid(engine)
    assert _backend_pid(engine) != first  # renewed after the failure
    engine.dispose()


# ---------------------------------------------------------------------------- unit of work


@pytest.fixture
def accounts(configure, backend: dict[str, str]) -> type:
    """The users table on the backend, migrated (the app's first request migrates it)."""
    from anb.core.migrations import upgrade_to_head
    from anb.users.models import User

    upgrade_to_head()
    return User


def _account(user_model: type, email: str) -> object:
    return user_model(
        email=email, password_hash="x", first_name="A", last_name="B", city="Bogotá",
        country="Colombia", city_key="bogota", country_key="colombia",
    )  # fmt: skip


def _emails(user_model: type) -> list[str]:
    from sqlalchemy import select

    return db.in_session(lambda session: list(session.scalars(select(user_model.email))))


def test_a_unit_of_work_commits_what_its_services_only_flushed(accounts: type) -> None:
    done: list[str] = []
    with db.unit_of_work() as session:
        session.add(_account(accounts, "uno@example.com"))
        db.after_commit(session, lambda: done.append(f"after commit: {_emails(accounts)}"))
        db.on_rollback(session, lambda: done.append("undone"))
    assert done == ["after commit: ['uno@example.com']"]


def test_a_unit_that_raises_stores_nothing_and_runs_its_undo(accounts: type) -> None:
    done: list[str] = []
    with pytest.raises(LookupError), db.unit_of_work() as session:
        session.add(_account(accounts, "dos@example.com"))
        session.flush()
        db.after_commit(session, lambda: done.append("sent"))
        db.on_rollback(session, lambda: done.append("file deleted"))
        raise LookupError("a service refused")
    assert done == ["file deleted"]
    assert _emails(accounts) == []


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_a_service_that_ends_the_transaction_itself_fails_loudly(accounts: type, end: str) -> None:
    with pytest.raises(db.TransactionRuleBroken), db.unit_of_work() as session:
        session.add(_account(accounts, "tres@example.com"))
        getattr(session, end)()
    assert _emails(accounts) == []
