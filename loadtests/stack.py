"""The services a load test needs, started and stopped by the test itself: a fresh
PostgreSQL database, Redis db 14, moto's S3/SQS server in a subprocess, Gunicorn; seed data
written with the app's own models; CPU accounting of each process group from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
POSTGRES_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "postgres"}
REDIS_URL = "redis://127.0.0.1:6379/14"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PASSWORD = "carga-Segura-2024"
CITIES = [
    ("Bogotá", "Colombia"),
    ("Medellín", "Colombia"),
    ("Cali", "Colombia"),
    ("Lima", "Perú"),
    ("Quito", "Ecuador"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen | None, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after `timeout` s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Stack:
    """PostgreSQL database + Redis db 14 + moto (S3 bucket, SQS queue): the AWS mode."""

    work: Path
    database: str = field(default_factory=lambda: f"anb_load_{uuid.uuid4().hex[:10]}")
    moto: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __enter__(self) -> Stack:
        import pg8000.native
        import redis

        self.work.mkdir(parents=True, exist_ok=True)
        admin = pg8000.native.Connection(**POSTGRES_ADMIN, timeout=5)
        admin.run(f"CREATE DATABASE {self.database}")
        admin.close()
        try:
            port = free_port()
            with (self.work / "moto.log").open("wb") as log:
                self.moto = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            endpoint = f"http://127.0.0.1:{port}"
            wait_http(f"{endpoint}/moto-api/", self.moto)
            aws = {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint}
            name = f"anb-load-{uuid.uuid4().hex[:8]}"
            boto3.client("s3", **client_options(aws)).create_bucket(Bucket=name)
            queue_url = boto3.client("sqs", **client_options(aws)).create_queue(
                QueueName=name, Attributes={"VisibilityTimeout": "1800"}
            )["QueueUrl"]
            redis.Redis.from_url(REDIS_URL).flushdb()
            self.env = {
                **aws,
                "ANB_DATA_DIR": str(self.work / "data"),
                "ANB_DATABASE_URL": f"postgresql+pg8000://postgres@127.0.0.1:5432/{self.database}",
                "ANB_STORAGE_URL": f"s3://{name}/media",
                "ANB_QUEUE_URL": queue_url,
                "ANB_CACHE_URL": REDIS_URL,
                "ANB_JWT_SECRET": "load-test-secret-" + uuid.uuid4().hex,
                "POWERTOOLS_LOG_LEVEL": "WARNING",
            }
            subprocess.run([str(VENV_BIN / "anb"), "migrate"], env=self.child_env(), check=True)
            self.use_in_this_process()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        import pg8000.native
        import redis

        with contextlib.suppress(Exception):
            from anb.core.db import dispose_engines

            dispose_engines()
        stop(self.moto, timeout=10)
        with contextlib.suppress(Exception):
            redis.Redis.from_url(REDIS_URL).flushdb()
        admin = pg8000.native.Connection(**POSTGRES_ADMIN, timeout=5)
        admin.run(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        admin.close()

    def child_env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ANB_", "AWS_"))}
        return {**base, **self.env, **extra}

    def use_in_this_process(self) -> None:
        """Point this process's `anb` settings and adapters at the stack."""
        from anb.cache import get_cache
        from anb.core.db import dispose_engines
        from anb.core.settings import get_settings
        from anb.queue import get_queue
        from anb.storage import get_storage

        os.environ.update(self.env)
        for provider in (get_settings, get_storage, get_queue, get_cache):
            provider.cache_clear()
        dispose_engines()

    def sqs(self):
        return boto3.client("sqs", **client_options(self.env))

    def queue_depth(self) -> tuple[int, int]:
        """(visible, in flight) messages of the job queue."""
        attributes = self.sqs().get_queue_attributes(
            QueueUrl=self.env["ANB_QUEUE_URL"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )


def client_options(env: dict[str, str]) -> dict[str, str]:
    return {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "region_name": env["AWS_DEFAULT_REGION"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


@contextlib.contextmanager
def gunicorn(stack: Stack, workers: int, log_path: Path) -> Iterator[tuple[str, int]]:
    """The API under Gunicorn + Uvicorn workers as on EC2 (ec2/systemd/anb-api.service),
    access log off: yields (base URL, master pid)."""
    with gunicorn_serving(
        "anb.api:create_app()", stack.child_env(), stack.work, workers, log_path
    ) as served:
        yield served


@contextlib.contextmanager
def gunicorn_serving(
    app: str,
    env: dict[str, str],
    cwd: Path,
    workers: int,
    log_path: Path,
    ready_path: str = "/api/health/ready",
) -> Iterator[tuple[str, int]]:
    """Any ASGI app (`module:factory()`) under the Gunicorn + Uvicorn settings of `gunicorn`,
    with its own environment (e.g. a PYTHONPATH): yields (base URL, master pid) once
    `ready_path` answers."""
    port = free_port()
    command = [
        str(VENV_BIN / "gunicorn"), "-k", "uvicorn_worker.UvicornWorker", app,
        "-w", str(workers), "--bind", f"127.0.0.1:{port}",
        "--graceful-timeout", "10", "--timeout", "120",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}{ready_path}", process)
        yield base, process.pid
    finally:
        stop(process)


# --- seed data -------------------------------------------------------------------------------


def seed_users(prefix: str, count: int) -> list[str]:
    """`count` players (emails `prefix-N@load.test`, password PASSWORD), inserted with the
    app's model; one argon2 hash is computed and shared (same password)."""
    from anb.core.db import session_scope
    from anb.core.security import hash_password
    from anb.core.text import search_key
    from anb.users.models import User

    password_hash = hash_password(PASSWORD)
    emails = [f"{prefix}-{n}@load.test" for n in range(count)]
    with session_scope() as session:
        for n, email in enumerate(emails):
            city, country = CITIES[n % len(CITIES)]
            session.add(
                User(
                    email=email, password_hash=password_hash, first_name="Carga",
                    last_name=f"{prefix.title()} {n}", city=city, country=country,
                    city_key=search_key(city), country_key=search_key(country),
                )
            )  # fmt: skip
        session.commit()
    return emails


def seed_public_videos(owner_emails: list[str], count: int) -> list[str]:
    """`count` processed (public) videos spread over the owners; their keys point at objects
    that need not exist (the API only presigns them)."""
    from sqlalchemy import select

    from anb.core.db import session_scope, utcnow
    from anb.users.models import User, new_id
    from anb.videos.models import Video, VideoStatus, original_key_for

    with session_scope() as session:
        owners = session.scalars(select(User).where(User.email.in_(owner_emails))).all()
        ids = []
        for n in range(count):
            video = Video(
                id=new_id(), owner_id=owners[n % len(owners)].id, title=f"Jugada pública {n}"
            )
            video.original_key = video.processed_key = original_key_for(video.id)
            video.status, video.processed_at = VideoStatus.processed, utcnow()
            session.add(video)
            ids.append(video.id)
        session.commit()
    return ids


# --- CPU accounting --------------------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, CPU seconds of the process and of its reaped children)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return int(fields[1]), (utime + stime + cutime + cstime) / CLOCK_TICKS


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def process_tree(root: int) -> list[int]:
    """`root` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


@dataclass
class CpuMeter:
    """CPU seconds used by named process groups, and the whole machine, between snapshots."""

    groups: dict[str, Callable[[], list[int]]]  # name -> the pids of the group now

    def snapshot(self) -> dict[str, float]:
        snap: dict[str, float] = {"_wall": time.monotonic()}
        for name, pids in self.groups.items():
            snap[name] = sum(stat[1] for pid in pids() if (stat := _stat(pid)) is not None)
        busy, total = machine_jiffies()
        snap["_busy"], snap["_total"] = busy / CLOCK_TICKS, total / CLOCK_TICKS
        return snap

    @staticmethod
    def cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """Average cores used by each group between two snapshots, and `machine` (all
        processes on the box, including other people's work), `machine_share` of its CPUs."""
        wall = after["_wall"] - before["_wall"]
        result = {
            name: round(max(after[name] - before.get(name, 0.0), 0.0) / wall, 3)
            for name in after
            if not name.startswith("_")
        }
        ncpu = os.cpu_count() or 1
        busy = (after["_busy"] - before["_busy"]) / ((after["_total"] - before["_total"]) or 1)
        result["machine"] = round(busy * ncpu, 3)
        result["machine_share"] = round(busy, 3)
        return result


def pids_matching(text: str) -> Callable[[], list[int]]:
    """The pids whose command line contains `text` (e.g. a PostgreSQL backend's database)."""

    def find() -> list[int]:
        return [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and text in _cmdline(int(entry.name))
        ]

    return find
