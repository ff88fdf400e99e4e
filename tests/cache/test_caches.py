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

from anb.cache.memory import MemoryCache
from anb.cache.redis import RedisCache


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[MemoryCache | RedisCache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    yield RedisCache.from_url(url)


def test_values_expire_and_counters_count(cache: MemoryCache | RedisCache) -> None:
    key = f"k-{uuid.uuid4()}"
    assert cache.get(key) is None
    cache.set(key, "v", ttl_seconds=1)
    assert cache.get(key) == "v"
    assert cache.incr(f"{key}:n") == 1 and cache.incr(f"{key}:n") == 2
    time.sleep(1.2)
    assert cache.get(key) is None


def test_concurrent_misses_compute_once(cache: MemoryCache | RedisCache) -> None:
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


def test_an_unreachable_redis_degrades_to_computing(caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisCache.from_url("redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING):
        assert cache.get("k") is None
        cache.set("k", "v", ttl_seconds=10)
        assert cache.get_or_compute("k", lambda: "fresh", ttl_seconds=10) == "fresh"
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
