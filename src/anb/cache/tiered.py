"""Redis with a small in-process cache in front. What a process reads from Redis it keeps
for `LOCAL_TTL_SECONDS`, so a hot page costs no round trip and can be answered without
leaving the event loop (`peek`); a change made by another process is seen at most that
late, and one made by this process at once."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from anb.cache.leaderboard import RedisLeaderboard
from anb.cache.memory import MemoryCache
from anb.cache.redis import RedisCache

LOCAL_TTL_SECONDS = 1.0


class TieredCache:
    def __init__(self, shared: RedisCache, *, local_ttl_seconds: float = LOCAL_TTL_SECONDS) -> None:
        self.shared = shared
        self.local = MemoryCache()
        self.local_ttl_seconds = local_ttl_seconds

    def peek(self, key: str) -> str | None:
        return self.local.get(key)

    def remember(self, key: str, value: str) -> None:
        self._keep(key, value)

    def leaderboard(self) -> RedisLeaderboard:
        return self.shared.leaderboard()

    def get(self, key: str) -> str | None:
        value = self.local.get(key)
        if value is None:
            value = self.shared.get(key)
            if value is not None:
                self._keep(key, value)
        return value

    def set(self, key: str, value: str, *, ttl_seconds: int) -> None:
        self.shared.set(key, value, ttl_seconds=ttl_seconds)
        self._keep(key, value, ttl_seconds)

    def incr(self, key: str) -> int:
        count = self.shared.incr(key)
        self._keep_counted([key], [count] if count else None)
        return count

    def incr_all(self, keys: list[str]) -> list[int] | None:
        counts = self.shared.incr_all(keys)
        self._keep_counted(keys, counts)
        return counts

    def claim(self, key: str, *, seconds: float) -> bool:
        return self.shared.claim(key, seconds=seconds)

    def hit(self, key: str, *, window_seconds: int) -> tuple[int, int]:
        return self.shared.hit(key, window_seconds=window_seconds)

    def get_or_compute(self, key: str, compute: Callable[[], str], *, ttl_seconds: int) -> str:
        value = self.local.get(key)
        if value is None:
            value = self.shared.get_or_compute(key, compute, ttl_seconds=ttl_seconds)
            self._keep(key, value, ttl_seconds)
        return value

    def check(self) -> None:
        self.shared.check()

    def _keep(self, key: str, value: str, ttl_seconds: float | None = None) -> None:
        ttl = min(ttl_seconds or self.local_ttl_seconds, self.local_ttl_seconds)
        self.local.set(key, value, ttl_seconds=ttl)

    def _keep_counted(self, keys: list[str], counts: list[int] | None) -> None:
        """This process sees its own change at once: the new counts, or, when Redis did not
        answer, values no other entry was keyed by (so nothing cached before is served)."""
        values = [str(count) for count in counts] if counts else [uuid.uuid4().hex for _ in keys]
        for key, value in zip(keys, values, strict=True):
            self._keep(key, value)
