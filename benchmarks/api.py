"""Benchmark: server CPU-ms per request of each endpoint class of the API, next to its floor.

Systems, each under Gunicorn + Uvicorn (`-k uvicorn_worker.UvicornWorker`, --gunicorn-workers):
- anb: the API of this working tree, on a fresh PostgreSQL database (migrated with
  `anb migrate`, dropped at the end), Redis db 14 (flushed), local storage in a temporary
  directory and the in-process queue (`--queue sqs`: moto's SQS, as scripts/loadtest);
  vote and login rate limits off;
- before (with --before REV): the API of REV, from a `git worktree` (PYTHONPATH at its src,
  same virtualenv), on the same database (the working tree's schema) and Redis db 13;
- baseline: benchmarks/baseline_app.py, a bare FastAPI app answering, for every request of
  every class, the status, headers and body the anb API answered (recorded first), from
  memory; POSTs read their whole body (an upload is received in full).

Each server is warmed up first. Then, for each round, each class and each system in turn
(the order of the systems rotates from round to round): a few unmeasured requests of the
class, then --requests requests (fewer for logins and uploads) from --concurrency
keep-alive connections; the CPU time (utime + stime + reaped children, from /proc) of the
Gunicorn master and its workers is read before and after. Every response's status is
checked; a class with non-2xx answers is flagged. The table gives the median over the
rounds of CPU-ms per request, the ratios, and the non-2xx counts; --out writes every batch.
No targets: exits with 1 when a class had non-2xx answers (its figures are not the
endpoint's cost).

The resolution of /proc's CPU times is one clock tick (10 ms) per process and snapshot: at
the default --requests, a batch of the baseline (~0.3 ms per request) costs ~300 ms.

Usage: scripts/bench_api [--rounds 3] [--requests 1000] [--classes health,vote,...]
                         [--before REV] [--gunicorn-workers 2] [--concurrency 4]
                         [--queue local|sqs] [--out results.json]
(or `.venv/bin/python -m benchmarks.api` from the repository root).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from benchmarks import ROOT, targets
from benchmarks.figures import Column, Table, ratio
from benchmarks.media import MB, encode_noisy_card
from benchmarks.processes import CpuMeter, log_tail, pids_matching, process_tree
from benchmarks.stack import (
    CITIES,
    PASSWORD,
    Stack,
    gunicorn_serving,
    seed_public_videos,
    seed_users,
)
from benchmarks.uploads import content_type, envelope

APP = "anb.api:create_app()"
BASELINE_APP = "benchmarks.baseline_app:create_app()"
BEFORE_REDIS_URL = "redis://127.0.0.1:6379/13"
CLIP_SECONDS = 21
CLIP_BYTES = 5 * MB
OWNERS = 25  # players with public videos, spread over CITIES
PUBLIC_VIDEOS = 60
MY_VIDEOS = 5  # videos of the signed-in player of `my_videos`
READ_CITY = "Medellín"  # the city of the city-filtered classes
UNVOTED_CITY = CITIES[-1][0]  # no vote goes to its videos: its pages change only with all's
START_WARM_FACTOR = 5  # warm-up of a server: this many times the warm-up of each batch
REQUEST_TIMEOUT = 120
UNRECORDED_HEADERS = {"content-length", "date", "server", "transfer-encoding", "connection"}
SYSTEM_ORDER = ("anb", "before", "baseline")
SERVING_PACKAGES = ("gunicorn", "uvicorn", "uvicorn-worker", "uvloop", "httptools", "h11",
                    "starlette", "fastapi")  # fmt: skip
LOG_PROBLEMS = ("Traceback", "ERROR", "CRITICAL", "WORKER TIMEOUT", "Worker exiting")


# --- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request; `route` is the API's path template (the baseline's route)."""

    method: str
    route: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def key(self) -> tuple[str, str, str]:
        return self.method, self.route, self.query


Op = tuple[Call, ...]  # what one client does in a row: usually one request


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("Authorization", f"Bearer {token}"),)


def city_query(city: str) -> str:
    return urlencode({"city": city})


def read_call(route: str, query: str = "", token: str | None = None) -> Call:
    return Call("GET", route, route, query, bearer(token) if token else ())


def multipart_upload(clip: bytes, boundary: str) -> bytes:
    head, tail = envelope("Jugada de prueba", "jugada.mp4", boundary)
    return head + clip + tail


@dataclass
class Fixture:
    """Seeded accounts and videos, and the requests made of them."""

    votes: Iterator[tuple[str, str, str]]  # (voter's token, video id, its owner's city)
    player_token: str
    uploader_token: str
    login_email: str
    upload_body: bytes
    upload_boundary: str

    def vote(self) -> tuple[Call, str]:
        """A vote of a (voter, video) pair never used before, and the video's city."""
        try:
            token, video_id, city = next(self.votes)
        except StopIteration:
            raise RuntimeError("out of (voter, video) pairs: seed more voters") from None
        path = f"/api/public/videos/{video_id}/vote"
        return Call("POST", "/api/public/videos/{video_id}/vote", path, "", bearer(token)), city

    def login(self) -> Call:
        body = json.dumps({"email": self.login_email, "password": PASSWORD}).encode()
        headers = (("Content-Type", "application/json"),)
        return Call("POST", "/api/auth/login", "/api/auth/login", "", headers, body)

    def upload(self) -> Call:
        headers = (
            *bearer(self.uploader_token),
            ("Content-Type", content_type(self.upload_boundary)),
        )
        route = "/api/videos/upload"
        return Call("POST", route, route, "", headers, self.upload_body)


# --- endpoint classes --------------------------------------------------------------------------


def repeated(call: Callable[[Fixture], Call]) -> Callable[[Fixture, int], list[Op]]:
    return lambda fixture, count: [(call(fixture),) for _ in range(count)]


def votes_then_reads(same_city: bool) -> Callable[[Fixture, int], list[Op]]:
    """Ops of a vote and then a read of the public videos of the voted video's city, or of
    UNVOTED_CITY's (a scope no vote changes)."""

    def build(fixture: Fixture, count: int) -> list[Op]:
        ops = []
        for _ in range(count):
            vote, city = fixture.vote()
            read_city = city if same_city else UNVOTED_CITY
            ops.append((vote, read_call("/api/public/videos", city_query(read_city))))
        return ops

    return build


@dataclass(frozen=True)
class EndpointClass:
    name: str
    label: str
    build: Callable[[Fixture, int], list[Op]]  # (fixture, ops) -> ops
    share: float = 1.0  # requests of a batch, as a fraction of --requests
    warm: int = 8  # unmeasured ops before each batch
    requests_per_op: int = 1
    votes_per_op: int = 0

    def ops(self, requests: int) -> int:
        return max(1, round(requests * self.share / self.requests_per_op))


def anonymous_reads(name: str, label: str, route: str, query: str = "") -> EndpointClass:
    return EndpointClass(name, label, repeated(lambda f: read_call(route, query)))


CLASSES = [
    EndpointClass("health", "GET /health", repeated(lambda f: read_call("/health"))),
    anonymous_reads(
        "videos", "GET /api/public/videos (anonymous, page 1, cached)", "/api/public/videos"
    ),
    anonymous_reads(
        "videos_city", f"GET /api/public/videos?city={READ_CITY} (cached)",
        "/api/public/videos", city_query(READ_CITY),
    ),
    anonymous_reads("rankings", "GET /api/public/rankings (cached)", "/api/public/rankings"),
    anonymous_reads(
        "rankings_city", f"GET /api/public/rankings?city={READ_CITY} (cached)",
        "/api/public/rankings", city_query(READ_CITY),
    ),
    EndpointClass(
        "my_videos", f"GET /api/videos (signed-in player with {MY_VIDEOS} videos)",
        repeated(lambda f: read_call("/api/videos", token=f.player_token)),
    ),
    EndpointClass(
        "vote", "POST /api/public/videos/{id}/vote (a new (voter, video) pair each)",
        repeated(lambda f: f.vote()[0]), warm=4, votes_per_op=1,
    ),
    EndpointClass(
        "vote_read_same", "vote, then GET /api/public/videos?city=<the video's city>",
        votes_then_reads(same_city=True), warm=4, requests_per_op=2, votes_per_op=1,
    ),
    EndpointClass(
        "vote_read_other",
        f"vote, then GET /api/public/videos?city={UNVOTED_CITY} (a city no vote touches)",
        votes_then_reads(same_city=False), warm=4, requests_per_op=2, votes_per_op=1,
    ),
    EndpointClass(
        "login", "POST /api/auth/login", repeated(Fixture.login), share=0.25, warm=2,
    ),
    EndpointClass(
        "upload", f"POST /api/videos/upload ({CLIP_BYTES // MB} MB MP4)",
        repeated(Fixture.upload), share=0.04, warm=0,
    ),
]  # fmt: skip
CLASS_BY_NAME = {cls.name: cls for cls in CLASSES}


def votes_needed(classes: list[EndpointClass], systems: int, rounds: int, requests: int) -> int:
    """Votes cast by warm-ups, the recording and the rounds, all systems."""
    total = 0
    for cls in classes:
        if cls.votes_per_op:
            start_warm = max(cls.warm * START_WARM_FACTOR, 2)
            per_system = start_warm + rounds * (cls.warm + cls.ops(requests))
            total += cls.votes_per_op * (systems * per_system + 1)  # + 1: the recording
    return total


# --- HTTP client -------------------------------------------------------------------------------


class Connection:
    """A keep-alive connection; a failed request answers status 0 and reconnects next time."""

    def __init__(self, base: str) -> None:
        url = urlsplit(base)
        self.http = http.client.HTTPConnection(url.hostname, url.port, timeout=REQUEST_TIMEOUT)

    def send(self, call: Call) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            self.http.request(call.method, call.target, body=call.body, headers=dict(call.headers))
            response = self.http.getresponse()
            return response.status, response.getheaders(), response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.http.close()
            return 0, [], repr(exc).encode()

    def close(self) -> None:
        self.http.close()


@dataclass
class Outcome:
    statuses: Counter[int] = field(default_factory=Counter)
    first_error: str = ""

    def add(self, status: int, call: Call, body: bytes) -> None:
        self.statuses[status] += 1
        if not 200 <= status < 300 and not self.first_error:
            self.first_error = f"{status} {call.method} {call.target}: {body[:300]!r}"

    def merge(self, other: Outcome) -> None:
        self.statuses.update(other.statuses)
        self.first_error = self.first_error or other.first_error

    @property
    def non_2xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)


def run_ops(base: str, ops: list[Op], concurrency: int) -> Outcome:
    """Send the ops from `concurrency` threads, one connection each, until none is left."""
    todo = iter(ops)
    lock = threading.Lock()
    outcome = Outcome()

    def work() -> None:
        connection, mine = Connection(base), Outcome()
        while True:
            with lock:
                op = next(todo, None)
            if op is None:
                break
            for call in op:
                status, _headers, body = connection.send(call)
                mine.add(status, call, body)
        connection.close()
        with lock:
            outcome.merge(mine)

    threads = [threading.Thread(target=work) for _ in range(min(concurrency, len(ops)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome


def record_answers(base: str, ops: list[Op]) -> list[dict]:
    """Each distinct request's answer (status, headers, body), as the baseline replays it;
    every answer must be a 2xx."""
    connection = Connection(base)
    recorded: dict[tuple[str, str, str], dict] = {}
    for call in itertools.chain.from_iterable(ops):
        status, headers, body = connection.send(call)
        if not 200 <= status < 300:
            raise RuntimeError(f"recording {call.method} {call.target}: {status} {body[:300]!r}")
        recorded[call.key] = {
            "method": call.method, "route": call.route, "query": call.query, "status": status,
            "headers": [[k, v] for k, v in headers if k.lower() not in UNRECORDED_HEADERS],
            "body_b64": base64.b64encode(body).decode(),
        }  # fmt: skip
    connection.close()
    return list(recorded.values())


# --- systems -----------------------------------------------------------------------------------


@dataclass
class System:
    name: str
    base: str
    pid: int
    meter: CpuMeter
    log: Path
    media: Path | None = None  # where its uploads are stored (emptied after upload batches)


def meter_for(master: int, database: str) -> CpuMeter:
    return CpuMeter({
        "server": lambda: process_tree(master),
        "postgres": pids_matching(database),
        "redis": pids_matching("redis-server"),
    })  # fmt: skip


@contextlib.contextmanager
def app_system(
    name: str, src: Path, stack: Stack, args: argparse.Namespace, work: Path
) -> Iterator[System]:
    """The API from `src` on the stack's database, with local storage and rate limits off."""
    home = work / name
    home.mkdir(parents=True)
    extra = {
        "PYTHONPATH": str(src),
        "ANB_DATA_DIR": str(home / "data"),
        "ANB_STORAGE_URL": str(home / "media"),
        "ANB_VOTE_RATE_LIMIT": "off",
        "ANB_LOGIN_RATE_LIMIT": "off",
    }
    if args.queue == "local":
        extra["ANB_QUEUE_URL"] = "local"
    if name == "before":
        extra["ANB_CACHE_URL"] = BEFORE_REDIS_URL
    env = stack.child_env(**extra)
    log = home / "gunicorn.log"
    with gunicorn_serving(APP, env, home, args.gunicorn_workers, log) as (base, pid):
        yield System(name, base, pid, meter_for(pid, stack.database), log, home / "media")


@contextlib.contextmanager
def baseline_system(
    answers: list[dict], stack: Stack, args: argparse.Namespace, work: Path
) -> Iterator[System]:
    home = work / "baseline"
    home.mkdir(parents=True)
    recorded = home / "answers.json"
    recorded.write_text(json.dumps(answers))
    env = stack.child_env(PYTHONPATH=str(ROOT), BASELINE_RESPONSES=str(recorded))
    log = home / "gunicorn.log"
    serving = gunicorn_serving(BASELINE_APP, env, home, args.gunicorn_workers, log, "/health")
    with serving as (base, pid):
        yield System("baseline", base, pid, meter_for(pid, stack.database), log)


@contextlib.contextmanager
def worktree(rev: str, parent: Path) -> Iterator[Path]:
    """A detached `git worktree` of `rev`, removed on exit."""
    target = parent / "worktree"
    git = ["git", "-C", str(ROOT)]
    subprocess.run([*git, "worktree", "add", "--quiet", "--detach", str(target), rev], check=True)
    try:
        yield target
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(target)], check=False)


def commit_of(rev: str) -> str:
    command = ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]
    found = subprocess.run(command, capture_output=True, text=True)
    if found.returncode != 0:
        raise SystemExit(f"--before {rev}: not a commit of {ROOT}")
    return found.stdout.strip()


def migrations_of(src: Path) -> set[str]:
    return {path.name for path in (src / "anb" / "migrations" / "versions").glob("*.py")}


@contextlib.contextmanager
def flushed_redis(url: str) -> Iterator[None]:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            client.flushdb()


def log_problems(path: Path, workers: int, limit: int = 12) -> list[str]:
    """Lines of a Gunicorn log that tell of errors or timeouts, and workers booted again."""
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    problems = [line for line in lines if any(marker in line for marker in LOG_PROBLEMS)]
    boots = sum("Booting worker" in line for line in lines)
    if boots > workers:
        problems.append(f"{boots - workers} worker(s) booted after the first {workers}")
    return problems[:limit]


def serving_stack() -> dict[str, str]:
    """Versions of what serves HTTP (uvicorn uses uvloop and httptools when installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in SERVING_PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


def print_log_tails(work: Path, lines: int = 25) -> None:
    for log in sorted(work.glob("*/gunicorn.log")):
        print(f"--- {log.parent.name}'s Gunicorn log, last lines:\n{log_tail(log, lines)}")


# --- seed data ---------------------------------------------------------------------------------


def make_clip(target: Path) -> Path:
    """~5 MB, 21 s, 1920x1080 H.264 MP4 at 10 fps (see `encode_noisy_card`)."""
    bitrate = CLIP_BYTES * 8 // CLIP_SECONDS
    encode_noisy_card(target, bitrate, CLIP_SECONDS, fps=10, x264=("-preset", "ultrafast"))
    return target


def tokens_for(emails: list[str]) -> dict[str, str]:
    """Access tokens of these players, signed with the stack's JWT secret."""
    from sqlalchemy import select

    from anb.core.db import unit_of_work
    from anb.core.security import create_access_token
    from anb.users.models import User

    with unit_of_work() as session:
        rows = session.execute(select(User.email, User.id).where(User.email.in_(emails))).all()
    return {email: create_access_token(user_id) for email, user_id in rows}


def with_cities(video_ids: list[str]) -> list[tuple[str, str]]:
    """(video id, its owner's city) of each video."""
    from sqlalchemy import select

    from anb.core.db import unit_of_work
    from anb.users.models import User
    from anb.videos.models import Video

    with unit_of_work() as session:
        query = select(Video.id, User.city).join(User, Video.owner_id == User.id)
        city_of = dict(session.execute(query.where(Video.id.in_(video_ids))).all())
    return [(video_id, city_of[video_id]) for video_id in video_ids]


def seed(votes: int, clip: Path) -> Fixture:
    """Owners of public videos, a player with a few videos, an uploader, a login account and
    enough voters for `votes` distinct (voter, video) pairs, none of UNVOTED_CITY's videos."""
    owners = seed_users("owner", OWNERS)
    published = with_cities(seed_public_videos(owners, PUBLIC_VIDEOS))
    videos = [(vid, city) for vid, city in published if city != UNVOTED_CITY]
    player = seed_users("player", 1)
    seed_public_videos(player, MY_VIDEOS)
    uploader, login = seed_users("uploader", 1), seed_users("login", 1)
    voters = seed_users("voter", math.ceil(votes / len(videos)) + 1)
    tokens = tokens_for([*voters, *player, *uploader])
    pairs = ((tokens[email], vid, city) for email in voters for vid, city in videos)
    boundary = uuid.uuid4().hex
    return Fixture(
        votes=pairs,
        player_token=tokens[player[0]],
        uploader_token=tokens[uploader[0]],
        login_email=login[0],
        upload_body=multipart_upload(clip.read_bytes(), boundary),
        upload_boundary=boundary,
    )


# --- measurement -------------------------------------------------------------------------------


@dataclass
class Batch:
    round: int
    cls: str
    system: str
    requests: int
    wall_s: float
    server_cpu_s: float
    postgres_cpu_s: float
    redis_cpu_s: float
    machine_busy_share: float
    statuses: dict[str, int]
    non_2xx: int
    first_error: str
    workers_changed: bool

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / self.requests

    @property
    def postgres_ms_per_request(self) -> float:
        return 1000 * self.postgres_cpu_s / self.requests


def measure(
    system: System, cls: EndpointClass, ops: list[Op], concurrency: int, round_no: int
) -> Batch:
    """Send the ops; the server's CPU time (and PostgreSQL's, Redis's) before and after."""
    pids = set(process_tree(system.pid))
    before = system.meter.snapshot()
    outcome = run_ops(system.base, ops, concurrency)
    after = system.meter.snapshot()
    spent = {name: after[name] - before[name] for name in ("server", "postgres", "redis")}
    return Batch(
        round=round_no, cls=cls.name, system=system.name,
        requests=sum(len(op) for op in ops), wall_s=round(after["_wall"] - before["_wall"], 3),
        server_cpu_s=round(spent["server"], 3), postgres_cpu_s=round(spent["postgres"], 3),
        redis_cpu_s=round(spent["redis"], 3),
        machine_busy_share=CpuMeter.cores(before, after)["machine_share"],
        statuses={str(status): count for status, count in sorted(outcome.statuses.items())},
        non_2xx=outcome.non_2xx, first_error=outcome.first_error,
        workers_changed=set(process_tree(system.pid)) != pids,
    )  # fmt: skip


def forget_uploads(system: System) -> None:
    """Delete the stored uploads (keeping the storage's root directory)."""
    if system.media is not None and system.media.is_dir():
        for child in system.media.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()


def warm_up(
    system: System, classes: list[EndpointClass], fixture: Fixture, concurrency: int
) -> None:
    for cls in classes:
        count = max(cls.warm * START_WARM_FACTOR, 2)
        outcome = run_ops(system.base, cls.build(fixture, count), concurrency)
        if outcome.non_2xx:
            print(f"  warm-up {system.name} {cls.name}: {dict(outcome.statuses)} "
                  f"{outcome.first_error}", flush=True)  # fmt: skip
    forget_uploads(system)


def rounds(
    systems: list[System], classes: list[EndpointClass], fixture: Fixture, args: argparse.Namespace
) -> list[Batch]:
    batches = []
    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % len(systems)
        order = systems[shift:] + systems[:shift]
        for cls in classes:
            for system in order:
                if cls.warm:
                    run_ops(system.base, cls.build(fixture, cls.warm), args.concurrency)
                ops = cls.build(fixture, cls.ops(args.requests))
                batch = measure(system, cls, ops, args.concurrency, round_no)
                if cls.name == "upload":
                    forget_uploads(system)
                batches.append(batch)
                print_batch(batch)
    return batches


def print_batch(batch: Batch) -> None:
    flag = f"  non-2xx {batch.non_2xx}: {batch.first_error[:160]}" if batch.non_2xx else ""
    flag += "  (workers changed)" if batch.workers_changed else ""
    print(f"  round {batch.round} {batch.cls:<16} {batch.system:<9} "
          f"{batch.cpu_ms_per_request:8.3f} CPU-ms/req  {batch.requests:4d} req "
          f"{batch.wall_s:6.1f} s  machine {100 * batch.machine_busy_share:3.0f} %{flag}",
          flush=True)  # fmt: skip


# --- summary -----------------------------------------------------------------------------------


def summarize(batches: list[Batch], classes: list[EndpointClass], names: list[str]) -> list[dict]:
    rows = []
    for cls in classes:
        row: dict = {"class": cls.name, "label": cls.label}
        for name in names:
            mine = [b for b in batches if b.cls == cls.name and b.system == name]
            statuses: Counter[str] = Counter()
            for batch in mine:
                statuses.update(batch.statuses)
            row[name] = {
                "median_ms": statistics.median(b.cpu_ms_per_request for b in mine),
                "rounds_ms": [round(b.cpu_ms_per_request, 3) for b in mine],
                "postgres_median_ms": statistics.median(b.postgres_ms_per_request for b in mine),
                "requests_per_batch": mine[0].requests,
                "non_2xx": sum(b.non_2xx for b in mine),
                "statuses": dict(statuses),
                "workers_changed": any(b.workers_changed for b in mine),
            }
        base = row["baseline"]["median_ms"]
        row["ratios"] = {
            f"{name}/baseline": ratio(row[name]["median_ms"], base)
            for name in names
            if name != "baseline"
        }
        if "before" in names:
            before = row["before"]["median_ms"]
            row["ratios"]["anb/before"] = ratio(row["anb"]["median_ms"], before)
        rows.append(row)
    return rows


def read_after_vote(rows: list[dict], names: list[str]) -> list[str]:
    """CPU of the read that follows a vote (2 x vote_read_* - vote), next to a cached read;
    PostgreSQL's share tells whether the page was computed again."""
    by_class = {row["class"]: row for row in rows}
    if not {"vote", "vote_read_same", "vote_read_other", "videos_city"} <= by_class.keys():
        return []

    def read_cost(name: str, cls: str) -> str:
        server, postgres = (
            2 * by_class[cls][name][key] - by_class["vote"][name][key]
            for key in ("median_ms", "postgres_median_ms")
        )
        return f"{server:.2f} ({postgres:.2f})"

    lines = ["Read right after a vote (2 x vote_read_* - vote), CPU-ms server (PostgreSQL):"]
    for name in [name for name in names if name != "baseline"]:
        same, other = read_cost(name, "vote_read_same"), read_cost(name, "vote_read_other")
        cached = by_class["videos_city"][name]
        lines.append(
            f"  {name:<7} voted city: {same}; {UNVOTED_CITY}: {other}; a cached city page: "
            f"{cached['median_ms']:.2f} ({cached['postgres_median_ms']:.2f})"
        )
    return lines


def table(rows: list[dict], names: list[str]) -> str:
    ratio_names = list(rows[0]["ratios"]) if rows else []
    columns = Table(
        (
            Column("class", 16, left=True),
            Column("req", 4),
            *(Column(f"{name} ms", 11, ".3f") for name in names),
            *(Column(name, 15, ".2f") for name in ratio_names),
            Column("non-2xx", left=True),
        )
    )
    lines = [columns.header(), columns.rule()]
    for row in rows:
        errors = ", ".join(
            f"{name} {row[name]['non_2xx']}" for name in names if row[name]["non_2xx"]
        )
        changed = [name for name in names if row[name]["workers_changed"]]
        cells = (
            row["class"],
            row["anb"]["requests_per_batch"],
            *(row[name]["median_ms"] for name in names),
            *(row["ratios"][name] for name in ratio_names),
            errors or "0",
        )
        lines.append(
            columns.row(*cells)
            + ("  ERRORS" if errors else "")
            + (f"  workers changed: {', '.join(changed)}" if changed else "")
        )
    return "\n".join(lines)


def legend(classes: list[EndpointClass]) -> str:
    return "\n".join(f"  {cls.name:<16} {cls.label}" for cls in classes)


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="requests per batch "
                        "(logins a quarter, uploads 4 %%)")  # fmt: skip
    parser.add_argument("--classes", default=",".join(CLASS_BY_NAME),
                        help="comma-separated, of: " + ", ".join(CLASS_BY_NAME))  # fmt: skip
    parser.add_argument("--before", metavar="REV", help="also run the API of this revision")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="client connections")
    parser.add_argument("--queue", choices=("local", "sqs"), default="local")
    parser.add_argument("--out", type=Path, help="write the raw figures here (JSON)")
    args = parser.parse_args(argv)
    if args.out and not args.out.resolve().parent.is_dir():
        parser.error(f"--out {args.out}: no such directory")
    names = [name.strip() for name in args.classes.split(",") if name.strip()]
    if unknown := [name for name in names if name not in CLASS_BY_NAME]:
        parser.error(f"unknown classes: {unknown}")
    args.classes = [CLASS_BY_NAME[name] for name in names]
    return args


def recording_ops(classes: list[EndpointClass], fixture: Fixture) -> list[Op]:
    """What the baseline must answer: GET /health (its readiness), the public videos of
    every city (read after votes) and one op of each class."""
    ops = [(read_call("/health"),)]
    ops += [(read_call("/api/public/videos", city_query(city)),) for city, _ in CITIES]
    for cls in classes:
        ops += cls.build(fixture, 1)
    return ops


def run(args: argparse.Namespace, work: Path) -> dict:
    names = [name for name in SYSTEM_ORDER if name != "before" or args.before]
    commit = commit_of(args.before) if args.before else ""  # fixed now, whatever gets committed
    clip = make_clip(work / "clip.mp4")
    print(f"clip: {clip.stat().st_size / MB:.2f} MB, {CLIP_SECONDS} s, 1920x1080", flush=True)
    with contextlib.ExitStack() as resources:
        sources = {"anb": ROOT / "src"}
        if commit:
            sources["before"] = resources.enter_context(worktree(commit, work)) / "src"
            if migrations_of(sources["before"]) != migrations_of(sources["anb"]):
                print(f"warning: {args.before}'s migrations differ from the working tree's; it "
                      "runs on the working tree's schema", flush=True)  # fmt: skip
            resources.enter_context(flushed_redis(BEFORE_REDIS_URL))
        stack = resources.enter_context(Stack(work / "stack"))
        votes = votes_needed(args.classes, len(names), args.rounds, args.requests)
        fixture = seed(votes, clip)
        systems = {
            name: resources.enter_context(app_system(name, src, stack, args, work))
            for name, src in sources.items()
        }
        for system in systems.values():
            print(f"warming up {system.name} ({system.base})", flush=True)
            warm_up(system, args.classes, fixture, args.concurrency)
        answers = record_answers(systems["anb"].base, recording_ops(args.classes, fixture))
        forget_uploads(systems["anb"])
        systems["baseline"] = resources.enter_context(baseline_system(answers, stack, args, work))
        print(f"warming up baseline ({systems['baseline'].base})", flush=True)
        warm_up(systems["baseline"], args.classes, fixture, args.concurrency)
        ordered = [systems[name] for name in names]
        batches = rounds(ordered, args.classes, fixture, args)
        problems = {s.name: log_problems(s.log, args.gunicorn_workers) for s in ordered}
    before = f"{args.before} ({commit[:10]})" if commit else None
    return {"names": names, "batches": batches, "problems": problems, "before": before}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    work = Path(tempfile.mkdtemp(prefix="anb-bench-api-"))
    try:
        result = run(args, work)
    except BaseException:
        print_log_tails(work)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    names, batches = result["names"], result["batches"]
    rows = summarize(batches, args.classes, names)
    before = f", before = {result['before']}" if args.before else ""
    print(f"\nServer CPU-ms per request (Gunicorn master + {args.gunicorn_workers} workers), "
          f"median of {args.rounds} rounds; anb = working tree{before}; "
          f"queue {args.queue}; {args.concurrency} client connections")  # fmt: skip
    print("serving: " + ", ".join(f"{k} {v}" for k, v in serving_stack().items()) + "\n")
    print(legend(args.classes) + "\n")
    print(table(rows, names))
    for line in read_after_vote(rows, names):
        print(line)
    for name, lines in result["problems"].items():
        if lines:
            print(f"\n{name}'s Gunicorn log:\n  " + "\n  ".join(lines))
    elapsed = round(time.monotonic() - started)
    print(f"\ndone in {elapsed} s (load average at start {' '.join(load_start)})")
    if args.out:
        args.out.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items() if k != "classes"},
            "classes": [cls.name for cls in args.classes],
            "before": result["before"],
            "serving": serving_stack(), "nproc": os.cpu_count(),
            "load_average_start": load_start, "elapsed_s": elapsed,
            "summary": rows, "batches": [asdict(batch) for batch in batches],
            "log_problems": result["problems"],
        }, indent=1))  # fmt: skip
        print(f"raw figures in {args.out}")
    # A class with non-2xx answers measured its errors, not the endpoint.
    errors = [row["class"] for row in rows if any(row[name]["non_2xx"] for name in names)]
    return targets.failed_checks("non-2xx answers in", errors)


if __name__ == "__main__":
    sys.exit(main())
