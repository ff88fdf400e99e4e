# mypy: disable-error-code="no-untyped-call"
# (pg8000 is unannotated; what its calls answer is annotated where this module takes it)
"""pg8000 runs a statement with parameters in three exchanges with the server: Parse and a
Sync, then Describe and a Sync, then Bind, Execute and a Sync, waiting for the answer to
each. Its commit and rollback go the same way, so a vote (begin, one statement, commit) took
seven round trips, and a worker thread coming back from each one has to win the GIL back
from the process's other threads: under load, the waits add up to more than the work.

The protocol allows the five messages to travel together, as libpq sends them: the server
answers them in order and, after an error, skips to the Sync, so a statement that fails
fails the same way. `OneExchangeConnection` sends them so, one exchange per statement, commit
and rollback, and sends a transaction's `begin` with its first statement: a vote takes two.
In-process, begin + a query with a parameter + commit on this machine (medians of 5 rounds
of 2 000): 0.98 → 0.44 ms of wall time, 0.59 → 0.31 ms of CPU."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, cast

from pg8000 import legacy
from pg8000.converters import make_params
from pg8000.core import NULL_BYTE, SYNC_MSG, Context, _flush, _write
from pg8000.exceptions import DatabaseError

BEGIN = "begin transaction"  # what pg8000's cursor sends before a transaction's first statement


class OneExchangeConnection(legacy.Connection):
    """pg8000's connection (the DB-API one SQLAlchemy uses), a statement in one exchange,
    and a transaction's `begin` sent with its first statement.

    COPY (`stream`) keeps pg8000's own exchanges: its data flows between them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._begin_with_next = False

    def execute_simple(self, statement: str) -> Context:
        if statement == BEGIN:  # the cursor's next call is the statement: it goes with it
            self._begin_with_next = True
            return Context(statement)
        context = Context(statement)
        self._exchange(self._staged(lambda: self.send_QUERY(statement)), context)
        return context

    def execute_unnamed(
        self, statement: str, vals: Any = (), oids: Any = (), stream: Any = None
    ) -> Context:
        if stream is not None:
            self._send_begin_alone()
            own: Context = super().execute_unnamed(statement, vals=vals, oids=oids, stream=stream)
            return own
        params = make_params(self.py_types, vals)

        def send() -> None:
            self.send_PARSE(NULL_BYTE, statement, oids)
            self.send_DESCRIBE_STATEMENT(NULL_BYTE)
            self.send_BIND(NULL_BYTE, params)
            self.send_EXECUTE()
            _write(self._sock, SYNC_MSG)

        context = Context(statement)
        self._exchange(self._staged(send), context)
        return context

    def _staged(self, send: Callable[[], None]) -> bytes:
        """What `send` writes with pg8000's own senders, into a buffer first: a value they
        cannot encode (a lone surrogate in a string) raises before any byte reaches the
        server, and the connection stays in step with it."""
        socket, self._sock = self._sock, io.BytesIO()
        try:
            send()
            return cast("io.BytesIO", self._sock).getvalue()
        finally:
            self._sock = socket

    def _exchange(self, messages: bytes, context: Context) -> None:
        """Send `messages` (after a pending `begin`) and read the answers to both."""
        begin = self._pending_begin()
        _write(self._sock, begin + messages)
        _flush(self._sock)
        if not begin:
            self.handle_messages(context)
            return
        try:
            self.handle_messages(Context(BEGIN))
        except DatabaseError:  # the server refused the begin: its answer to the rest follows
            self.handle_messages(context)
            raise
        self.handle_messages(context)

    def _pending_begin(self) -> bytes:
        if not self._begin_with_next:
            return b""
        self._begin_with_next = False
        return self._staged(lambda: self.send_QUERY(BEGIN))

    def _send_begin_alone(self) -> None:
        if self._begin_with_next:
            self._begin_with_next = False
            super().execute_simple(BEGIN)


def connect_in_one_exchange(
    _dialect: object, _record: object, cargs: list[Any], cparams: dict[str, Any]
) -> OneExchangeConnection:
    """SQLAlchemy `do_connect` listener: the engine's connections are `OneExchangeConnection`s
    (pg8000's `connect()` takes the same arguments)."""
    return OneExchangeConnection(*cargs, **cparams)
