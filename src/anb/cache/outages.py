"""Redis calls that degrade rather than fail: when Redis does not answer, the caller's
fallback does (the database, a computation of its own), and a warning is logged at most
every WARN_EVERY_SECONDS per client, not once per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import LockNotOwnedError, RedisError
from redis.lock import Lock

T = TypeVar("T")
F = TypeVar("F")
WARN_EVERY_SECONDS = 10


class RedisOutages:
    def __init__(self, log: logging.Logger, meanwhile: str) -> None:
        """`meanwhile` says in the warning what answers instead of Redis."""
        self._log = log
        self._meanwhile = meanwhile
        self._last_warning = 0.0

    def call(self, call: Callable[[], T], fallback: F) -> T | F:
        """`call()`'s answer, or `fallback` when Redis fails."""
        try:
            return call()
        except RedisError as error:
            self.warn(error)
            return fallback

    def release(self, lock: Lock) -> None:
        """Release `lock` unless it expired meanwhile (then it is not ours any more)."""
        try:
            lock.release()
        except LockNotOwnedError:
            pass
        except RedisError as error:
            self.warn(error)

    def warn(self, error: RedisError) -> None:
        now = time.monotonic()
        if now - self._last_warning > WARN_EVERY_SECONDS:
            self._last_warning = now
            self._log.warning("Redis unavailable, %s: %s", self._meanwhile, error)
