"""Both caches: values with a time to live, counters, one computation per key, outages."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from anb.cache.base import get_or_refresh
from anb.cache.memory import MemoryCache
from anb.cache.redis import RedisCache
from anb.cache.tiered import LOCAL_TTL_SECONDS, TieredCache


@pytest.fixture(params=["memory", "redis", "tiered"])
def cache(request: pytest.FixtureRequest) -> Iterator[MemoryCache | RedisCache | TieredCache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    shared = RedisCache.from_url(url)
    yield shared if request.param == "redis" else TieredCache(shared)


def _processes(url: str) -> tuple[TieredCache, TieredCache]:
    """Two API processes' caches over one Redis."""
    return TieredCache(RedisCache.from_url(url)), TieredCache(RedisCache.from_url(url))


def test_tiered_values_are_at_hand_after_a_read_and_changes_show_within_a_second(
    redis_url: str,
) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    mine, other = _processes(redis_url)
    assert mine.peek("gen") is None and mine.get("gen") is None
    mine.incr("gen")
    assert mine.peek("gen") == "1"  # this process sees its own change at once
    assert other.get("gen") == "1" and other.peek("gen") == "1"  # read once, then at hand
    mine.incr_all(["gen", "gen2"])
    assert (mine.peek("gen"), mine.peek("gen2")) == ("2", "1")
    assert other.peek("gen") == "1"  # another process's change: not yet...
    time.sleep(LOCAL_TTL_SECONDS + 0.1)
    assert other.peek("gen") is None and other.get("gen") == "2"  # ...but within a second
    value = other.get_or_compute("page", lambda: "computed", ttl_seconds=60)
    assert value == "computed" and other.peek("page") == "computed"
    assert mine.get_or_compute("page", lambda: "again", ttl_seconds=60) == "computed"


def test_tiered_counters_changed_while_redis_is_down_never_match_older_entries() -> None:
    down = TieredCache(RedisCache.from_url("redis://127.0.0.1:1/0"))
    assert down.incr_all(["gen"]) is None
    first = down.peek("gen")
    down.incr_all(["gen"])
    assert first not in (None, "0") and down.peek("gen") not in (None, "0", first)


def test_values_expire_and_counters_count(cache: MemoryCache | RedisCache | TieredCache) -> None:
    key = f"k-{uuid.uuid4()}"
    assert cache.get(key) is None
    cache.set(key, "v", ttl_seconds=1)
    assert cache.get(key) == "v"
    assert cache.incr(f"{key}:n") == 1 and cache.incr(f"{key}:n") == 2
    time.sleep(1.2)
    assert cache.get(key) is None


def test_concurrent_misses_compute_once(cache: MemoryCache | RedisCache | TieredCache) -> None:
    key, calls = f"k-{uuid.uuid4()}", []

    def compute() -> str:
        calls.append(1)
        time.sleep(0.4)
        return "ranking"

    results: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(cache.get_or_compute(key, compute, ttl_seconds=60))
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["ranking"] * 8
    assert len(calls) == 1


def test_a_failed_computation_leaves_the_key_to_the_next_caller(
    cache: MemoryCache | RedisCache | TieredCache,
) -> None:
    key = f"k-{uuid.uuid4()}"

    def fail() -> str:
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        cache.get_or_compute(key, fail, ttl_seconds=60)
    started = time.monotonic()
    assert cache.get_or_compute(key, lambda: "ranking", ttl_seconds=60) == "ranking"
    assert time.monotonic() - started < 0.5  # not waiting for a lock left behind


def test_a_lock_its_computation_outlived_is_not_released_by_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A computes for longer than the lock lasts; B takes the lock meanwhile. A stores its
    value but leaves B's lock alone."""
    monkeypatch.setattr("anb.cache.redis.LOCK_SECONDS", 1)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    cache, key = RedisCache.from_url(redis_url), f"k-{uuid.uuid4()}"

    def computing(seconds: float, value: str) -> threading.Thread:
        def compute() -> str:
            time.sleep(seconds)
            return value

        thread = threading.Thread(target=lambda: cache.get_or_compute(key, compute, ttl_seconds=60))
        thread.start()
        return thread

    first = computing(1.5, "a")
    time.sleep(1.2)
    second = computing(1.0, "b")
    first.join()
    assert client.get(key) == b"a" and client.exists(f"{key}:lock")
    second.join()
    assert not client.exists(f"{key}:lock")


def test_a_claim_goes_to_one_caller_until_it_lapses(
    cache: MemoryCache | RedisCache | TieredCache,
) -> None:
    key = f"k-{uuid.uuid4()}"
    assert cache.claim(key, seconds=0.3) is True
    assert cache.claim(key, seconds=0.3) is False
    time.sleep(0.4)
    assert cache.claim(key, seconds=0.3) is True


def test_a_stale_value_is_refreshed_by_one_caller_while_the_others_answer_it(
    cache: MemoryCache | RedisCache | TieredCache,
) -> None:
    key, calls = f"k-{uuid.uuid4()}", []

    def compute() -> str:
        calls.append(1)
        time.sleep(0.3)
        return f"v{len(calls)}"

    def read() -> tuple[str, float]:
        started = time.monotonic()
        value = get_or_refresh(cache, key, compute, fresh_seconds=0.5, ttl_seconds=60)
        return value, time.monotonic() - started

    assert read()[0] == "v1" and read()[0] == "v1" and len(calls) == 1  # fresh: kept
    time.sleep(0.6 + (LOCAL_TTL_SECONDS if isinstance(cache, TieredCache) else 0))
    results: list[tuple[str, float]] = []
    threads = [threading.Thread(target=lambda: results.append(read())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 2  # stale: refreshed once
    assert sorted(value for value, _ in results) == ["v1"] * 7 + ["v2"]
    assert all(took < 0.2 for value, took in results if value == "v1")  # nobody waited
    assert read()[0] == "v2"


def test_an_unreachable_redis_degrades_to_computing(caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisCache.from_url("redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING):
        assert cache.get("k") is None
        cache.set("k", "v", ttl_seconds=10)
        assert cache.get_or_compute("k", lambda: "fresh", ttl_seconds=10) == "fresh"
        assert cache.claim("k", seconds=1) and cache.claim("k", seconds=1)  # each does it
    assert "Redis unavailable" in caplog.text
    with pytest.raises(redis.RedisError):
        cache.check()  # readiness still says it is down


def test_the_public_api_answers_without_redis(client: TestClient, configure) -> None:
    configure(ANB_CACHE_URL="redis://127.0.0.1:1/0")
    assert client.get("/api/public/rankings").status_code == 200
    videos = client.get("/api/public/videos")
    assert videos.status_code == 200 and videos.headers["X-Total-Count"] == "0"
    ready = client.get("/api/health/ready")
    assert ready.status_code == 503 and ready.json()["components"]["cache"] == "down"
