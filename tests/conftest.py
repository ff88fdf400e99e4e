"""Shared fixtures: the app on SQLite and on PostgreSQL, generated clips, signed-in players."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import text, update

from anb.api import create_app
from anb.cache import get_cache
from anb.core.db import dispose_engines, unit_of_work
from anb.core.migrations import upgrade_to_head
from anb.core.settings import get_settings
from anb.public.service import invalidate_views_of
from anb.queue import get_queue
from anb.queue.local import LocalQueue
from anb.storage import get_storage
from anb.storage.local import LocalStorage
from anb.users.models import User
from anb.videos.models import Video, VideoStatus
from tests.clips import Clips, make_clips

POSTGRES_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "postgres"}
REQUIRE_SERVICES = os.environ.get("ANB_REQUIRE_SERVICES") == "1"
PASSWORD = "s3guro-y-largo"


def services_missing(reason: str) -> None:
    """Skip when a real service is absent, but fail in CI (ANB_REQUIRE_SERVICES=1)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (ANB_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def reset_process_state() -> None:
    """Forget cached settings, engines and adapters so the next use reads the environment."""
    for provider in (get_settings, get_storage, get_queue, get_cache):
        provider.cache_clear()
    dispose_engines()


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    return make_clips(tmp_path_factory.mktemp("clips"))


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


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis database of the tests' own (number 15, or ANB_TEST_REDIS_DB, so that two runs
    at once on one machine keep apart), emptied before each use."""
    import redis

    url = f"redis://127.0.0.1:6379/{os.environ.get('ANB_TEST_REDIS_DB', '15')}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        services_missing(f"Redis is not reachable on 127.0.0.1:6379: {exc}")
    return url


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(params=["embedded", "aws"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The settings of a mode: embedded (SQLite, local files, in-process queue and cache)
    or AWS (PostgreSQL, S3 and SQS on the moto server, Redis)."""
    if request.param == "embedded":
        yield {"ANB_DATABASE_URL": f"sqlite:///{tmp_path / 'anb.db'}"}
        return
    import boto3
    import redis

    database = request.getfixturevalue("postgres_database")
    cache = request.getfixturevalue("redis_url")
    endpoint = request.getfixturevalue("moto_endpoint")
    aws = {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint}
    name = f"anb-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", **_client_options(aws)).create_bucket(Bucket=name)
    queue_url = boto3.client("sqs", **_client_options(aws)).create_queue(QueueName=name)["QueueUrl"]
    redis.Redis.from_url(cache).flushdb()
    yield {
        **aws,
        "ANB_DATABASE_URL": database,
        "ANB_STORAGE_URL": f"s3://{name}/media",
        "ANB_QUEUE_URL": queue_url,
        "ANB_CACHE_URL": cache,
    }
    _truncate(database)


def _client_options(aws: dict[str, str]) -> dict[str, str]:
    return {
        "endpoint_url": aws["AWS_ENDPOINT_URL"],
        "region_name": aws["AWS_DEFAULT_REGION"],
        "aws_access_key_id": aws["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": aws["AWS_SECRET_ACCESS_KEY"],
    }


def _truncate(url: str) -> None:
    from anb.core.db import build_engine

    engine = build_engine(url)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE votes, videos, upload_sessions, users CASCADE"))
    engine.dispose()


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, backend: dict[str, str]):
    """Point the app at a fresh data dir and the backend's services; returns a re-configurer
    that applies extra settings on top."""

    def apply(**overrides: str) -> None:
        env = {
            "ANB_DATA_DIR": str(tmp_path / "data"),
            "ANB_JWT_SECRET": "test-secret-" + "x" * 32,
            **backend,
            **overrides,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_process_state()

    apply()
    upgrade_to_head()
    yield apply
    reset_process_state()


@pytest.fixture
def client(configure) -> Iterator[TestClient]:
    with TestClient(create_app(), base_url="http://testserver") as test_client:
        yield test_client


def local_only(reason: str) -> None:
    """Skip a test of the embedded storage when the backend is S3."""
    if not isinstance(get_storage(), LocalStorage):
        pytest.skip(f"embedded storage only: {reason}")


def download(client: TestClient, url: str, **options) -> httpx.Response:
    """GET a file URL: the API's own (embedded) or a presigned S3 URL."""
    if url.startswith(str(client.base_url)):
        return client.get(url, **options)
    return httpx.get(url, timeout=30, **options)


def pending_jobs() -> list[dict]:
    """Take the jobs waiting in the configured queue (in-process or SQS)."""
    queue = get_queue()
    if isinstance(queue, LocalQueue):
        return [json.loads(record["body"]) for record in queue.receive(10, wait_seconds=0)]
    messages = queue.client.receive_message(
        QueueUrl=queue.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


@dataclass
class Player:
    user_id: str
    email: str
    headers: dict[str, str]


def signup(client: TestClient | httpx.Client, **fields: str) -> Player:
    data = {
        "first_name": "Ana",
        "last_name": "Pérez",
        "email": f"{uuid.uuid4().hex[:10]}@example.com",
        "password1": PASSWORD,
        "password2": PASSWORD,
        "city": "Bogotá",
        "country": "Colombia",
        **fields,
    }
    created = client.post("/api/auth/signup", json=data)
    assert created.status_code == 201, created.text
    login = client.post("/api/auth/login", json={"email": data["email"], "password": PASSWORD})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    return Player(created.json()["user_id"], data["email"], {"Authorization": f"Bearer {token}"})


@pytest.fixture
def player(client: TestClient) -> Player:
    return signup(client)


def upload(
    client: TestClient | httpx.Client, player: Player, path: Path, title: str = "Mi jugada"
) -> httpx.Response:
    with path.open("rb") as handle:
        return client.post(
            "/api/videos/upload",
            headers=player.headers,
            files={"video_file": (path.name, handle, "video/mp4")},
            data={"title": title},
        )


def publish(video_id: str) -> None:
    """Mark a video processed as the worker does (its original stands in for the output)."""
    with unit_of_work() as session:
        video = session.get(Video, video_id)
        session.execute(
            update(Video)
            .where(Video.id == video_id)
            .values(
                status=VideoStatus.processed,
                processed_key=video.original_key,
                processed_at=datetime.now(UTC),
            )
        )
        owner = session.get(User, video.owner_id)
    invalidate_views_of(get_cache(), owner)


def upload_public(client: TestClient, player: Player, path: Path, title: str = "Jugada") -> str:
    response = upload(client, player, path, title)
    assert response.status_code == 201, response.text
    video_id = response.json()["video_id"]
    publish(video_id)
    return video_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(
    base_url: str, server: subprocess.Popen, *, path: str = "/health", seconds: float = 30
) -> None:
    """Wait for a server started in a subprocess to answer 200 on `path`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stderr.read().decode()[-2000:] if server.stderr else "see its log"
            pytest.fail(f"the server exited: {output}")
        try:
            if httpx.get(f"{base_url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"the server did not answer {path} in {seconds:g} s")


def server_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """This process's environment without its ANB_ settings, plus `settings` (ANB_ names)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANB_")}
    return env | {"ANB_DATA_DIR": str(data_dir)} | settings


@dataclass
class Served:
    base_url: str
    log: Path  # what the server wrote, stdout and stderr

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def served(
    command: list[str], env: dict[str, str], port: int, log: Path, *, stop: int = signal.SIGINT
) -> Iterator[Served]:
    """A server started in a subprocess, once it answers `/health`; stopped with `stop`."""
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            server = Served(f"http://127.0.0.1:{port}", log)
            wait_until_healthy(server.base_url, process, seconds=60)
            yield server
        finally:
            process.send_signal(stop)
            process.wait(30)


def anb_serve_command(port: int) -> list[str]:
    return [sys.executable, "-m", "anb.cli", "serve", "--port", str(port)]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3/SQS server over real HTTP, for the whole test session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """Point boto3 at the moto server with throwaway credentials."""
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": moto_endpoint}.items():
        monkeypatch.setenv(name, value)
    return moto_endpoint


@pytest.fixture
def live_server(configure) -> Iterator[str]:
    """The app under a real uvicorn server in a thread, for tests of real concurrency."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
