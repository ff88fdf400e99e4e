"""The API under faults of its services, on the AWS-mode stack: Redis killed and restarted,
PostgreSQL down or black-holed, S3 and SQS failing during an upload."""

from __future__ import annotations

import http.client
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from anb.cache.tiered import LOCAL_TTL_SECONDS
from anb.core.db import unit_of_work
from anb.core.handlers import DATABASE_UNAVAILABLE
from anb.core.settings import get_settings
from anb.videos.models import Video
from anb.videos.service import EnqueueFailed, StorageFailed
from tests.clips import Clips
from tests.faults.conftest import RedisServer, through, wait_for
from tests.faults.tcp_proxy import Mode, TcpProxy
from tests.support.api import PASSWORD, Player, signup, upload
from tests.support.backend import pending_jobs, publish

ANSWER_WITHIN_SECONDS = 15  # "no hang": a fault must be answered in bounded time
ALL_UP = {"database": "ok", "storage": "ok", "queue": "ok", "cache": "ok"}


def _settle() -> None:
    """Let the last request end: FastAPI closes a request's session (a rollback on its
    connection) after sending the response, so a fault injected right after an answer would
    land in that close (see the test of that very case)."""
    time.sleep(0.5)


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _public_view(response: httpx.Response) -> Any:
    """A public list without its presigned URLs (their signature changes every second)."""
    body = response.json()
    if isinstance(body, list):
        urls = ("processed_url", "thumbnail_url")
        return [{k: v for k, v in row.items() if k not in urls} for row in body]
    return body


# --- Redis ----------------------------------------------------------------------------------

PUBLIC_READS = [
    ("/api/public/videos", {}),
    ("/api/public/videos", {"city": "CALÍ"}),
    ("/api/public/videos", {"country": "colombia", "limit": 5, "offset": 0}),
    ("/api/public/videos", {"city": "cali", "country": "Colombia"}),
    ("/api/public/rankings", {}),
    ("/api/public/rankings", {"city": "Cali"}),
    ("/api/public/rankings", {"country": "COLOMBIA", "limit": 3}),
]


def _read_all(client: TestClient) -> list[Any]:
    views = []
    for path, params in PUBLIC_READS:
        response, seconds = _timed(lambda p=path, q=params: client.get(p, params=q))
        assert response.status_code == 200, (path, params, response.text)
        assert seconds < 5, f"{path} {params} took {seconds:.1f} s"
        views.append(_public_view(response))
    return views


def _cached_views(server: RedisServer) -> list[str]:
    """Pages cached in Redis, and the rankings' boards (once built, rankings are read from
    them rather than cached)."""
    client = server.client()
    keys = client.keys("anb:videos:*") + client.keys("anb:rankings:*") + client.keys("anb:{lb}:*")
    return [key for key in keys if not key.endswith(":lock")]


def test_public_views_answer_from_the_database_while_redis_is_dead_and_use_it_again_after(
    client: TestClient, configure, redis_server: RedisServer, clips: Clips
) -> None:
    configure(ANB_CACHE_URL=redis_server.url)
    star = signup(client, first_name="Iván", last_name="Ríos", city="Cali", country="Colombia")
    fans = [signup(client) for _ in range(2)]
    response = upload(client, star, clips.landscape)
    assert response.status_code == 201, response.text
    video_id = response.json()["video_id"]
    publish(video_id)
    vote = client.post(f"/api/public/videos/{video_id}/vote", headers=fans[0].headers)
    assert vote.status_code == 200, vote.text

    warm = _read_all(client)
    assert warm[0][0]["votes"] == 1 and warm[4] == [
        {"position": 1, "username": "Iván Ríos", "city": "Cali", "votes": 1}
    ]
    assert len(_cached_views(redis_server)) >= len(PUBLIC_READS)  # every read was cached

    redis_server.kill()  # SIGKILL
    assert _read_all(client) == warm  # from the database, all of them
    ready = client.get("/api/health/ready")
    assert ready.status_code == 503
    assert ready.json()["components"] == {**ALL_UP, "cache": "down"}
    # a vote while the cache is dead shows at once in the rankings, and in the lists (which
    # may lag by a second or two, as with Redis) once what the process kept at hand expires
    vote = client.post(f"/api/public/videos/{video_id}/vote", headers=fans[1].headers)
    assert vote.status_code == 200, vote.text
    assert _read_all(client)[4][0]["votes"] == 2
    time.sleep(LOCAL_TTL_SECONDS)
    while_dead = _read_all(client)
    assert while_dead[0][0]["votes"] == 2 and while_dead[4][0]["votes"] == 2

    redis_server.start()  # same port, empty
    assert _read_all(client) == while_dead
    time.sleep(LOCAL_TTL_SECONDS)  # what the process keeps at hand expires
    assert _read_all(client) == while_dead
    assert len(_cached_views(redis_server)) >= len(PUBLIC_READS)  # the cache is used again
    ready = client.get("/api/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["components"] == ALL_UP


# --- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture
def api_database(configure, database_proxy: TcpProxy) -> TcpProxy:
    """The app's PostgreSQL through a TCP proxy that the test cuts and restores."""
    configure(ANB_DATABASE_URL=through(database_proxy, get_settings().database_url))
    return database_proxy


def _database_calls(api: httpx.Client, star: Player, video_id: str) -> dict[str, Callable]:
    """What a player and the public do, each needing the database."""
    return {
        "login": lambda: api.post(
            "/api/auth/login", json={"email": star.email, "password": PASSWORD}
        ),
        "signup": lambda: signup_request(api),
        "my videos": lambda: api.get("/api/videos", headers=star.headers),
        "my video": lambda: api.get(f"/api/videos/{video_id}", headers=star.headers),
        "public videos, uncached filter": lambda: api.get(
            "/api/public/videos", params={"city": "Pasto", "limit": 7}
        ),
        "public videos, signed in": lambda: api.get("/api/public/videos", headers=star.headers),
        "rankings, uncached filter": lambda: api.get(
            "/api/public/rankings", params={"country": "colombia", "limit": 7}
        ),
        "vote": lambda: api.post(f"/api/public/videos/{video_id}/vote", headers=star.headers),
    }


def signup_request(api: httpx.Client) -> httpx.Response:
    return api.post(
        "/api/auth/signup",
        json={
            "first_name": "Eva", "last_name": "Gil", "email": f"{uuid.uuid4().hex[:10]}@x.co",
            "password1": PASSWORD, "password2": PASSWORD, "city": "Pasto", "country": "Colombia",
        },
    )  # fmt: skip


def _published_video(api: httpx.Client, clips: Clips) -> tuple[Player, str]:
    star = signup(api, city="Pasto", country="Colombia")
    response = upload(api, star, clips.landscape)
    assert response.status_code == 201, response.text
    video_id = response.json()["video_id"]
    publish(video_id)
    return star, video_id


def _assert_recovered(api: httpx.Client, star: Player, video_id: str) -> None:
    """Back without restarting anything: every call answers as usual."""
    login = api.post("/api/auth/login", json={"email": star.email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    mine = api.get("/api/videos", headers=star.headers)
    assert mine.status_code == 200 and [v["video_id"] for v in mine.json()] == [video_id]
    public = api.get("/api/public/videos", params={"city": "pasto", "limit": 9})
    assert public.status_code == 200 and [v["video_id"] for v in public.json()] == [video_id]
    ranking = api.get("/api/public/rankings", params={"city": "pasto", "limit": 9})
    assert ranking.status_code == 200 and len(ranking.json()) == 1
    ready = api.get("/api/health/ready")
    assert ready.status_code == 200, ready.text


def test_database_down_answers_503_at_once_and_recovers_by_itself(
    live_server: str, api_database: TcpProxy, clips: Clips
) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as api:
        star, video_id = _published_video(api, clips)
        cached = api.get("/api/public/videos")  # this page is now in Redis
        assert cached.status_code == 200
        _settle()

        api_database.refuse()  # PostgreSQL goes away: connections reset, new ones refused
        for name, call in _database_calls(api, star, video_id).items():
            response, seconds = _timed(call)
            assert response.status_code == 503, (name, response.status_code, response.text)
            assert response.json()["detail"] == DATABASE_UNAVAILABLE, name
            assert seconds < ANSWER_WITHIN_SECONDS, f"{name} took {seconds:.1f} s"
        upload_attempt = upload(api, star, clips.landscape)
        assert upload_attempt.status_code == 503, upload_attempt.text
        # a page already in the cache may still be served; never an error other than 503
        again = api.get("/api/public/videos")
        assert again.status_code in (200, 503), again.text
        if again.status_code == 200:
            assert _public_view(again) == _public_view(cached)
        ready, seconds = _timed(lambda: api.get("/api/health/ready"))
        assert ready.status_code == 503 and seconds < ANSWER_WITHIN_SECONDS
        assert ready.json()["components"] == {**ALL_UP, "database": "down"}

        api_database.forward()
        _assert_recovered(api, star, video_id)
    assert _videos_of(star) == 1  # the refused upload left no row


def test_database_black_holed_answers_503_in_bounded_time_and_recovers(
    live_server: str, api_database: TcpProxy, clips: Clips
) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as api:
        star, video_id = _published_video(api, clips)
        assert api.get("/api/videos", headers=star.headers).status_code == 200  # pooled
        _settle()

        api_database.blackhole()  # connections accepted, nothing ever answers
        calls = {
            **_database_calls(api, star, video_id),
            "readiness": lambda: api.get("/api/health/ready"),
        }
        with ThreadPoolExecutor(len(calls)) as pool:  # all at once: each may wait its timeout
            futures = {name: pool.submit(_timed, call) for name, call in calls.items()}
            outcomes = {name: future.result() for name, future in futures.items()}
    api_database.forward()
    _settle()
    with httpx.Client(base_url=live_server, timeout=60) as api:  # fresh connections
        _assert_recovered(api, star, video_id)

    slow = {name: round(seconds, 1) for name, (_, seconds) in outcomes.items()}
    assert max(slow.values()) < ANSWER_WITHIN_SECONDS, slow
    statuses = {name: response.status_code for name, (response, _) in outcomes.items()}
    assert set(statuses.values()) == {503}, (statuses, slow)
    ready = outcomes["readiness"][0].json()
    assert ready["components"] == {**ALL_UP, "database": "down"}
    details = {
        name: response.json()["detail"]
        for name, (response, _) in outcomes.items()
        if name != "readiness"
    }
    # a call queued behind the stuck ones is refused as busy rather than kept waiting
    busy = {detail for detail in details.values() if detail.startswith("El servidor está ocupado")}
    assert set(details.values()) - busy == {DATABASE_UNAVAILABLE}, details
    assert len(busy) <= len(outcomes) - get_settings().db_pool_size, details


def test_database_lost_as_a_request_finishes_keeps_the_connection_answering(
    live_server: str, api_database: TcpProxy, clips: Clips
) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as api:
        star, video_id = _published_video(api, clips)
    port = int(live_server.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # one keep-alive
    try:
        _settle()
        # PostgreSQL goes away as the request's unit of work ends (its commit never arrives):
        # the answer it had computed is not sent, since the unit did not finish
        api_database.fail_when_sent(b"commit", Mode.refuse)
        connection.request("GET", "/api/videos", headers=star.headers)
        first = connection.getresponse()
        assert first.status == 503
        assert first.read().decode().count(DATABASE_UNAVAILABLE) == 1
        wait_for(lambda: api_database.mode is Mode.refuse, 5, "PostgreSQL to go down")
        connection.request("GET", "/api/videos", headers=star.headers)
        try:
            second = connection.getresponse()
        except (http.client.HTTPException, ConnectionError) as exc:
            raise AssertionError(f"the API dropped the connection: {exc!r}") from exc
        assert second.status == 503
        assert second.read().decode().count(DATABASE_UNAVAILABLE) == 1
    finally:
        connection.close()
    api_database.forward()
    with httpx.Client(base_url=live_server, timeout=60) as api:
        _assert_recovered(api, star, video_id)


# --- S3 and SQS -----------------------------------------------------------------------------


def _bucket_objects(moto_endpoint: str, storage_url: str) -> list[str]:
    """Every object under the app's storage prefix, asked of moto directly."""
    bucket, _, prefix = storage_url.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def _videos_of(player: Player) -> int:
    with unit_of_work() as session:
        return session.scalar(
            select(func.count()).select_from(Video).where(Video.owner_id == player.user_id)
        )


def _refused_upload(client: TestClient, player: Player, clips: Clips) -> httpx.Response:
    response, seconds = _timed(lambda: upload(client, player, clips.landscape))
    assert seconds < ANSWER_WITHIN_SECONDS, f"the upload took {seconds:.1f} s to be refused"
    assert response.status_code == 503, response.text
    return response


def _cut_behind_a_proxy(
    client: TestClient, configure, tcp_proxy, moto_endpoint: str, service: str, component: str
) -> None:
    """Reach `service` (S3 or SQS) through a proxy, check it works, then cut the proxy."""
    proxy = tcp_proxy("127.0.0.1", int(moto_endpoint.rsplit(":", 1)[1]))
    configure(**{f"AWS_ENDPOINT_URL_{service}": f"http://127.0.0.1:{proxy.port}"})
    assert client.get("/api/health/ready").status_code == 200  # through the proxy
    proxy.refuse()
    ready = client.get("/api/health/ready")
    assert ready.status_code == 503
    assert ready.json()["components"] == {**ALL_UP, component: "down"}


@pytest.mark.parametrize("fault", ["unreachable", "missing bucket"])
def test_s3_failing_during_an_upload_answers_503_and_leaves_nothing(
    client: TestClient,
    configure,
    player: Player,
    clips: Clips,
    moto_endpoint: str,
    tcp_proxy,
    fault: str,
) -> None:
    storage_url = get_settings().storage_url
    if fault == "unreachable":
        _cut_behind_a_proxy(client, configure, tcp_proxy, moto_endpoint, "S3", "storage")
    else:
        configure(ANB_STORAGE_URL=f"s3://anb-missing-{uuid.uuid4().hex[:8]}/media")

    response = _refused_upload(client, player, clips)
    assert response.json()["detail"] == StorageFailed().detail
    assert client.get("/api/videos", headers=player.headers).json() == []
    assert _videos_of(player) == 0
    assert pending_jobs() == []  # nothing was enqueued either
    assert _bucket_objects(moto_endpoint, storage_url) == []


@pytest.mark.parametrize("fault", ["unreachable", "missing queue"])
def test_sqs_failing_at_enqueue_answers_503_and_leaves_no_row_nor_object(
    client: TestClient,
    configure,
    player: Player,
    clips: Clips,
    moto_endpoint: str,
    tcp_proxy,
    fault: str,
) -> None:
    storage_url = get_settings().storage_url
    if fault == "unreachable":
        _cut_behind_a_proxy(client, configure, tcp_proxy, moto_endpoint, "SQS", "queue")
    else:
        queue_url = get_settings().queue_url
        configure(ANB_QUEUE_URL=queue_url.rsplit("/", 1)[0] + "/anb-missing-queue")

    response = _refused_upload(client, player, clips)
    assert response.json()["detail"] == EnqueueFailed().detail
    assert client.get("/api/videos", headers=player.headers).json() == []
    assert _videos_of(player) == 0
    assert _bucket_objects(moto_endpoint, storage_url) == []  # the stored original is gone


@pytest.mark.parametrize("service", ["s3", "sqs"])
def test_s3_or_sqs_black_holed_during_an_upload_answers_503_in_bounded_time(
    live_server: str,
    configure,
    moto_endpoint: str,
    tcp_proxy,
    clips: Clips,
    service: str,
) -> None:
    proxy = tcp_proxy("127.0.0.1", int(moto_endpoint.rsplit(":", 1)[1]))
    configure(**{f"AWS_ENDPOINT_URL_{service.upper()}": f"http://127.0.0.1:{proxy.port}"})
    with httpx.Client(base_url=live_server, timeout=ANSWER_WITHIN_SECONDS) as api:
        player = signup(api)
        proxy.blackhole()  # requests accepted, never answered
        try:
            response = upload(api, player, clips.landscape)
        except httpx.TimeoutException as exc:
            raise AssertionError(f"no answer in {ANSWER_WITHIN_SECONDS} s: {exc!r}") from exc
        finally:
            proxy.refuse()  # lets the request still waiting on the AWS SDK fail and end
    assert response.status_code == 503, response.text
