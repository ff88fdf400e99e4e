"""The cache interface: string values with a time to live, and counters."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from anb.cache.leaderboard import RedisLeaderboard


class Cache(Protocol):
    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, *, ttl_seconds: int) -> None: ...

    def incr(self, key: str) -> int:
        """Add one to a counter (created at 0) and return it."""

    def incr_all(self, keys: list[str]) -> list[int] | None:
        """Add one to each counter, in one round trip: the new counts (None if the cache
        could not be reached)."""

    def peek(self, key: str) -> str | None:
        """The value if this process has it at hand (no I/O), else None."""

    def remember(self, key: str, value: str) -> None:
        """Keep `value` at hand in this process for a moment (what `peek` answers), without
        storing it in a shared cache: for values cheaper to read again than to share."""

    def leaderboard(self) -> RedisLeaderboard | None:
        """The leaderboards kept beside this cache (Redis), or None (in-process cache)."""

    def claim(self, key: str, *, seconds: float) -> bool:
        """True for the first caller to claim `key` in `seconds` (across processes with
        Redis), False for the others meanwhile; True when the cache cannot be reached (each
        caller then does the claimed work itself)."""

    def hit(self, key: str, *, window_seconds: int) -> tuple[int, int]:
        """Count one more event in the current window of `key`: (events so far in the
        window, seconds until the window ends)."""

    def get_or_compute(self, key: str, compute: Callable[[], str], *, ttl_seconds: int) -> str:
        """The cached value, or `compute()` stored for next time. While one caller computes
        a missing key, others wait for its result instead of computing it too."""

    def check(self) -> None:
        """Raise if the cache cannot be reached (readiness)."""


def get_or_refresh(
    cache: Cache, key: str, compute: Callable[[], str], *, fresh_seconds: float, ttl_seconds: int
) -> str:
    """`compute()`'s value, kept `ttl_seconds` and computed again once it is `fresh_seconds`
    old, by the one caller that claims the refresh, while the others answer the value they
    found (nobody waits for a refresh; only a missing value is waited for, as in
    `get_or_compute`). For values that may lag a little but are read far more often than
    they change: what a reader sees is at most about `fresh_seconds` old, plus the time an
    API process keeps what it read at hand."""
    entry = cache.get(key)
    if entry is not None:
        computed_at, value = _unstamped(entry)
        fresh = time.time() - computed_at < fresh_seconds
        if fresh or not cache.claim(f"{key}:refresh", seconds=fresh_seconds):
            return value
        value = compute()
        cache.set(key, _stamped(value), ttl_seconds=ttl_seconds)
        return value
    stamped = cache.get_or_compute(key, lambda: _stamped(compute()), ttl_seconds=ttl_seconds)
    return _unstamped(stamped)[1]


def fresh_value(entry: str, *, fresh_seconds: float) -> str | None:
    """The value of an entry of `get_or_refresh` (read by `peek`, say) if it is still
    fresh, else None."""
    computed_at, value = _unstamped(entry)
    return value if time.time() - computed_at < fresh_seconds else None


def _stamped(value: str) -> str:
    return f"{time.time():.3f} {value}"


def _unstamped(entry: str) -> tuple[float, str]:
    """(when it was computed, the value) of a `_stamped` entry."""
    computed_at, _, value = entry.partition(" ")
    return float(computed_at), value
