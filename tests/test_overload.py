"""Bursts against a real server in a subprocess: `anb serve` on SQLite, and Gunicorn with two
Uvicorn workers on PostgreSQL + Redis (as on EC2). Under any burst every request gets its
normal answer or a fast 503 with `Retry-After` (never a 500, never a long wait), and
liveness answers at once."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import signal
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass
from multiprocessing.managers import ListProxy
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.clips import Clips
from tests.support.api import PASSWORD
from tests.support.servers import (
    free_port,
    server_env,
    tracer_paused,
    untraced,
    wait_until_healthy,
)
from tests.support.services import fresh_postgres_database

CLIENT_TIMEOUT_SECONDS = 60
_TLS = ssl.create_default_context()  # unused over plain HTTP; one for all, as each costs ~40 ms
# The goal is 100 ms; on this 2-core machine, with the burst's client and PostgreSQL on the
# same cores, p99 over 10 bursts measured 32-173 ms, median 60 ms, 7 of 10 within 100 ms (it
# was 30 s): the bound catches a stall, not noise.
HEALTH_P99_SECONDS = 0.5
LOGIN_TRIES = 30
# the longest wait allowed (ANB_MAX_WAIT_SECONDS 0.5 s; for argon2id, 2 s), plus the time to
# answer on 2 busy cores
SHED_WITHIN_SECONDS = {"/api/auth/login": 3.0}
SHED_DEFAULT_SECONDS = 1.5


@dataclass
class Server:
    base_url: str
    database_url: str


def _server_command(kind: str, port: int) -> list[str]:
    if kind == "embedded":
        return [sys.executable, "-m", "anb.cli", "serve", "--port", str(port)]
    return [
        str(Path(sys.executable).parent / "gunicorn"), "-c", "python:anb.gunicorn_conf",
        "anb.api:create_app()", "--bind", f"127.0.0.1:{port}", "--workers", "2",
    ]  # fmt: skip


@pytest.fixture(autouse=True)
def _untraced_clients() -> Iterator[None]:
    """The server runs untraced (`untraced`); so do this module's clients."""
    with tracer_paused():
        yield


@pytest.fixture(scope="module", params=["embedded", "gunicorn-postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("overload") / "data"
    env = untraced(server_env(data_dir, ANB_JWT_SECRET="overload-" + "x" * 32))
    env |= {"ANB_LOGIN_RATE_LIMIT": "off", "ANB_VOTE_RATE_LIMIT": "off"}
    env |= {"ANB_SIGNUP_RATE_LIMIT": "off"}  # 150 players sign up from one address
    with _database_for(request.param, data_dir) as database_url:
        env["ANB_DATABASE_URL"] = database_url
        if request.param != "embedded":
            env["ANB_CACHE_URL"] = request.getfixturevalue("redis_url")
            subprocess.run([sys.executable, "-m", "anb.cli", "migrate"], env=env, check=True)
        port = free_port()
        command = _server_command(request.param, port)
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(base_url, process, path="/api/health/ready", seconds=60)
            yield Server(base_url, database_url)
        finally:
            process.send_signal(signal.SIGTERM if request.param != "embedded" else signal.SIGINT)
            _, stderr = process.communicate(timeout=30)
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")[-4000:]


def _database_for(kind: str, data_dir: Path):
    if kind == "embedded":
        data_dir.mkdir(parents=True, exist_ok=True)
        return nullcontext(f"sqlite:///{data_dir / 'anb.db'}")
    return fresh_postgres_database()


@dataclass
class Outcome:
    status: int
    seconds: float
    retry_after: str | None = None
    body: str = ""
    what: str = ""


async def _timed(client: httpx.AsyncClient, method: str, url: str, **options) -> Outcome:
    started = time.monotonic()
    try:
        response = await client.request(method, url, **options)
    except httpx.HTTPError as exc:
        return Outcome(0, time.monotonic() - started, body=type(exc).__name__)
    elapsed = time.monotonic() - started
    retry_after = response.headers.get("retry-after")
    return Outcome(response.status_code, elapsed, retry_after, response.text, what=url)


def _client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT_SECONDS, verify=_TLS)


@asynccontextmanager
async def _clients(base_url: str, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client (one connection) per simulated person, as real clients are: a single
    client's pool spends time quadratic in its connections and would be the bottleneck.
    Each connection is opened beforehand, as a load balancer keeps its connections to an
    instance open: the burst is of requests, not of TCP handshakes."""
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(_client(base_url)) for _ in range(count)]
        for start in range(0, count, 50):
            await asyncio.gather(*(c.get("/health") for c in clients[start : start + 50]))
        yield clients


def _assert_normal_or_shed(outcomes: list[Outcome], normal: set[int]) -> None:
    """Every answer is a normal one, or a 503 with Retry-After; nothing slow."""
    odd = [o for o in outcomes if o.status not in normal and o.status != 503]
    assert not odd, f"{len(odd)} unexpected answers, e.g. {odd[:3]}"
    shed = [o for o in outcomes if o.status == 503]
    assert all(o.retry_after and o.retry_after.isdigit() for o in shed), shed[:3]
    late = sorted(
        (round(o.seconds, 2), o.what)
        for o in shed
        if o.seconds >= SHED_WITHIN_SECONDS.get(o.what, SHED_DEFAULT_SECONDS)
    )
    assert not late, f"{len(late)} of {len(shed)} shed requests were told so late: {late[-5:]}"
    slowest = max(o.seconds for o in outcomes)
    assert slowest < 20, f"a request took {slowest:.1f} s"


async def _signup_many(base_url: str, count: int) -> list[str]:
    emails = [f"storm-{uuid.uuid4().hex[:10]}@example.com" for _ in range(count)]
    async with _client(base_url) as client:
        for start in range(0, count, 10):
            batch = emails[start : start + 10]
            answers = await asyncio.gather(*(_signup(client, email) for email in batch))
            assert all(status == 201 for status in answers), answers
    return emails


async def _signup(client: httpx.AsyncClient, email: str) -> int:
    data = {
        "first_name": "Tormenta", "last_name": "Prueba", "email": email,
        "password1": PASSWORD, "password2": PASSWORD, "city": "Cali", "country": "Colombia",
    }  # fmt: skip
    return (await _served(lambda: client.post("/api/auth/signup", json=data))).status_code


async def _served(send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """A setup request's answer, retried as told while the server sheds load."""
    for _ in range(20):
        response = await send()
        if response.status_code != 503:
            break
        await asyncio.sleep(int(response.headers.get("retry-after", "1")))
    return response


async def _login_then_list(client: httpx.AsyncClient, email: str) -> list[Outcome]:
    """Log in as a client would, retrying as told (with jitter) while the server sheds
    load; then list."""
    outcomes: list[Outcome] = []
    for _ in range(LOGIN_TRIES):
        credentials = {"email": email, "password": PASSWORD}
        outcomes.append(await _timed(client, "POST", "/api/auth/login", json=credentials))
        if outcomes[-1].status != 503:
            break
        await asyncio.sleep(int(outcomes[-1].retry_after or "1") * random.uniform(1, 1.5))
    if outcomes[-1].status == 200:
        headers = {"Authorization": f"Bearer {json.loads(outcomes[-1].body)['access_token']}"}
        outcomes.append(await _timed(client, "GET", "/api/videos", headers=headers))
    return outcomes


def test_a_login_storm_gets_answers_not_a_stall(server: Server) -> None:
    """150 players log in at once and list their videos (before: 30-40 s, 500s and
    timeouts). Logins past what argon2id can do in time are told to come back, fast;
    every player is in within the storm's bound."""
    emails = asyncio.run(_signup_many(server.base_url, 150))

    async def storm() -> list[list[Outcome]]:
        async with _clients(server.base_url, len(emails)) as clients:
            return await asyncio.gather(*map(_login_then_list, clients, emails))

    started = time.monotonic()
    sessions = asyncio.run(storm())
    elapsed = time.monotonic() - started
    _assert_normal_or_shed([o for session in sessions for o in session], normal={200})
    signed_in = [
        s for s in sessions if any(o.what.endswith("login") and o.status == 200 for o in s)
    ]
    assert len(signed_in) == len(emails), f"{len(emails) - len(signed_in)} never got in"
    assert all(session[-1].what == "/api/videos" for session in signed_in)  # then listed
    assert elapsed < 30, f"the storm took {elapsed:.1f} s"


async def _token(client: httpx.AsyncClient) -> dict[str, str]:
    email = f"burst-{uuid.uuid4().hex[:10]}@example.com"
    assert await _signup(client, email) == 201
    credentials = {"email": email, "password": PASSWORD}
    login = await _served(lambda: client.post("/api/auth/login", json=credentials))
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def probe_health(base_url: str, stop: EventType, latencies: ListProxy) -> None:
    """Liveness latencies, probed every 20 ms from a process of its own (so the burst's
    client does not delay the probe) until `stop` is set."""
    with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT_SECONDS) as client:
        while not stop.is_set():
            started = time.monotonic()
            status = client.get("/health").status_code
            latencies.append((status, time.monotonic() - started))
            time.sleep(0.02)


@contextmanager
def health_probed(base_url: str) -> Iterator[list[tuple[int, float]]]:
    """Probe liveness while the block runs; the list holds (status, seconds) after it."""
    probes: list[tuple[int, float]] = []
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        stop, latencies = manager.Event(), manager.list()
        prober = context.Process(target=probe_health, args=(base_url, stop, latencies))
        prober.start()
        try:
            while not latencies:  # probing has begun
                time.sleep(0.05)
            yield probes
        finally:
            stop.set()
            prober.join(30)
            probes.extend(latencies)


def test_a_single_token_burst_is_answered_and_health_stays_fast(server: Server) -> None:
    """300 parallel requests with one token (today: mostly 500 after 30 s, and /health
    waits 30 s behind them)."""

    async def burst() -> list[Outcome]:
        async with _client(server.base_url) as client:
            headers = await _token(client)
        async with _clients(server.base_url, 300) as clients:
            calls = [_timed(c, "GET", "/api/videos", headers=headers) for c in clients]
            outcomes = await asyncio.gather(*calls)
            await asyncio.sleep(0.2)
        return outcomes

    with health_probed(server.base_url) as health:
        outcomes = asyncio.run(burst())
    _assert_normal_or_shed(outcomes, normal={200})
    assert sum(o.status == 200 for o in outcomes) >= 8  # at least a database pool's worth
    assert all(status == 200 for status, _ in health), health
    seconds = [latency for _, latency in health]
    # inclusive: the p99 of what was observed (the default extrapolates beyond the maximum)
    p99 = max(seconds)
    if len(seconds) > 1:
        p99 = statistics.quantiles(seconds, n=100, method="inclusive")[98]
    assert p99 <= HEALTH_P99_SECONDS, f"/health p99 {p99 * 1000:.0f} ms over {len(seconds)} probes"


def _publish_directly(database_url: str, video_id: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE videos SET status = 'processed', processed_key = original_key, "
                "processed_at = CURRENT_TIMESTAMP WHERE id = :id"
            ),
            {"id": video_id},
        )
    engine.dispose()


def test_parallel_identical_votes_count_once(server: Server, clips: Clips) -> None:
    """50 identical votes at once (today: 1 x 200, 22 x 400, 26 x 500, 1 x 503)."""

    async def setup() -> tuple[dict[str, str], str]:
        async with _client(server.base_url) as client:
            owner = await _token(client)
            with clips.landscape.open("rb") as handle:
                files = {"video_file": ("clip.mp4", handle.read(), "video/mp4")}
            uploaded = await client.post(
                "/api/videos/upload", headers=owner, files=files, data={"title": "Triple"}
            )
            assert uploaded.status_code == 201, uploaded.text
            return await _token(client), uploaded.json()["video_id"]

    voter, video_id = asyncio.run(setup())
    _publish_directly(server.database_url, video_id)

    async def votes() -> list[Outcome]:
        url = f"/api/public/videos/{video_id}/vote"
        async with _clients(server.base_url, 50) as clients:
            return await asyncio.gather(*(_timed(c, "POST", url, headers=voter) for c in clients))

    outcomes = asyncio.run(votes())
    _assert_normal_or_shed(outcomes, normal={200, 400})
    assert sum(o.status == 200 for o in outcomes) == 1, outcomes
    refused = [o for o in outcomes if o.status == 400]
    assert all("Ya has votado" in o.body for o in refused), refused[:3]
    public = httpx.get(f"{server.base_url}/api/public/videos", timeout=10).json()
    assert [(v["video_id"], v["votes"]) for v in public] == [(video_id, 1)]
