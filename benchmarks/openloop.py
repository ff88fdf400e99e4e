"""An open-loop (arrival-rate) HTTP load generator: requests start at Poisson arrival times
whatever the answers take, so a slow answer never delays the requests after it (the figures
are free of coordinated omission), as real clients arrive.

It runs in an asyncio loop (uvloop) over raw keep-alive HTTP/1.1 connections, a new one
opened whenever none is idle: a few tens of µs of client CPU per request, because the client
shares the machine's cores with the server it measures. Each request's end-to-end time runs
from its sending (a connection opened for it included) to its answer's last byte; how late
the loop sent it after it was due (`late_ms`, not counted in it) says whether the client
itself kept up.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.timed_app import server_ms

REQUEST_TIMEOUT_S = 10.0
MAX_IN_FLIGHT = 256
"""Requests a driver keeps open at once; an arrival beyond it is counted as DROPPED rather
than opening more sockets against a server that no longer keeps up."""
NO_ANSWER = 0  # status of a request that got no answer (connection error, timeout)
DROPPED = -1  # status of an arrival the client did not send (MAX_IN_FLIGHT reached)
TIMED_OUT = b"no answer within REQUEST_TIMEOUT_S"  # the body of such an answer


@dataclass(frozen=True)
class Request:
    kind: str  # the request class it is counted in
    method: str
    target: str  # path and query
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True)
class Record:
    """One request of a measured window."""

    kind: str
    due_s: float  # since the window's start
    late_ms: float  # how late the client sent it
    e2e_ms: float
    server_ms: float | None  # from the answer's Server-Timing header
    status: int


class Pool:
    """Keep-alive HTTP/1.1 connections to one server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def send(self, request: Request) -> Answer:
        """The answer, or status NO_ANSWER after REQUEST_TIMEOUT_S or a connection error.
        An idle connection that the server closed meanwhile (its keep-alive timeout) is
        replaced by a new one."""
        payload = self._bytes(request)
        if self.idle:
            answer = await self._exchange_on(self.idle.pop(), payload)
            if answer.status != NO_ANSWER or answer.body == TIMED_OUT:
                return answer
        try:
            connection = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            return Answer(NO_ANSWER, {}, repr(exc).encode())
        return await self._exchange_on(connection, payload)

    async def _exchange_on(
        self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], payload: bytes
    ) -> Answer:
        """The answer on `connection`, which stays open for the next request unless the
        server closes it or the exchange fails."""
        try:
            answer = await asyncio.wait_for(self._exchange(connection, payload), REQUEST_TIMEOUT_S)
        except TimeoutError:
            connection[1].close()
            return Answer(NO_ANSWER, {}, TIMED_OUT)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            connection[1].close()
            return Answer(NO_ANSWER, {}, repr(exc).encode())
        if answer.headers.get("connection", "").lower() == "close":
            connection[1].close()
        else:
            self.idle.append(connection)
        return answer

    def _bytes(self, request: Request) -> bytes:
        lines = [f"{request.method} {request.target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in request.headers]
        if request.method == "POST":
            lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    @staticmethod
    async def _exchange(
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], payload: bytes
    ) -> Answer:
        reader, writer = connection
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        else:
            body = b""
        return Answer(int(status_line.split()[1]), headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")  # the empty trailer
    return b"".join(parts)


@dataclass
class Window:
    """When a driver runs, in wall-clock seconds (time.time(), shared by processes):
    unrecorded from `warm_from`, recorded from `start` to `end`."""

    warm_from: float
    start: float
    end: float


@dataclass
class Driver:
    """Sends `next_request()` at `rate` Poisson arrivals per second over a window."""

    pool: Pool
    next_request: Callable[[], Request]
    rate: float
    rng: random.Random
    on_answer: Callable[[Request, Answer], None] = lambda request, answer: None
    records: list[Record] = field(default_factory=list)
    first_errors: dict[str, str] = field(default_factory=dict)  # kind -> the first one

    async def run(self, window: Window) -> None:
        loop = asyncio.get_running_loop()
        to_loop = loop.time() - time.time()  # wall clock -> the loop's monotonic clock
        due = window.warm_from + self.rng.expovariate(self.rate)
        tasks: set[asyncio.Task[None]] = set()
        while due < window.end:
            await asyncio.sleep(max(0.0, due + to_loop - loop.time()))
            recorded = due >= window.start
            if len(tasks) >= MAX_IN_FLIGHT:
                if recorded:
                    self._keep(Record(self.next_request().kind, due - window.start, 0.0, 0.0,
                                      None, DROPPED), b"")  # fmt: skip
            else:
                task = asyncio.create_task(self._one(due, window.start if recorded else None))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            due += self.rng.expovariate(self.rate)
        if tasks:
            await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S + 5)

    async def _one(self, due: float, start: float | None) -> None:
        request = self.next_request()
        sent, began = time.time(), time.perf_counter()
        answer = await self.pool.send(request)
        e2e_ms = 1000 * (time.perf_counter() - began)
        self.on_answer(request, answer)
        if start is not None:
            record = Record(
                request.kind, due - start, 1000 * max(0.0, sent - due), e2e_ms,
                server_ms(answer.headers.get("server-timing")), answer.status,
            )  # fmt: skip
            self._keep(record, answer.body)

    def _keep(self, record: Record, body: bytes) -> None:
        self.records.append(record)
        if record.status != 200 and record.kind not in self.first_errors:
            self.first_errors[record.kind] = f"{record.status}: {body[:200]!r}"


def run_loop(main: Callable[[], object]) -> None:
    """Run a coroutine function under uvloop (asyncio's own loop without it)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(main())  # type: ignore[arg-type]
    else:
        uvloop.run(main())  # type: ignore[arg-type]
