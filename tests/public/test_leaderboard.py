"""The rankings against an oracle (a plain GROUP BY of the votes table), on the Redis
leaderboards and on the SQL query that answers without them; rebuilding lost boards and
reconciling them with the database, Redis faults included."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import text

from anb import cli
from anb.api import create_app
from anb.cache import get_cache
from anb.cache.leaderboard import RedisLeaderboard
from anb.core.db import unit_of_work
from anb.core.text import search_key
from anb.public import ranking
from anb.public.scopes import Scope
from tests.faults.tcp_proxy import Mode, TcpProxy
from tests.support.backend import add_public_video, add_user, vote

PLACES = [  # spellings of one place differ in case and accents, as players type them
    ("Bogotá", "Colombia"),
    ("BOGOTA", "colombia"),
    ("Cali", "Colombia"),
    ("Cali", "Perú"),
    ("Lima", "Peru"),
]
NAMES = ["Álvaro", "Zoe", "ana", "Bruno", "Ana", "Éric", "zoé", "Carla"]
SCOPES = [
    {},
    {"city": "bogota"},
    {"city": "CALI"},
    {"country": "colombia"},
    {"country": "PERÚ"},
    {"city": "cali", "country": "peru"},
    {"city": "Quito"},
]


# --- the data, inserted as the app would, and the oracle --------------------------------


def oracle(city: str = "", country: str = "") -> list[dict]:
    """The ranking from a plain GROUP BY of the votes table, ranked in Python."""
    query = text("""
        SELECT u.id, u.first_name, u.last_name, u.city, u.city_key, u.country_key,
               COUNT(votes.user_id) AS votes
        FROM users u
        JOIN videos v ON v.owner_id = u.id AND v.status = 'processed'
        LEFT JOIN votes ON votes.video_id = v.id
        GROUP BY u.id, u.first_name, u.last_name, u.city, u.city_key, u.country_key
    """)
    with unit_of_work() as session:
        rows = session.execute(query).all()
    rows = [
        row for row in rows
        if (not city or row.city_key == search_key(city))
        and (not country or row.country_key == search_key(country))
    ]  # fmt: skip
    rows.sort(key=lambda r: (-r.votes, search_key(f"{r.first_name} {r.last_name}").encode(), r.id))
    return [
        {
            "position": 1 + sum(other.votes > row.votes for other in rows),
            "username": f"{row.first_name} {row.last_name}",
            "city": row.city,
            "votes": row.votes,
        }
        for row in rows
    ]


def seed(players: int = 24, voters: int = 6, seed: int = 7) -> dict[str, list[str]]:
    """Players over PLACES, some with two public videos, one without any; votes drawn so
    that many players tie (few voters)."""
    rng = random.Random(seed)
    videos: list[str] = []
    for n in range(players):
        city, country = PLACES[n % len(PLACES)]
        owner = add_user(NAMES[n % len(NAMES)], f"Ruiz {n % 3}", city, country)
        videos += [add_public_video(owner) for _ in range(1 + (n % 4 == 0))]
    add_user("Sin", "Videos", "Cali", "Colombia")  # no public video: never ranked
    fans = [add_user("Fan", str(n), "Lima", "Peru") for n in range(voters)]
    for fan in fans:
        for video_id in rng.sample(videos, k=len(videos) // 3):
            vote(fan, video_id)
    return {"videos": videos, "fans": fans}


def api_pages(client: TestClient, params: dict, limit: int) -> list[dict]:
    """The whole ranking of a scope, read `limit` at a time."""
    entries: list[dict] = []
    while True:
        page = client.get(
            "/api/public/rankings", params={**params, "limit": limit, "offset": len(entries)}
        )
        assert page.status_code == 200, page.text
        entries += page.json()
        if len(page.json()) < limit:
            return entries


def leaderboard() -> RedisLeaderboard:
    board = get_cache().leaderboard()
    if board is None:
        pytest.skip("the Redis leaderboards: AWS mode only")
    return board


@pytest.fixture
def boards(client: TestClient) -> RedisLeaderboard:
    """The boards, built (empty) before the test's data arrives: what follows reaches them
    through publications and votes."""
    board = leaderboard()
    ranking.rebuild(board)
    assert board.is_ready()
    return board


# --- the ranking, on both paths -----------------------------------------------------------


def test_every_scope_and_page_matches_a_group_by_of_the_votes(client: TestClient) -> None:
    """Embedded: the SQL query. AWS: the boards, fed by each publication and vote."""
    board = get_cache().leaderboard()
    if board is not None:
        ranking.rebuild(board)
    seed()
    for params in SCOPES:
        expected = oracle(**params)
        assert api_pages(client, params, limit=100) == expected, params
        for limit in (1, 3, 7):  # pages start inside groups of tied players
            assert api_pages(client, params, limit=limit) == expected, (params, limit)
    positions = [entry["position"] for entry in oracle()]
    assert len(set(positions)) < len(positions), "the data should have ties"
    if board is not None:
        assert board.is_ready()
        assert ranking.reconcile(board, repair=False).agrees


def test_the_sql_query_matches_a_group_by_of_the_votes(client: TestClient) -> None:
    """The page the API answers without Redis, on SQLite and on PostgreSQL."""
    seed(players=15, voters=4, seed=3)
    for params in SCOPES:
        scope = Scope.of(params.get("city"), params.get("country"))
        expected = oracle(**params)
        with unit_of_work() as session:
            whole = ranking.sql_page(session, scope=scope, limit=100, offset=0)
            pages = [
                ranking.sql_page(session, scope=scope, limit=2, offset=offset)
                for offset in range(0, len(expected), 2)
            ]
        assert [entry.model_dump() for entry in whole] == expected, params
        assert [entry.model_dump() for page in pages for entry in page] == expected, params


def test_ties_share_a_position_and_a_page_starts_inside_them(
    client: TestClient, boards: RedisLeaderboard
) -> None:
    owners = {name: add_user(name, "Paz", "Cali", "Colombia") for name in "DCBAE"}
    videos = {name: add_public_video(owner) for name, owner in owners.items()}
    fans = [add_user("Fan", str(n), "Lima", "Peru") for n in range(3)]
    for name, count in {"A": 3, "B": 2, "C": 2, "D": 1}.items():
        for fan in fans[:count]:
            vote(fan, videos[name])
    ranked = client.get("/api/public/rankings").json()
    assert [(r["position"], r["username"], r["votes"]) for r in ranked] == [
        (1, "A Paz", 3), (2, "B Paz", 2), (2, "C Paz", 2), (4, "D Paz", 1), (5, "E Paz", 0),
    ]  # fmt: skip
    page = client.get("/api/public/rankings", params={"limit": 2, "offset": 2}).json()
    assert [(r["position"], r["username"]) for r in page] == [(2, "C Paz"), (4, "D Paz")]
    assert client.get("/api/public/rankings", params={"offset": 5}).json() == []


def test_a_published_player_enters_the_board_with_zero_votes(
    client: TestClient, boards: RedisLeaderboard
) -> None:
    star = add_user("Estrella", "Uno", "Cali", "Colombia")
    assert client.get("/api/public/rankings").json() == []  # no public video yet
    add_public_video(star)
    expected = [{"position": 1, "username": "Estrella Uno", "city": "Cali", "votes": 0}]
    assert client.get("/api/public/rankings", params={"city": "cali"}).json() == expected
    add_public_video(star)  # a second video: still there once, with its votes kept
    assert client.get("/api/public/rankings").json() == expected


# --- losing the boards, and reconciling them --------------------------------------------


def wait_for_rebuild(board: RedisLeaderboard) -> None:
    ranking.finish_rebuilds()
    assert board.is_ready(), "the read that found no boards should have rebuilt them"


def test_lost_boards_are_answered_by_sql_then_rebuilt_once(
    client: TestClient, boards: RedisLeaderboard
) -> None:
    data = seed(players=12, voters=4)
    boards.forget()  # as a flushed or replaced Redis
    for params in SCOPES:  # answered meanwhile, by SQL
        assert api_pages(client, params, limit=100) == oracle(**params), params
    wait_for_rebuild(boards)
    late = add_user("Tarde", "Fan", "Lima", "Peru")
    for video_id in data["videos"][:3]:
        vote(late, video_id)  # counted on the rebuilt boards
    for params in SCOPES:
        assert api_pages(client, params, limit=4) == oracle(**params), params
    assert ranking.reconcile(boards, repair=False).agrees


def test_the_rebuild_lock_lets_one_process_rebuild(client: TestClient) -> None:
    board = leaderboard()
    release = board.lock(timeout_seconds=30)
    assert release is not None
    try:
        assert board.lock(timeout_seconds=30) is None
        assert ranking.rebuild_in_background(board) is None  # someone else rebuilds
        assert cli.main(["leaderboard", "rebuild"]) == 1
    finally:
        release()
    assert not board.is_ready()


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", 6379)
    proxy.forward()
    yield proxy
    proxy.close()


def test_a_vote_redis_missed_is_found_by_check_and_repaired(
    configure, backend: dict[str, str], redis_proxy: TcpProxy, capsys: pytest.CaptureFixture
) -> None:
    """Redis goes away between the vote's commit and its board update (the connection is
    cut when the update is sent): the vote counts in the database, `check` says what
    differs, `check --repair` fixes it."""
    if "ANB_CACHE_URL" not in backend:
        pytest.skip("the Redis leaderboards: AWS mode only")
    database = backend["ANB_CACHE_URL"].rsplit("/", 1)[1]
    configure(ANB_CACHE_URL=f"redis://127.0.0.1:{redis_proxy.port}/{database}")
    board = leaderboard()
    ranking.rebuild(board)
    owner = add_user("Ana", "Pérez", "Bogotá", "Colombia")
    video_id = add_public_video(owner)
    fans = [add_user("Fan", str(n), "Lima", "Peru") for n in range(2)]
    vote(fans[0], video_id)

    redis_proxy.fail_when_sent(b"EVALSHA", Mode.refuse)  # the board update, after the commit
    vote(fans[1], video_id)
    assert redis_proxy.mode is Mode.refuse
    assert oracle()[0]["votes"] == 2
    redis_proxy.forward()

    capsys.readouterr()
    assert cli.main(["leaderboard", "check"]) == 1
    report = capsys.readouterr().err
    assert "4 scores differ" in report  # the player's four scopes
    assert "ana perez" in report and "Redis 1 votes, database 2 votes" in report
    assert "city 'bogota', country 'colombia'" in report
    assert cli.main(["leaderboard", "check", "--repair"]) == 0
    assert "repaired 4 of 4 scores" in capsys.readouterr().err
    assert cli.main(["leaderboard", "check"]) == 0
    assert "agree (1 players ranked)" in capsys.readouterr().err
    with TestClient(create_app()) as client:
        assert client.get("/api/public/rankings").json()[0]["votes"] == 2


def test_rankings_come_from_sql_while_redis_is_down(
    configure, backend: dict[str, str], redis_proxy: TcpProxy
) -> None:
    if "ANB_CACHE_URL" not in backend:
        pytest.skip("the Redis leaderboards: AWS mode only")
    database = backend["ANB_CACHE_URL"].rsplit("/", 1)[1]
    configure(ANB_CACHE_URL=f"redis://127.0.0.1:{redis_proxy.port}/{database}")
    ranking.rebuild(leaderboard())
    seed(players=6, voters=2)
    redis_proxy.refuse()
    with TestClient(create_app()) as client:
        assert api_pages(client, {"city": "cali"}, limit=2) == oracle(city="cali")
        assert api_pages(client, {}, limit=100) == oracle()


def test_check_repairs_extra_and_missing_players_and_names(
    client: TestClient, boards: RedisLeaderboard, capsys: pytest.CaptureFixture
) -> None:
    seed(players=5, voters=2)
    gone = oracle()[0]
    with unit_of_work() as session:  # removed behind the app's back
        session.execute(text("DELETE FROM users WHERE first_name || ' ' || last_name = :n"),
                        {"n": gone["username"]})  # fmt: skip
    assert cli.main(["leaderboard", "check"]) == 1
    assert "database absent" in capsys.readouterr().err
    assert cli.main(["leaderboard", "check", "--repair"]) == 0
    assert cli.main(["leaderboard", "check"]) == 0
    assert api_pages(client, {}, limit=3) == oracle()


def test_check_of_boards_never_built_says_so_and_repair_builds_them(
    client: TestClient, capsys: pytest.CaptureFixture
) -> None:
    board = leaderboard()
    seed(players=4, voters=1)
    board.forget()
    assert cli.main(["leaderboard", "check"]) == 1
    assert "not built" in capsys.readouterr().err
    assert cli.main(["leaderboard", "check", "--repair"]) == 0
    assert "rebuilt from the database, 4 players ranked" in capsys.readouterr().err
    assert board.is_ready() and ranking.reconcile(board, repair=False).agrees


# A Lua script holds Redis (every client waits) until its clock passes ARGV[1] microseconds.
_HOLD_REDIS = """
local now = redis.call('TIME')
local until_us = now[1] * 1000000 + now[2] + tonumber(ARGV[1])
repeat now = redis.call('TIME') until now[1] * 1000000 + now[2] >= until_us
"""


def test_rebuilds_and_checks_wait_for_a_slow_redis_longer_than_votes_do(
    client: TestClient, boards: RedisLeaderboard, redis_url: str
) -> None:
    """A whole-board write or read can take more than the 0.5 s a vote waits (at 100 000
    players on a busy machine): those wait for Redis, where a vote gives up."""
    seed(players=4, voters=1)
    assert ranking.reconcile(boards, repair=False).agrees
    before = boards.contents()
    holder = redis.Redis.from_url(redis_url)
    held = threading.Thread(target=lambda: holder.eval(_HOLD_REDIS, 0, 2_000_000))
    held.start()
    time.sleep(0.2)  # the script has begun
    try:
        with pytest.raises(redis.TimeoutError):
            boards.client.exists("anb:probe")  # a vote's wait runs out
        contents = boards.contents()  # Redis still held: this waits it out
    finally:
        held.join()
        holder.close()
    assert contents == before
    boards.replace(contents.boards, contents.labels)
    assert ranking.reconcile(boards, repair=False).agrees


def test_the_commands_need_redis(client: TestClient, capsys: pytest.CaptureFixture) -> None:
    if get_cache().leaderboard() is not None:
        pytest.skip("embedded mode: the in-process cache")
    assert cli.main(["leaderboard", "check"]) == 2
    assert "no leaderboards" in capsys.readouterr().err
    assert cli.main(["leaderboard", "rebuild"]) == 2
