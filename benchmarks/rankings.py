"""Benchmark: the rankings and the public list under a steady mix of votes and reads, with
the Redis leaderboards ("after") and with the implementation before them ("before", the
whole ranking recomputed after each vote), in one run.

For each implementation, on this machine:
1. Data: PostgreSQL seeded in bulk (`benchmarks.rankings_data`: COPY of 100 000 players in
   50 cities, 200 000 processed videos, 2 000 000 votes, 5 % of them on one viral video, at
   --scale 1) into a database migrated by that revision's own `anb migrate`. With --reuse the
   seeded database is kept (named after the schema and the scale) and each run works on a
   copy (CREATE DATABASE … TEMPLATE).
2. Redis db --redis-db flushed; "after" builds its boards with `anb leaderboard rebuild`
   (timed) before the server starts.
3. The API of that revision under Gunicorn + Uvicorn workers, wrapped by
   `benchmarks.timed_app` (a Server-Timing header gives each answer's server time);
   "before" runs from a detached `git worktree` of --before (PYTHONPATH at its src, same
   virtualenv; the server's log says which `anb` it imported, and the run stops if it is
   not that tree's).
4. The load, open loop (`benchmarks.openloop`: Poisson arrivals, each request sent when
   due whatever the others take), from three client processes: votes (--rate-votes, each by
   a player who had not voted for that video, tokens signed with the server's secret by the
   app's own `create_access_token`), reads (--rate-reads: rankings and the public list,
   global and by city, first and deep pages; a `cursor` deep page of the list too when the
   server answers a next cursor), and a freshness probe: every PROBE_EVERY_S it votes for a
   player near the top of a city (only the probe votes for those players) and polls that
   city's first ranking page until the player's votes include the vote. --warmup s of the
   same load first, unrecorded, then --duration s measured.
5. After the load, once no vote has landed for QUIET_S (the server may still be answering
   requests that the clients gave up on), the correctness check: the API's rankings walked whole
   for three cities (biggest, middle, smallest) and over the top and random deep pages of
   the global ranking, each player's position and votes compared with what SQL computes
   from the votes table; `videos.votes` compared with the votes table; and, "after",
   `anb leaderboard check` over every board.

Reported per implementation and request class: end-to-end p50/p95/p99 (client, loopback),
server time p50/p95 (Server-Timing), count, errors (non-200, no answer, or arrivals the
client dropped past openloop.MAX_IN_FLIGHT open requests); votes/s sustained; freshness
p50/p95/max; Redis used_memory (the instance's, shared, and the benchmark db's keys); CPU
cores used by the server, PostgreSQL, Redis, the clients and the whole machine; then the
targets, PASS/FAIL. The exit status follows the targets of "after" (of "before" with
--only before): 1 when one is missed.

With --rounds N each implementation is measured N times, alternately (before, after, then
after, before, ...), on a fresh copy of the data each time: on a shared machine one run can
come out three times slower than the next, whole. Each round's tables are printed, then the
medians over the rounds (p95 per class, freshness p95, votes/s; errors summed, correctness
required in every round), which the targets and the before/after comparison judge.

Tokens are minted rather than obtained by logging in: a login costs an argon2 hash (~50 ms
of CPU here) and thousands of voters would cost minutes of the cores the run measures; the
server checks a minted token exactly as a login's (same code, same secret, same claims).

Usage: scripts/bench_rankings [--duration 60] [--warmup 5] [--rate-votes 100]
                              [--rate-reads 200] [--scale 1] [--reuse] [--only before|after]
                              [--before REV] [--gunicorn-workers 2] [--redis-db 14]
                              [--rounds 1] [--out results.json]
(or `.venv/bin/python -m benchmarks.rankings` from the repository root).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlencode, urlsplit

from benchmarks import ROOT, rankings_data, targets
from benchmarks.api import (
    Connection,
    commit_of,
    log_problems,
    migrations_of,
    read_call,
    serving_stack,
    worktree,
)
from benchmarks.figures import Column, Table, ratio
from benchmarks.openloop import (
    DROPPED,
    NO_ANSWER,
    Answer,
    Driver,
    Pool,
    Record,
    Request,
    Window,
    run_loop,
)
from benchmarks.processes import BIN, CpuMeter, log_tail, pids_matching, process_tree
from benchmarks.rankings_data import Plan, Scale
from benchmarks.report import percentile
from benchmarks.stack import gunicorn_serving
from benchmarks.timed_app import SOURCE_LINE, server_ms

BEFORE_REV = "9eb51f951027328933dcda8ff8c660196d3c5e28"
"""The implementation before the leaderboards: the first parent of their merge."""
APP = "benchmarks.timed_app:create_app()"
IMPLEMENTATIONS = ("before", "after")
RANKINGS = "/api/public/rankings"
VIDEOS = "/api/public/videos"
RANKED_PER_PAGE = 10  # the API's default page sizes, asked for by the mix
VIDEOS_PER_PAGE = 20
PAGE_MAX = 100  # the API's largest `limit`: the probe's and the correctness check's pages
READ_MIX = {
    "ranking_first_global": 0.25,
    "ranking_first_city": 0.25,
    "ranking_deep": 0.15,
    "list_first": 0.25,
    "list_deep": 0.10,
}
"""Shares of --rate-reads. Deep pages start past the first tenth of what they page through;
each read is global or by a random city, half and half (the ranking's first pages apart).
With a cursor, half of list_deep's share goes to list_cursor."""
CLASSES = ("vote", *READ_MIX, "list_cursor")
RANKING_CLASSES = ("ranking_first_global", "ranking_first_city", "ranking_deep")
LIST_CLASSES = ("list_first", "list_deep", "list_cursor")
PROBE_CITIES = 10  # the biggest cities: the probe votes for players near the top of each
PROBE_PER_CITY = 3
PROBE_EVERY_S = 0.5
POLL_EVERY_S = 0.05
FRESHNESS_TIMEOUT_S = 10.0
CURSOR_PAGES = 40  # pages of PAGE_MAX walked for deep cursors (from the 10th on)
REBUILD_ATTEMPTS = 3
QUIET_S = 2.0  # after the load, no vote landed for this long: the server's backlog is done
QUIET_TIMEOUT_S = 180.0
FREEING_TIMEOUT_S = 30.0
SETTLE_S = 1.5  # then, before the check: in-process caches keep entries 1 s
DEEP_GLOBAL_PAGES = 5  # random deep pages of PAGE_MAX of the global ranking checked
TOP_GLOBAL_PAGES = 5
VOTE_MARGIN = 1.5  # votes prepared, as a multiple of those expected (Poisson arrivals)
START_MARGIN_S = 1.0  # between the clients' readiness and the first request
TARGET_VOTE_P95_MS = 30.0
TARGET_PAGE_P95_MS = 20.0
TARGET_FRESHNESS_P95_MS = 1000.0
SUSTAINED_SHARE = 0.95  # votes/s sustained must be at least this share of --rate-votes


# --- the load ----------------------------------------------------------------------------


@dataclass(frozen=True)
class City:
    name: str
    players: int
    videos: int


@dataclass(frozen=True)
class Probe:
    """A probe vote: for `username`'s video, then `city`'s first page polled."""

    username: str
    city: str
    target: str  # the vote's path
    token: str


@dataclass
class Setup:
    """What the client processes need."""

    base: str
    rate_votes: float
    rate_reads: float
    warmup: float
    duration: float
    seed: int
    players: int
    videos: int
    cities: list[City]
    mix: dict[str, float]  # read class -> share of rate_reads
    votes: list[tuple[str, str]]  # (path, token), in the order they are cast
    probes: list[Probe]
    probe_start: dict[str, int]  # each probed player's votes when the run starts
    cursors: list[str] = field(default_factory=list)  # deep cursors of the list, if any


def deep_offset(rng: random.Random, total: int, limit: int) -> int:
    """An offset past the first tenth of `total` rows, the last page included."""
    low = total // 10
    return rng.randint(low, max(low, total - limit))


def read_request(setup: Setup, rng: random.Random, kind: str) -> Request:
    """A request of the read class `kind`; global or by a random city, half and half."""
    city = rng.choice(setup.cities) if rng.random() < 0.5 else None
    scope = {"city": city.name} if city else {}
    if kind == "ranking_first_global":
        return _get(kind, RANKINGS, {})
    if kind == "ranking_first_city":
        return _get(kind, RANKINGS, {"city": rng.choice(setup.cities).name})
    if kind == "ranking_deep":
        total = city.players if city else setup.players
        return _get(kind, RANKINGS, {**scope, "offset": deep_offset(rng, total, RANKED_PER_PAGE)})
    if kind == "list_first":
        return _get(kind, VIDEOS, scope)
    if kind == "list_deep":
        total = city.videos if city else setup.videos
        return _get(kind, VIDEOS, {**scope, "offset": deep_offset(rng, total, VIDEOS_PER_PAGE)})
    if kind == "list_cursor":
        return _get(kind, VIDEOS, {"cursor": rng.choice(setup.cursors)})
    raise ValueError(kind)


def _get(kind: str, path: str, query: dict[str, object]) -> Request:
    return Request(kind, "GET", f"{path}?{urlencode(query)}" if query else path)


def read_mix(shares: dict[str, float], with_cursor: bool) -> dict[str, float]:
    """The read classes' shares, list_deep's halved for list_cursor when it is offered."""
    mix = dict(shares)
    if with_cursor:
        mix["list_deep"] = mix["list_cursor"] = shares.get("list_deep", 0.0) / 2
    return mix


def parse_mix(text: str) -> dict[str, float]:
    """`class=weight,…` (classes of READ_MIX; the others get 0) as shares adding up to 1."""
    weights = dict.fromkeys(READ_MIX, 0.0)
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in READ_MIX:
            raise ValueError(f"unknown read class {name.strip()!r} (known: {', '.join(READ_MIX)})")
        weights[name.strip()] = float(weight)
    total = sum(weights.values())
    if total <= 0 or min(weights.values()) < 0:
        raise ValueError("the weights must be positive or 0, and not all 0")
    return {name: weight / total for name, weight in weights.items()}


def _pool(setup: Setup) -> Pool:
    url = urlsplit(setup.base)
    return Pool(url.hostname or "127.0.0.1", url.port or 80)


async def drive_votes(setup: Setup, window: Window) -> dict:
    votes = iter(setup.votes)

    def next_vote() -> Request:
        path, token = next(votes)
        return Request("vote", "POST", path, (("Authorization", f"Bearer {token}"),))

    driver = Driver(_pool(setup), next_vote, setup.rate_votes, random.Random(setup.seed + 1))
    await driver.run(window)
    return {"records": driver.records, "first_errors": driver.first_errors}


async def drive_reads(setup: Setup, window: Window) -> dict:
    rng = random.Random(setup.seed + 2)
    mix = read_mix(setup.mix, bool(setup.cursors))
    kinds, weights = list(mix), list(mix.values())

    def next_read() -> Request:
        return read_request(setup, rng, rng.choices(kinds, weights)[0])

    driver = Driver(_pool(setup), next_read, setup.rate_reads, rng)
    await driver.run(window)
    return {"records": driver.records, "first_errors": driver.first_errors}


async def probe_freshness(setup: Setup, window: Window) -> dict:
    """One probe every PROBE_EVERY_S of the measured window: a vote, then its city's first
    page (PAGE_MAX players) every POLL_EVERY_S until the player's votes include it. The
    freshness is the time from the vote's answer to the first answer that includes it (None
    when FRESHNESS_TIMEOUT_S passed first). A player whose vote got no answer (counted or
    not: unknown) is probed no more."""
    pool = _pool(setup)
    expected = dict(setup.probe_start)
    unknown: set[str] = set()
    freshness: list[float | None] = []
    polls: list[Record] = []
    errors: dict[str, str] = {}
    await asyncio.sleep(max(0.0, window.start - time.time()))
    for probe in setup.probes:
        due = time.time() + PROBE_EVERY_S
        if due > window.end:
            break
        if probe.username in unknown:
            continue
        vote = Request("probe_vote", "POST", probe.target,
                       (("Authorization", f"Bearer {probe.token}"),))  # fmt: skip
        sent = time.time()
        voted = await pool.send(vote)
        timing = server_ms(voted.headers.get("server-timing"))
        polls.append(Record("probe_vote", sent - window.start, 0.0,
                            1000 * (time.time() - sent), timing, voted.status))  # fmt: skip
        if voted.status == NO_ANSWER:
            unknown.add(probe.username)
        if voted.status != 200:
            errors.setdefault("probe_vote", f"{voted.status}: {voted.body[:200]!r}")
        else:
            expected[probe.username] += 1
            answered = time.time()
            seen = await _poll_until_seen(pool, probe, expected[probe.username], window, polls)
            freshness.append(None if seen is None else 1000 * (seen - answered))
        await asyncio.sleep(max(0.0, due - time.time()))
    return {"freshness_ms": freshness, "records": polls, "first_errors": errors}


async def _poll_until_seen(
    pool: Pool, probe: Probe, votes: int, window: Window, polls: list[Record]
) -> float | None:
    """When the first page of the probe's city first showed the player with `votes`."""
    query = urlencode({"city": probe.city, "limit": PAGE_MAX})
    request = Request("probe_read", "GET", f"{RANKINGS}?{query}")
    deadline = time.time() + FRESHNESS_TIMEOUT_S
    while time.time() < deadline:
        sent = time.time()
        answer = await pool.send(request)
        received = time.time()
        timing = server_ms(answer.headers.get("server-timing"))
        polls.append(Record("probe_read", sent - window.start, 0.0, 1000 * (received - sent),
                            timing, answer.status))  # fmt: skip
        if answer.status == 200 and _votes_of(answer, probe.username) >= votes:
            return received
        await asyncio.sleep(POLL_EVERY_S)
    return None


def _votes_of(answer: Answer, username: str) -> int:
    for entry in json.loads(answer.body):
        if entry["username"] == username:
            return int(entry["votes"])
    return -1


ROLES: dict[str, Callable] = {
    "votes": drive_votes,
    "reads": drive_reads,
    "probe": probe_freshness,
}


def client_main(role: str, setup: Setup, ready, go, start, out: str) -> None:
    """A client process: ready, then the role's load over the window that starts at the
    wall-clock time `start` (a shared value) once `go` is set; the results to `out`."""
    ready.put(role)
    go.wait()
    window = Window(start.value - setup.warmup, start.value, start.value + setup.duration)
    result: dict = {}

    async def main() -> None:
        result.update(await ROLES[role](setup, window))

    run_loop(main)
    result["records"] = [asdict(record) for record in result["records"]]
    Path(out).write_text(json.dumps(result))


# --- preparing a run -----------------------------------------------------------------------


@dataclass
class Implementation:
    name: str
    src: Path
    commit: str

    @property
    def has_leaderboards(self) -> bool:
        return (self.src / "anb" / "cache" / "leaderboard.py").is_file()

    @property
    def schema(self) -> str:
        return ",".join(sorted(migrations_of(self.src)))


def anb_command(impl: Implementation, env: dict[str, str], *args: str) -> tuple[float, str]:
    """Run `anb ARGS` of the implementation: (seconds, its output); raises if it fails."""
    started = time.monotonic()
    done = subprocess.run([str(BIN / "anb"), *args], env={**env, "PYTHONPATH": str(impl.src)},
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.monotonic() - started
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise RuntimeError(f"anb {' '.join(args)} ({impl.name}) exited {done.returncode}: {output}")
    return seconds, output


def base_env(redis_url: str, database: str, home: Path, secret: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("ANB_", "AWS_"))}
    return {
        **inherited,
        "ANB_DATABASE_URL": rankings_data.database_url(database),
        "ANB_CACHE_URL": redis_url,
        "ANB_DATA_DIR": str(home / "data"),
        "ANB_STORAGE_URL": str(home / "media"),
        "ANB_QUEUE_URL": "local",
        "ANB_JWT_SECRET": secret,
        "ANB_VOTE_RATE_LIMIT": "off",  # the benchmark's voters vote faster than people
        "ANB_LOGIN_RATE_LIMIT": "off",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def run_database(
    impl: Implementation, plan: Plan, reuse: bool, home: Path, secret: str
) -> Iterator[tuple[str, dict]]:
    """A database of the implementation's schema holding the plan: a copy of the kept
    seeded one (--reuse; seeded first if missing), or one seeded for this run; dropped at
    the end. Yields its name and what preparing it took."""
    seeded = rankings_data.seeded_name(impl.name, impl.schema, plan.scale)
    if not reuse:
        seeded = f"{seeded}_{uuid.uuid4().hex[:6]}"
    info: dict = {"seeded": seeded}
    with contextlib.ExitStack() as cleanup:
        if not reuse:
            cleanup.callback(rankings_data.drop, seeded)
        if reuse and rankings_data.is_complete(seeded):
            info["reused"] = True
        else:
            info.update(seed(impl, plan, seeded, home, secret))
        if reuse:
            database = f"anb_rank_run_{uuid.uuid4().hex[:10]}"
            started = time.monotonic()
            rankings_data.create(database, template=seeded)
            cleanup.callback(rankings_data.drop, database)
            info["copy_s"] = round(time.monotonic() - started, 1)
        else:
            database = seeded
        yield database, info


def seed(impl: Implementation, plan: Plan, database: str, home: Path, secret: str) -> dict:
    """Create, migrate (the implementation's migrations) and load the database."""
    print(f"  seeding {database} ({impl.name}'s schema) ...", flush=True)
    rankings_data.create(database)
    migrate_s, _ = anb_command(impl, base_env("memory://", database, home, secret), "migrate")
    started = time.monotonic()
    rows = rankings_data.load(database, plan)
    load_s = time.monotonic() - started
    rankings_data.mark_complete(database)
    print(f"  seeded: {rows} in {load_s:.0f} s (migrations {migrate_s:.0f} s)", flush=True)
    return {"migrate_s": round(migrate_s, 1), "load_s": round(load_s, 1), "rows": rows}


def probes_and_votes(
    plan: Plan, setup_seed: int, votes: int, probes: int
) -> tuple[list[tuple[str, str]], list[Probe], dict[str, int]]:
    """The mix's votes (path, token) and the probe's, each by a player who has not voted
    for that video yet. The probe's players (near the top of the biggest cities) receive no
    other vote; neither does the viral video, which every player has voted for already."""
    from anb.core.security import create_access_token

    rng = random.Random(setup_seed)
    totals = plan.seeded_totals()
    names = rankings_data.cities()
    by_city: dict[int, list[int]] = defaultdict(list)
    for player, city in enumerate(plan.user_city):
        by_city[city].append(player)
    probed = [
        player
        for city in range(min(PROBE_CITIES, len(names)))
        for player in sorted(by_city[city], key=lambda p: -totals[p])[:PROBE_PER_CITY]
        if player != plan.video_owner[Plan.VIRAL]
    ]
    excluded = {Plan.VIRAL, *(video for p in probed for video in plan.videos_of[p])}
    targets_ = [video for video in range(plan.scale.videos) if video not in excluded]
    cast = plan.video_votes.copy()

    def ballot(video: int) -> tuple[str, str]:
        voter = plan.voter(video, cast[video])
        cast[video] += 1
        path = f"{VIDEOS}/{plan.video_ids[video]}/vote"
        return path, create_access_token(plan.user_ids[voter])

    mix = [ballot(rng.choice(targets_)) for _ in range(votes)]
    probe_votes = []
    for n in range(probes):
        player = probed[n % len(probed)]
        path, token = ballot(min(plan.videos_of[player], key=lambda v: plan.video_votes[v]))
        city = names[plan.user_city[player]][0]
        probe_votes.append(Probe(plan.username(player), city, path, token))
    start = {plan.username(p): totals[p] for p in probed}
    return mix, probe_votes, start


@contextlib.contextmanager
def signing_with(secret: str) -> Iterator[None]:
    """This process's `anb` signs tokens with the server's secret meanwhile."""
    from anb.core.settings import get_settings

    previous = os.environ.get("ANB_JWT_SECRET")
    os.environ["ANB_JWT_SECRET"] = secret
    get_settings.cache_clear()
    try:
        yield
    finally:
        if previous is None:
            del os.environ["ANB_JWT_SECRET"]
        else:
            os.environ["ANB_JWT_SECRET"] = previous
        get_settings.cache_clear()


def city_figures(plan: Plan) -> list[City]:
    players = Counter(plan.user_city)
    videos = Counter(plan.user_city[owner] for owner in plan.video_owner)
    return [City(name, players[n], videos[n]) for n, (name, _) in enumerate(rankings_data.cities())]


def next_cursor(headers: dict[str, str]) -> str | None:
    """The next page's cursor a list answer gives: a header named for it, or a `Link`
    header's `cursor` parameter. None from a server that has no cursor."""
    for name, value in headers.items():
        if "cursor" in name.lower() and value:
            return value
    link = next((value for name, value in headers.items() if name.lower() == "link"), "")
    found = re.search(r"[?&]cursor=([^&>;\s]+)", link)
    return unquote(found.group(1)) if found else None


def deep_cursors(base: str) -> list[str]:
    """Cursors of the list from its 10th page of PAGE_MAX on, or [] when the server gives
    none (limit/offset only)."""
    connection = Connection(base)
    cursors: list[str] = []
    query = {"limit": PAGE_MAX}
    try:
        for page in range(CURSOR_PAGES):
            status, headers, _ = connection.send(read_call(VIDEOS, urlencode(query)))
            cursor = next_cursor(dict(headers)) if status == 200 else None
            if cursor is None:
                break
            if page >= 9:
                cursors.append(cursor)
            query = {"limit": PAGE_MAX, "cursor": cursor}
    finally:
        connection.close()
    return cursors


def warm_up_server(base: str, setup: Setup) -> None:
    """A few requests of each read class, one at a time: code paths and connections."""
    connection = Connection(base)
    rng = random.Random(setup.seed)
    try:
        for kind, share in read_mix(setup.mix, bool(setup.cursors)).items():
            if not share:
                continue
            for _ in range(5):
                path, _, query = read_request(setup, rng, kind).target.partition("?")
                connection.send(read_call(path, query))
    finally:
        connection.close()


# --- correctness ---------------------------------------------------------------------------


TRUTH_QUERY = """
SELECT u.first_name || ' ' || u.last_name, u.city_key, COALESCE(SUM(c.n), 0)
FROM users u
JOIN videos v ON v.owner_id = u.id AND v.status = 'processed'
LEFT JOIN (SELECT video_id, COUNT(*) AS n FROM votes GROUP BY video_id) c ON c.video_id = v.id
GROUP BY u.id
"""
COUNTER_QUERY = """
SELECT COUNT(*) FROM videos v
LEFT JOIN (SELECT video_id, COUNT(*) AS n FROM votes GROUP BY video_id) c ON c.video_id = v.id
WHERE v.votes <> COALESCE(c.n, 0)
"""


@dataclass
class Truth:
    """What SQL computes from the votes table: each ranked player's city and votes."""

    players: dict[str, tuple[str, int]]  # username -> (city key, votes)
    counters_off: int  # videos whose `votes` column differs from the votes table

    @classmethod
    def read(cls, database: str) -> Truth:
        connection = rankings_data.connect(database)
        try:
            rows = connection.run(TRUTH_QUERY)
            off = connection.run(COUNTER_QUERY)[0][0]
        finally:
            connection.close()
        return cls({name: (city, int(votes)) for name, city, votes in rows}, int(off))

    def positions(self, city_key: str | None) -> dict[str, tuple[int, int]]:
        """username -> (position, votes) in the global ranking or a city's: 1 + the
        players with more votes."""
        scoped = sorted(
            ((votes, name) for name, (city, votes) in self.players.items()
             if city_key is None or city == city_key),
            reverse=True,
        )  # fmt: skip
        ranked: dict[str, tuple[int, int]] = {}
        position = 0
        for index, (votes, name) in enumerate(scoped):
            if index == 0 or votes != scoped[index - 1][0]:
                position = index + 1
            ranked[name] = (position, votes)
        return ranked


@dataclass
class Check:
    pages: int = 0
    players: int = 0
    problems: list[str] = field(default_factory=list)

    def compare(self, where: str, entries: list[dict], truth: dict[str, tuple[int, int]]) -> None:
        self.pages += 1
        for entry in entries:
            self.players += 1
            got = (entry["position"], entry["votes"])
            wanted = truth.get(entry["username"])
            if got != wanted:
                self.problems.append(f"{where}: {entry['username']}: API {got}, SQL {wanted}")


def check_rankings(base: str, database: str, plan: Plan, seed_: int) -> Check:
    """The API's rankings against SQL: three cities walked whole (every player there, none
    twice), the top pages and random deep pages of the global ranking."""
    from anb.core.text import search_key

    truth = Truth.read(database)
    check = Check()
    if truth.counters_off:
        check.problems.append(f"{truth.counters_off} videos' `votes` differ from the votes table")
    connection = Connection(base)
    try:
        by_size = sorted(city_figures(plan), key=lambda city: -city.players)
        for city in (by_size[0], by_size[len(by_size) // 2], by_size[-1]):
            expected = truth.positions(search_key(city.name))
            seen = walk(connection, {"city": city.name}, check, expected, f"city {city.name}")
            if sorted(seen) != sorted(expected):
                check.problems.append(
                    f"city {city.name}: {len(seen)} players listed ({len(set(seen))} distinct), "
                    f"SQL ranks {len(expected)}"
                )
        everyone = truth.positions(None)
        last = math.ceil(len(everyone) / PAGE_MAX)
        deep = range(TOP_GLOBAL_PAGES, last)
        pages = [*range(min(TOP_GLOBAL_PAGES, last)),
                 *random.Random(seed_).sample(deep, min(DEEP_GLOBAL_PAGES, len(deep)))]  # fmt: skip
        for page in pages:
            offset = page * PAGE_MAX
            query = {"limit": PAGE_MAX, "offset": offset}
            entries = ranking_page(connection, query, check)
            check.compare(f"global offset {offset}", entries, everyone)
    finally:
        connection.close()
    if Truth.read(database) != truth:
        check.problems.insert(0, "votes landed during the check: its figures mean nothing")
    return check


def wait_until_quiet(database: str) -> float:
    """Wait until no vote has landed for QUIET_S: the server still runs requests that were
    queued when the clients stopped waiting for them. The seconds it took."""
    started = time.monotonic()
    connection = rankings_data.connect(database)
    try:
        last = None
        while time.monotonic() - started < QUIET_TIMEOUT_S:
            count = connection.run("SELECT count(*) FROM votes")[0][0]
            if count == last:
                break
            last = count
            time.sleep(QUIET_S)
    finally:
        connection.close()
    return round(time.monotonic() - started, 1)


def walk(
    connection: Connection,
    scope: dict[str, str],
    check: Check,
    expected: dict[str, tuple[int, int]],
    where: str,
) -> list[str]:
    """Every page of a ranking: the usernames listed, in order."""
    seen: list[str] = []
    while True:
        entries = ranking_page(connection, {**scope, "limit": PAGE_MAX, "offset": len(seen)}, check)
        check.compare(where, entries, expected)
        seen += [entry["username"] for entry in entries]
        if len(entries) < PAGE_MAX:
            return seen


def ranking_page(connection: Connection, query: dict, check: Check) -> list[dict]:
    status, _, body = connection.send(read_call(RANKINGS, urlencode(query)))
    if status != 200:
        check.problems.append(f"GET {RANKINGS}?{urlencode(query)}: {status} {body[:200]!r}")
        return []
    return json.loads(body)


# --- Redis ---------------------------------------------------------------------------------


def redis_memory(url: str) -> dict[str, float]:
    """used_memory of the Redis instance (every db, others' work included) and the sum of
    MEMORY USAGE over the keys of the benchmark's db, in MiB."""
    import redis

    client = redis.Redis.from_url(url)
    used = int(client.info("memory")["used_memory"])
    keys = 0
    ours = 0
    pipeline = client.pipeline(transaction=False)
    for key in client.scan_iter(count=1000):
        pipeline.memory_usage(key, samples=0)
        keys += 1
    ours = sum(size or 0 for size in pipeline.execute()) if keys else 0
    return {"used_memory_mib": used / 2**20, "db_keys": keys, "db_keys_mib": ours / 2**20}


@contextlib.contextmanager
def flushed(url: str) -> Iterator[None]:
    """The db emptied before and after. In the background (FLUSHDB ASYNC): freeing hundreds
    of MiB blocks Redis, every db of it, for half a second (its slow log says so)."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb(asynchronous=True)
    deadline = time.monotonic() + FREEING_TIMEOUT_S  # freed, before used_memory is read
    while client.info("memory")["lazyfree_pending_objects"] and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            client.flushdb(asynchronous=True)


# --- one implementation ----------------------------------------------------------------------


def measure(impl: Implementation, plan: Plan, args: argparse.Namespace, work: Path) -> dict:
    home = work / impl.name
    shutil.rmtree(home, ignore_errors=True)  # the previous round's
    home.mkdir(parents=True)
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    secret = "rankings-benchmark-" + uuid.uuid4().hex
    result: dict = {"implementation": impl.name, "commit": impl.commit}
    with contextlib.ExitStack() as resources:
        database, result["database"] = resources.enter_context(
            run_database(impl, plan, args.reuse, home, secret)
        )
        resources.enter_context(flushed(redis_url))
        env = base_env(redis_url, database, home, secret)
        result["redis_before"] = redis_memory(redis_url)
        if impl.has_leaderboards:
            result["rebuild"] = rebuild_leaderboards(impl, env)
        log = home / "gunicorn.log"
        server_env = {**env, "PYTHONPATH": f"{impl.src}{os.pathsep}{ROOT}"}
        serving = gunicorn_serving(APP, server_env, home, args.gunicorn_workers, log)
        base, master = resources.enter_context(serving)
        check_source(log, impl)
        setup = make_setup(base, plan, args, secret)
        warm_up_server(base, setup)
        print(f"  {impl.name} at {base}: load for {args.warmup:g} + {args.duration:g} s"
              f"{', with cursor deep pages' if setup.cursors else ''}", flush=True)  # fmt: skip
        result.update(run_clients(setup, master, database, home))
        result["redis"] = redis_memory(redis_url)
        result["backlog_s"] = wait_until_quiet(database)
        time.sleep(SETTLE_S)
        check = check_rankings(base, database, plan, args.seed)
        result["check"] = asdict(check)
        result["log_problems"] = log_problems(log, args.gunicorn_workers)
        if impl.has_leaderboards:
            result["leaderboard_check"] = leaderboard_check(impl, env)
    return result


def rebuild_leaderboards(impl: Implementation, env: dict[str, str]) -> dict:
    """`anb leaderboard rebuild`, timed; tried again (up to REBUILD_ATTEMPTS) when it fails:
    each failure is reported."""
    failures = []
    for _ in range(REBUILD_ATTEMPTS):
        try:
            seconds, output = anb_command(impl, env, "leaderboard", "rebuild")
        except RuntimeError as exc:
            failures.append(str(exc))
            print(f"  {exc}", flush=True)
            continue
        print(f"  anb leaderboard rebuild: {seconds:.1f} s: {output}", flush=True)
        return {"seconds": round(seconds, 2), "output": output, "failures": failures}
    raise RuntimeError(f"anb leaderboard rebuild failed {REBUILD_ATTEMPTS} times")


def check_source(log: Path, impl: Implementation) -> None:
    """The server's workers imported the implementation's `anb`, not another tree's. (The
    workers write to one log at once: a line may lose its end to another's.)"""
    sources = set(re.findall(re.escape(SOURCE_LINE) + r"(\S+?__init__\.py)", log.read_text()))
    wanted = str(impl.src / "anb" / "__init__.py")
    if sources != {wanted}:
        raise RuntimeError(f"{impl.name}: the server imported {sources or 'nothing'}, "
                           f"not {wanted}")  # fmt: skip


def leaderboard_check(impl: Implementation, env: dict[str, str]) -> dict:
    """`anb leaderboard check`, timed: whether the boards agree with the database. A check
    that crashed (a Redis timeout) is tried again, up to REBUILD_ATTEMPTS, and reported."""
    failures = []
    for _ in range(REBUILD_ATTEMPTS):
        started = time.monotonic()
        done = subprocess.run([str(BIN / "anb"), "leaderboard", "check"], capture_output=True,
                              text=True, env={**env, "PYTHONPATH": str(impl.src)})  # fmt: skip
        output = (done.stdout + done.stderr).strip()
        if "Traceback" not in output:
            return {"seconds": round(time.monotonic() - started, 2), "agrees": done.returncode == 0,
                    "output": output[-2000:], "failures": failures}  # fmt: skip
        failures.append(output.splitlines()[-1])
    return {"seconds": math.nan, "agrees": False, "output": "", "failures": failures}


def make_setup(base: str, plan: Plan, args: argparse.Namespace, secret: str) -> Setup:
    seconds = args.warmup + args.duration
    votes = math.ceil(VOTE_MARGIN * args.rate_votes * seconds) + 100
    probes = math.ceil(args.duration / PROBE_EVERY_S) + 10
    with signing_with(secret):
        mix, probe_votes, start = probes_and_votes(plan, args.seed, votes, probes)
    return Setup(
        base=base, rate_votes=args.rate_votes, rate_reads=args.rate_reads,
        warmup=args.warmup, duration=args.duration, seed=args.seed,
        players=plan.scale.players, videos=plan.scale.videos, cities=city_figures(plan),
        mix=args.mix, votes=mix, probes=probe_votes, probe_start=start,
        cursors=deep_cursors(base),
    )  # fmt: skip


def run_clients(setup: Setup, master: int, database: str, home: Path) -> dict:
    """The three client processes over the window; the CPU used meanwhile; their records.
    Forked: they start at once, with nothing to import (this process runs no thread, and
    they use none of its connections)."""
    context = multiprocessing.get_context("fork")
    ready, go = context.Queue(), context.Event()
    start = context.Value("d", 0.0)
    outs = {role: home / f"{role}.json" for role in ROLES}
    processes = [
        context.Process(target=client_main, name=f"bench-{role}",
                        args=(role, setup, ready, go, start, str(out)))
        for role, out in outs.items()
    ]  # fmt: skip
    for process in processes:
        process.start()
    try:
        for _ in processes:
            ready.get(timeout=120)
        start.value = time.time() + START_MARGIN_S + setup.warmup
        go.set()
        meter = CpuMeter({
            "server": lambda: process_tree(master),
            "postgres": pids_matching(database),
            "redis": pids_matching("redis-server"),
            "clients": lambda: [p.pid for p in processes if p.pid is not None],
        })  # fmt: skip
        time.sleep(max(0.0, start.value - time.time()))
        before = meter.snapshot()
        time.sleep(max(0.0, start.value + setup.duration - time.time()))
        cores = CpuMeter.cores(before, meter.snapshot())
        for process in processes:
            process.join(timeout=setup.warmup + 60)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    failed = [p.name for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"client processes failed: {failed}")
    results = {role: json.loads(out.read_text()) for role, out in outs.items()}
    records = [Record(**r) for result in results.values() for r in result["records"]]
    first_errors: dict[str, str] = {}
    for result in results.values():
        first_errors.update(result["first_errors"])
    return {
        "cores": cores,
        "duration_s": setup.duration,
        "classes": summarize(records),
        "freshness": freshness_figures(results["probe"]["freshness_ms"]),
        "votes_per_s": sum(r.kind == "vote" and r.status == 200 for r in records) / setup.duration,
        "reads_per_s": sum(r.kind in READ_MIX or r.kind == "list_cursor" for r in records)
        / setup.duration,
        "first_errors": first_errors,
        "with_cursor": bool(setup.cursors),
    }


# --- figures ---------------------------------------------------------------------------------


def summarize(records: list[Record]) -> dict[str, dict]:
    by_kind: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_kind[record.kind].append(record)
    summary = {}
    for kind, items in by_kind.items():
        answered = [r for r in items if r.status != DROPPED]
        ok = [r for r in items if r.status == 200]
        e2e = [r.e2e_ms for r in ok]
        server = [r.server_ms for r in ok if r.server_ms is not None]
        summary[kind] = {
            "count": len(items),
            "errors": sum(r.status != 200 for r in items),
            "statuses": dict(Counter(str(r.status) for r in items)),
            **{f"p{n}_ms": percentile(e2e, n / 100) for n in (50, 95, 99)},
            "server_p50_ms": percentile(server, 0.5),
            "server_p95_ms": percentile(server, 0.95),
            "late_p95_ms": percentile([r.late_ms for r in answered], 0.95),
        }
    return summary


def freshness_figures(values: list[float | None]) -> dict:
    """p50/p95/max of the probes' freshness; one never seen counts as infinitely late."""
    times = [math.inf if value is None else value for value in values]
    return {
        "probes": len(times),
        "unseen": sum(value is None for value in values),
        "p50_ms": percentile(times, 0.5),
        "p95_ms": percentile(times, 0.95),
        "max_ms": max(times, default=math.nan),
    }


CLASS_TABLE = Table((
    Column("class", 21, left=True), Column("count", 6), Column("errors", 6),
    Column("p50 ms", 8, ".1f"), Column("p95 ms", 8, ".1f"), Column("p99 ms", 8, ".1f"),
    Column("server p50", 10, ".2f"), Column("server p95", 10, ".2f"),
    Column("client late p95", 15, ".1f"),
))  # fmt: skip


def class_table(result: dict) -> list[str]:
    lines = [CLASS_TABLE.header(), CLASS_TABLE.rule()]
    for kind in [*CLASSES, "probe_vote", "probe_read"]:
        figures = result["classes"].get(kind)
        if figures is None:
            continue
        lines.append(CLASS_TABLE.row(
            kind, figures["count"], figures["errors"], figures["p50_ms"], figures["p95_ms"],
            figures["p99_ms"], figures["server_p50_ms"], figures["server_p95_ms"],
            figures["late_p95_ms"],
        ))  # fmt: skip
    return lines


def describe(result: dict, args: argparse.Namespace) -> list[str]:
    """The implementation's table and its other figures."""
    fresh, redis_end, redis_start = result["freshness"], result["redis"], result["redis_before"]
    cores = result["cores"]
    lines = [
        f"\n== {result['implementation']} ({result['commit']}) ==",
        *class_table(result),
        f"votes/s sustained: {result['votes_per_s']:.1f} (offered {args.rate_votes:g}); "
        f"reads/s: {result['reads_per_s']:.1f} (offered {args.rate_reads:g})",
        f"freshness (vote's 200 -> a ranking read showing it, polled every "
        f"{1000 * POLL_EVERY_S:.0f} ms): p50 {fresh['p50_ms']:.0f} ms, p95 {fresh['p95_ms']:.0f} "
        f"ms, max {fresh['max_ms']:.0f} ms over {fresh['probes']} probes, {fresh['unseen']} not "
        f"seen within {FRESHNESS_TIMEOUT_S:g} s",
        f"Redis used_memory at the end: {redis_end['used_memory_mib']:.1f} MiB (instance, "
        f"{redis_end['used_memory_mib'] - redis_start['used_memory_mib']:+.1f} MiB since the "
        f"start); db {args.redis_db}: {redis_end['db_keys']} keys, "
        f"{redis_end['db_keys_mib']:.1f} MiB",
        "CPU cores over the window: " + ", ".join(
            f"{name} {cores[name]:.2f}" for name in ("server", "postgres", "redis", "clients")
        ) + f"; machine {cores['machine']:.2f} of {os.cpu_count()} (everything on it)",
        f"CPU-ms per request (all classes): server {per_request(result, 'server'):.2f}, "
        f"PostgreSQL {per_request(result, 'postgres'):.2f}",
    ]  # fmt: skip
    database = result["database"]
    data = (
        "data: seeded copy reused"
        if database.get("reused")
        else (
            f"data: seeded in {database.get('load_s')} s (migrations {database.get('migrate_s')} s)"
        )
    )
    lines.append(data + (f", copied in {database['copy_s']} s" if "copy_s" in database else ""))
    if "rebuild" in result:
        rebuild = result["rebuild"]
        lines.append(f"anb leaderboard rebuild: {rebuild['seconds']:.1f} s "
                     f"({rebuild['output'].splitlines()[-1]})")  # fmt: skip
        lines += [f"  an attempt before failed: {failure}" for failure in rebuild["failures"]]
    if "leaderboard_check" in result:
        board = result["leaderboard_check"]
        lines.append(f"anb leaderboard check after the run: {board['seconds']:.1f} s, "
                     f"{'agrees' if board['agrees'] else 'DISAGREES or failed'}: "
                     f"{board['output'].splitlines()[-1] if board['output'] else ''}")  # fmt: skip
        lines += [f"  an attempt before failed: {failure}" for failure in board["failures"]]
    check = result["check"]
    lines.append(f"correctness (once no vote had landed for {QUIET_S:g} s, "
                 f"{result['backlog_s']:g} s after the load): {check['players']} ranked entries "
                 f"on {check['pages']} pages compared with SQL: {len(check['problems'])} "
                 "problems")  # fmt: skip
    lines += [f"  {problem}" for problem in check["problems"][:10]]
    lines.append(f"errors by kind: {errors_by_kind(result['classes'])}")
    lines += [f"first error of {kind}: {error}" for kind, error in result["first_errors"].items()]
    lines += [f"Gunicorn log: {line}" for line in result["log_problems"]]
    return lines


def per_request(result: dict, group: str) -> float:
    """CPU-ms of a process group per request answered in the window: less sensitive than
    latencies to the machine's other work."""
    answered = sum(
        figures["count"] - figures["statuses"].get(str(DROPPED), 0)
        for figures in result["classes"].values()
    )
    return 1000 * result["cores"][group] * result["duration_s"] / answered if answered else math.nan


ERROR_KINDS = {str(NO_ANSWER): "no answer", str(DROPPED): "dropped by the client"}


def errors_by_kind(classes: dict[str, dict]) -> str:
    """The errors of every class, by status: what went wrong at a glance."""
    found: Counter[str] = Counter()
    for figures in classes.values():
        found.update({s: n for s, n in figures["statuses"].items() if s != "200"})
    return ", ".join(f"{ERROR_KINDS.get(s, s)} {n}" for s, n in found.most_common()) or "none"


def targets_of(result: dict, args: argparse.Namespace) -> list[targets.Target]:
    classes = result["classes"]
    found = [targets.at_most("vote p95 ms", classes["vote"]["p95_ms"], TARGET_VOTE_P95_MS, ".1f")]
    for kind in (*RANKING_CLASSES, *LIST_CLASSES):
        if kind in classes:
            found.append(targets.at_most(f"{kind} p95 ms", classes[kind]["p95_ms"],
                                         TARGET_PAGE_P95_MS, ".1f"))  # fmt: skip
    found.append(targets.at_most("freshness p95 ms", result["freshness"]["p95_ms"],
                                 TARGET_FRESHNESS_P95_MS, ".0f"))  # fmt: skip
    found.append(targets.at_least("votes/s sustained", result["votes_per_s"],
                                  SUSTAINED_SHARE * args.rate_votes, ".1f"))  # fmt: skip
    errors = sum(figures["errors"] for figures in classes.values())
    found.append(targets.Target("errors == 0", str(errors), errors == 0))
    problems = len(result["check"]["problems"])
    agrees = result.get("leaderboard_check", {}).get("agrees", True)
    figure = f"{problems} off" if problems else "ok" if agrees else "boards"
    found.append(targets.Target("rankings == SQL", figure, not problems and agrees))
    return found


def comparison(results: dict[str, dict], rounds: list[dict[str, dict]]) -> list[str]:
    """After against before: p95 per class (medians over the rounds) and, with more than one
    round, each round's after/before ratio."""
    if set(results) != set(IMPLEMENTATIONS):
        return []
    columns = [Column("class", 21, left=True), Column("before p95", 11, ".1f"),
               Column("after p95", 10, ".1f"), Column("after/before", 12, ".3f")]  # fmt: skip
    if len(rounds) > 1:
        columns.append(Column("each round", 8 * len(rounds), left=True))
    table = Table(tuple(columns))
    medians = " (medians over the rounds)" if len(rounds) > 1 else ""
    lines = [f"\np95 end to end, ms: after against before{medians}", table.header(), table.rule()]
    for kind in [*CLASSES, "freshness"]:
        if kind == "freshness" or (kind in results["before"]["classes"]
                                   and kind in results["after"]["classes"]):  # fmt: skip
            old, new = (_p95(results[name], kind) for name in ("before", "after"))
            row = [kind, old, new, ratio(new, old)]
            if len(rounds) > 1:
                each = (ratio(_p95(r["after"], kind), _p95(r["before"], kind)) for r in rounds)
                row.append(" ".join(f"{value:.2f}" for value in each))
            lines.append(table.row(*row))
    return lines


def _p95(result: dict, kind: str) -> float:
    figures = result["freshness"] if kind == "freshness" else result["classes"][kind]
    return float(figures["p95_ms"])


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=60, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5, help="unrecorded seconds first")
    parser.add_argument("--rate-votes", type=float, default=100, help="votes per second")
    parser.add_argument("--rate-reads", type=float, default=200,
                        help="ranking and list reads per second")  # fmt: skip
    parser.add_argument("--scale", type=float, default=1.0,
                        help="of 100 000 players, 200 000 videos, 2 000 000 votes")  # fmt: skip
    parser.add_argument("--reuse", action="store_true",
                        help="keep the seeded databases and run on copies of them")  # fmt: skip
    parser.add_argument("--only", choices=IMPLEMENTATIONS, help="measure only this one")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measurements of each, alternating (default 1)")  # fmt: skip
    parser.add_argument("--before", default=BEFORE_REV, metavar="REV",
                        help="the implementation before the leaderboards")  # fmt: skip
    parser.add_argument(
        "--mix",
        default=",".join(f"{k}={v:g}" for k, v in READ_MIX.items()),
        help="read classes' weights, class=weight,... (default: %(default)s)",
    )
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--redis-db", type=int, default=14, help="flushed before and after")
    parser.add_argument("--seed", type=int, default=1, help="of the load's random choices")
    parser.add_argument("--out", type=Path, help="write the figures here (JSON)")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error("--scale: between 0 (excluded) and 1")
    if min(args.duration, args.rate_votes, args.rate_reads) <= 0 or args.warmup < 0:
        parser.error("--duration and the rates must be positive, --warmup not negative")
    try:
        args.mix = parse_mix(args.mix)
    except ValueError as exc:
        parser.error(f"--mix: {exc}")
    if args.out and not args.out.resolve().parent.is_dir():
        parser.error(f"--out {args.out}: no such directory")
    return args


def implementations(args: argparse.Namespace, work: Path, stack: contextlib.ExitStack):
    """(name, Implementation) to measure, "before" first (its worktree made here)."""
    names = [args.only] if args.only else list(IMPLEMENTATIONS)
    found = {}
    if "before" in names:
        commit = commit_of(args.before)
        tree = stack.enter_context(worktree(commit, work))
        found["before"] = Implementation("before", tree / "src", commit[:10])
    if "after" in names:
        found["after"] = Implementation("after", ROOT / "src", source_revision())
    return found


def source_revision() -> str:
    """The working tree's commit, marked when src/ (the code measured) has changes."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "working tree"  # fmt: skip
    changed = subprocess.run([*git, "status", "--porcelain", "--", "src"], capture_output=True,
                             text=True).stdout.strip()  # fmt: skip
    return f"{head} + changes in src" if changed else head


def run(args: argparse.Namespace, work: Path) -> list[dict[str, dict]]:
    """Each round's results by implementation, the implementations alternating in order."""
    plan = Plan.make(Scale(args.scale))
    scale = plan.scale
    print(f"data: {scale.players} players in {rankings_data.CITY_COUNT} cities, "
          f"{scale.videos} videos, {scale.votes} votes ({scale.viral_votes} on the viral "
          "video)", flush=True)  # fmt: skip
    rounds = []
    with contextlib.ExitStack() as stack:
        found = list(implementations(args, work, stack).items())
        for number in range(args.rounds):
            results = {}
            for name, impl in found if number % 2 == 0 else found[::-1]:
                print(f"round {number + 1} of {args.rounds}, {name}: {impl.commit} from "
                      f"{impl.src}", flush=True)  # fmt: skip
                results[name] = measure(impl, plan, args, work)
            rounds.append(results)
    return rounds


def median_of_rounds(rounds: list[dict]) -> dict:
    """One implementation's results over its rounds, as `targets_of` and `comparison` read
    them: medians of the p95s, the freshness p95 and votes/s; errors summed; the correctness
    problems of every round, and the boards agreeing only if they did in every round."""
    if len(rounds) == 1:
        return rounds[0]
    classes = {
        kind: {
            "p95_ms": statistics.median(r["classes"][kind]["p95_ms"] for r in rounds),
            "errors": sum(r["classes"][kind]["errors"] for r in rounds),
        }
        for kind in rounds[0]["classes"]
    }
    agrees = all(r.get("leaderboard_check", {}).get("agrees", True) for r in rounds)
    return {
        "classes": classes,
        "freshness": {"p95_ms": statistics.median(r["freshness"]["p95_ms"] for r in rounds)},
        "votes_per_s": statistics.median(r["votes_per_s"] for r in rounds),
        "check": {"problems": [p for r in rounds for p in r["check"]["problems"]]},
        "leaderboard_check": {"agrees": agrees},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    work = Path(tempfile.mkdtemp(prefix="anb-bench-rankings-"))
    try:
        rounds = run(args, work)
    except BaseException:
        for log in sorted(work.glob("*/gunicorn.log")):
            print(f"--- {log.parent.name}'s Gunicorn log, last lines:\n{log_tail(log, 25)}")
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nOpen-loop mix: {args.rate_votes:g} votes/s + {args.rate_reads:g} reads/s "
          f"({', '.join(f'{k} {v:.0%}' for k, v in args.mix.items() if v)}; list_deep half "
          f"cursor when offered), {args.duration:g} s measured after {args.warmup:g} s; "
          f"scale {args.scale:g}. One machine of {os.cpu_count()} cores shared by Gunicorn "
          f"({args.gunicorn_workers} workers), PostgreSQL, Redis and the 3 client processes "
          "(and whatever else runs on it: see 'machine'); end-to-end times over the "
          "loopback; server time = the app's own (Server-Timing).")  # fmt: skip
    print("serving: " + ", ".join(f"{k} {v}" for k, v in serving_stack().items()))
    for number, results in enumerate(rounds, 1):
        for result in results.values():
            if len(rounds) > 1:
                print(f"\n-- round {number} of {len(rounds)} --")
            for line in describe(result, args):
                print(line)
    names = list(rounds[0])
    overall = {name: median_of_rounds([results[name] for results in rounds]) for name in names}
    over = f" (medians of {len(rounds)} rounds)" if len(rounds) > 1 else ""
    status = 0
    for name, result in overall.items():
        verdict = targets.report(f"targets, {name}{over}:", targets_of(result, args), width=34)
        if name == "after" or len(overall) == 1:
            status = verdict
    for line in comparison(overall, rounds):
        print(line)
    elapsed = round(time.monotonic() - started)
    print(f"\ndone in {elapsed} s (load average at start {' '.join(load_start)})")
    if args.out:
        args.out.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()},
            "serving": serving_stack(), "nproc": os.cpu_count(),
            "load_average_start": load_start, "elapsed_s": elapsed,
            "medians": overall, "rounds": rounds,
        }, indent=1, default=str))  # fmt: skip
        print(f"figures in {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
