"""Shared fixtures: the app on SQLite and on PostgreSQL, generated clips, signed-in players.

The helpers they are built on, which tests import too, are in tests/support/.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from anb.api import create_app
from anb.core.migrations import upgrade_to_head
from tests.clips import Clips, make_clips
from tests.support.api import Player, signup
from tests.support.aws import AWS_ENV, client_options
from tests.support.servers import free_port
from tests.support.services import (
    fresh_postgres_database,
    reset_process_state,
    services_missing,
    truncate_tables,
)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    return make_clips(tmp_path_factory.mktemp("clips"))


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
    boto3.client("s3", **client_options(aws)).create_bucket(Bucket=name)
    queue_url = boto3.client("sqs", **client_options(aws)).create_queue(QueueName=name)["QueueUrl"]
    redis.Redis.from_url(cache).flushdb()
    yield {
        **aws,
        "ANB_DATABASE_URL": database,
        "ANB_STORAGE_URL": f"s3://{name}/media",
        "ANB_QUEUE_URL": queue_url,
        "ANB_CACHE_URL": cache,
    }
    truncate_tables(database)


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


@pytest.fixture
def player(client: TestClient) -> Player:
    return signup(client)


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
