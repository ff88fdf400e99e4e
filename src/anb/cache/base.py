"""The cache interface: string values with a time to live, and counters."""

from __future__ import annotations

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

    def hit(self, key: str, *, window_seconds: int) -> tuple[int, int]:
        """Count one more event in the current window of `key`: (events so far in the
        window, seconds until the window ends)."""

    def get_or_compute(self, key: str, compute: Callable[[], str], *, ttl_seconds: int) -> str:
        """The cached value, or `compute()` stored for next time. While one caller computes
        a missing key, others wait for its result instead of computing it too."""

    def check(self) -> None:
        """Raise if the cache cannot be reached (readiness)."""
