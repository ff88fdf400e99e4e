"""A bounded in-process cache for the embedded mode."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from threading import Lock

REMEMBER_SECONDS = 1.0


class MemoryCache:
    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._counters: dict[str, int] = {}  # never evicted: a reset counter could revive old keys
        self._max_entries = max_entries
        self._computing: dict[str, Lock] = {}
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            if key in self._counters:
                return str(self._counters[key])
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires_at, value = entry
            if expires_at <= time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: str, *, ttl_seconds: float) -> None:
        with self._lock:
            self._store(key, value, ttl_seconds)

    def incr(self, key: str) -> int:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + 1
            return self._counters[key]

    def incr_all(self, keys: list[str]) -> list[int] | None:
        return [self.incr(key) for key in keys]

    def peek(self, key: str) -> str | None:
        return self.get(key)

    def remember(self, key: str, value: str) -> None:
        self.set(key, value, ttl_seconds=REMEMBER_SECONDS)

    def leaderboard(self) -> None:
        return None

    def claim(self, key: str, *, seconds: float) -> bool:
        with self._lock:
            expires_at, _ = self._entries.get(key, (0.0, ""))
            if expires_at > time.monotonic():
                return False
            self._store(key, "", seconds)
            return True

    def _store(self, key: str, value: str, ttl_seconds: float) -> None:
        """Keep `value` (the lock held), evicting the least recently used beyond the bound."""
        self._entries[key] = (time.monotonic() + ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def hit(self, key: str, *, window_seconds: int) -> tuple[int, int]:
        now = time.monotonic()
        with self._lock:
            ends, count = self._windows.get(key, (0.0, 0))
            if ends <= now:
                ends, count = now + window_seconds, 0
                if len(self._windows) >= self._max_entries:  # forget finished windows
                    self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
            self._windows[key] = (ends, count + 1)
            return count + 1, max(1, math.ceil(ends - now))

    def get_or_compute(self, key: str, compute: Callable[[], str], *, ttl_seconds: float) -> str:
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            key_lock = self._computing.setdefault(key, Lock())
        with key_lock:  # one computation per key; the others find its result
            value = self.get(key)
            if value is None:
                value = compute()
                self.set(key, value, ttl_seconds=ttl_seconds)
        with self._lock:
            self._computing.pop(key, None)
        return value

    def check(self) -> None:
        return None
