"""Fault tests run the AWS-mode stack (PostgreSQL, S3 and SQS on moto, Redis) and break it
for real: SIGKILLed workers, a Redis server of their own killed and restarted, network
faults through a TCP proxy in front of PostgreSQL, S3 or SQS."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from sqlalchemy.engine import make_url

from anb.core.settings import get_settings
from tests.faults.tcp_proxy import TcpProxy
from tests.support.servers import free_port
from tests.support.services import services_missing

AWS_ONLY = (
    "AWS mode only: these faults are of PostgreSQL, S3, SQS, Redis and `anb poll`, which the "
    "embedded mode (SQLite, local files, in-process queue and cache) does not use"
)


@pytest.fixture(autouse=True)
def _aws_mode_only(request: pytest.FixtureRequest) -> None:
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("backend") == "embedded":
        pytest.skip(AWS_ONLY)


def wait_for(condition: Callable[[], Any], seconds: float, what: str, step: float = 0.1) -> Any:
    """Poll `condition` until it is truthy (and return it), failing after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds} s: {what}")
        time.sleep(step)


# --- queues ---------------------------------------------------------------------------------


@dataclass
class Queues:
    sqs: Any
    url: str
    dlq_url: str

    def count(self, url: str | None = None) -> int:
        """Messages in the queue, visible or in flight."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url or self.url, AttributeNames=names)
        return sum(int(attributes["Attributes"][name]) for name in names)

    def dead_letters(self) -> list[str]:
        """The bodies in the dead-letter queue (received, then made visible again)."""
        bodies: list[str] = []
        for _ in range(5):
            messages = self.sqs.receive_message(
                QueueUrl=self.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0
            ).get("Messages", [])
            bodies = sorted({*bodies, *(message["Body"] for message in messages)})
        return bodies


def make_queues(visibility_seconds: int, max_receives: int) -> Queues:
    """A job queue with a short visibility timeout and a dead-letter queue."""
    sqs = boto3.client("sqs")
    name = f"anb-faults-{uuid.uuid4().hex[:8]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    redrive = {
        "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
        "maxReceiveCount": str(max_receives),
    }
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_seconds),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    return Queues(sqs, url, dlq_url)


@pytest.fixture
def queues(configure) -> Queues:
    """The app's queue: visibility timeout 3 s, a DLQ after 3 receives; pollers long-poll
    1 s and beat every second (a live job stays invisible 3 s ahead)."""
    created = make_queues(visibility_seconds=3, max_receives=3)
    configure(ANB_QUEUE_URL=created.url, ANB_POLL_WAIT_SECONDS="1", ANB_HEARTBEAT_SECONDS="1")
    return created


# --- `anb poll` in subprocesses ------------------------------------------------------------


@dataclass
class PollProcess:
    process: subprocess.Popen
    log_path: Path
    _log: Any = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def records(self) -> list[dict]:
        """The JSON log lines (and metric lines) written so far."""
        found = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    def kill_hard(self) -> None:
        """SIGKILL the poller and whatever it started (ffmpeg): its process group, which is
        its own (it runs in a session of its own), as when its machine or container dies."""
        os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM, as systemd does: it finishes the job in hand and exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@pytest.fixture
def pollers(tmp_path: Path) -> Iterator[Callable[..., PollProcess]]:
    """Start `anb poll` subprocesses with the test's environment (plus extras); whatever is
    still running at the end is killed, process group by process group."""
    started: list[PollProcess] = []

    def start(**env_extra: str) -> PollProcess:
        log_path = tmp_path / f"poll-{len(started)}.log"
        log = log_path.open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "anb.cli", "poll"],
            env={**os.environ, **env_extra},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        poller = PollProcess(process, log_path, log)
        started.append(poller)
        return poller

    yield start
    for poller in started:
        if poller.process.poll() is None:
            os.killpg(poller.pid, signal.SIGKILL)
            poller.process.wait(10)
        poller._log.close()


# --- a Redis server of the test's own -------------------------------------------------------


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, decode_responses=True)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def answers() -> bool:
            try:
                return bool(self.client().ping())
            except redis.RedisError:
                return False

        wait_for(answers, 10, f"redis-server to answer on port {self.port}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        services_missing("the redis-server binary is not installed")
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    if server.process is not None:
        server.kill()


# --- network faults ---------------------------------------------------------------------------


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], TcpProxy]]:
    """Proxies to real servers that the test can cut, black-hole and restore."""
    started: list[TcpProxy] = []

    def start(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port)
        proxy.forward()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.close()


def through(proxy: TcpProxy, url: str) -> str:
    """`url` (a database URL) with its host and port replaced by the proxy's."""
    return (
        make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )


@pytest.fixture
def database_proxy(configure, tcp_proxy) -> TcpProxy:
    """A TCP proxy in front of the app's PostgreSQL, forwarding (the app is not pointed at
    it: a test passes `through(proxy, url)` to what should suffer its faults)."""
    url = make_url(get_settings().database_url)
    return tcp_proxy(url.host, url.port)
