"""The services a load test needs, started and stopped by the test itself: a fresh
PostgreSQL database, Redis db 14, moto's S3/SQS server in a subprocess, Gunicorn; seed data
written with the app's own models."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from benchmarks.processes import BIN, free_port, stop, wait_http

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
            subprocess.run([str(BIN / "anb"), "migrate"], env=self.child_env(), check=True)
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
    """Any ASGI app (`module:factory()`) under production's Gunicorn settings
    (`anb.gunicorn_conf`, as found on the environment's PYTHONPATH: a revision's own) with
    `workers` workers and its own environment: yields (base URL, master pid) once
    `ready_path` answers."""
    port = free_port()
    command = [
        str(BIN / "gunicorn"), "-c", "python:anb.gunicorn_conf", app,
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
    from anb.core.db import unit_of_work
    from anb.core.security import hash_password
    from anb.core.text import search_key
    from anb.users.models import User

    password_hash = hash_password(PASSWORD)
    emails = [f"{prefix}-{n}@load.test" for n in range(count)]
    with unit_of_work() as session:
        for n, email in enumerate(emails):
            city, country = CITIES[n % len(CITIES)]
            session.add(
                User(
                    email=email, password_hash=password_hash, first_name="Carga",
                    last_name=f"{prefix.title()} {n}", city=city, country=country,
                    city_key=search_key(city), country_key=search_key(country),
                )
            )  # fmt: skip
    return emails


def seed_public_videos(owner_emails: list[str], count: int) -> list[str]:
    """`count` processed (public) videos spread over the owners; their keys point at objects
    that need not exist (the API only presigns them)."""
    from sqlalchemy import select

    from anb.core.db import unit_of_work, utcnow
    from anb.users.models import User, new_id
    from anb.videos.models import Video, VideoStatus, original_key_for

    with unit_of_work() as session:
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
    return ids
