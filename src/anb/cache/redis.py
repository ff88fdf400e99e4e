"""The cache in Redis. Redis is an accelerator, never a dependency: when it cannot be
reached, reads miss, writes are skipped, values are computed from the database, and a
warning is logged (at most once every few seconds)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import cast

import redis
from redis.lock import Lock

from anb.cache.leaderboard import RedisLeaderboard
from anb.cache.outages import RedisOutages

log = logging.getLogger(__name__)

LOCK_SECONDS = 10  # longest a computation may hold a key's lock
WAIT_STEP_SECONDS = 0.05
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('TTL', KEYS[1])}
"""


class RedisCache:
    def __init__(self, client: redis.Redis, *, max_wait_seconds: float = 2.0) -> None:
        """`client` decodes responses (`decode_responses=True`, as `from_url` makes it)."""
        self.client = client
        self.max_wait_seconds = max_wait_seconds
        self._outages = RedisOutages(log, "answering from the database")
        self._leaderboard: RedisLeaderboard | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisCache:
        options = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5, "retry_on_timeout": False}
        return cls(redis.Redis.from_url(url, decode_responses=True, **options))

    def get(self, key: str) -> str | None:
        # str, not bytes: the client decodes responses, which redis-py's types cannot tell
        return self._outages.call(lambda: cast("str | None", self.client.get(key)), None)

    def set(self, key: str, value: str, *, ttl_seconds: int) -> None:
        self._outages.call(lambda: self.client.set(key, value, ex=ttl_seconds), None)

    def incr(self, key: str) -> int:
        return self._outages.call(lambda: int(self.client.incr(key)), 0)

    def incr_all(self, keys: list[str]) -> list[int] | None:
        """The new counts, or None when Redis did not answer."""

        def pipelined() -> list[int]:
            pipeline = self.client.pipeline(transaction=False)
            for key in keys:
                pipeline.incr(key)
            return [int(count) for count in pipeline.execute()]

        return self._outages.call(pipelined, None)

    def peek(self, key: str) -> str | None:
        return None  # nothing can be read from Redis without a round trip

    def remember(self, key: str, value: str) -> None:
        return None  # this process keeps nothing

    def leaderboard(self) -> RedisLeaderboard:
        """The leaderboards in this Redis, over the same connections."""
        if self._leaderboard is None:
            self._leaderboard = RedisLeaderboard(self.client)
        return self._leaderboard

    def claim(self, key: str, *, seconds: float) -> bool:
        milliseconds = max(1, round(seconds * 1000))
        outages = self._outages
        return outages.call(lambda: bool(self.client.set(key, "1", nx=True, px=milliseconds)), True)

    def hit(self, key: str, *, window_seconds: int) -> tuple[int, int]:
        """Atomic in Redis, so every API process counts against one limit. Without Redis
        nothing is counted (limits are a protection, not a dependency)."""
        result = self._outages.call(lambda: self.client.eval(_HIT, 1, key, window_seconds), None)
        if result is None:
            return 0, window_seconds
        count, ttl = result
        return int(count), max(1, int(ttl))

    def get_or_compute(self, key: str, compute: Callable[[], str], *, ttl_seconds: int) -> str:
        value = self.get(key)
        if value is not None:
            return value
        lock: Lock = self.client.lock(f"{key}:lock", timeout=LOCK_SECONDS)
        if self._outages.call(lambda: lock.acquire(blocking=False), True):
            try:
                value = compute()
                self.set(key, value, ttl_seconds=ttl_seconds)
                return value
            finally:
                self._outages.release(lock)  # it may have expired: computing took over LOCK_SECONDS
        return self._wait_for(key) or compute()

    def _wait_for(self, key: str) -> str | None:
        """Another process is computing `key`: wait a little for its result."""
        deadline = time.monotonic() + self.max_wait_seconds
        while time.monotonic() < deadline:
            time.sleep(WAIT_STEP_SECONDS)
            value = self.get(key)
            if value is not None:
                return value
        return None

    def check(self) -> None:
        self.client.ping()
