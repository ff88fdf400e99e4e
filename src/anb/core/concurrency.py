"""Blocking work off the event loop, in bounded thread pools that shed load.

An API process runs its blocking calls in three small pools: database units of work
(as many threads as the connection pool has connections, so a thread never waits for a
connection), storage transfers, and password hashing (argon2id, expensive on purpose).
The event loop itself only parses, routes and answers, so liveness never waits behind
application work.

When a pool is busy, a call waits for a thread only if the wait it can expect (the calls
ahead of it times the pool's recent service time, over its threads) stays within what is
left of the request's budget (`ANB_MAX_WAIT_SECONDS` for all its waits together); otherwise
it is refused at once with `Overloaded` (503 and `Retry-After`), so a saturated process
answers fast instead of queueing without bound. Password hashing has a budget of its own
(`ANB_PASSWORD_MAX_WAIT_SECONDS`): a login is slow on purpose, and a burst of them (users
arriving at once) is better served a little late than refused.
A call still waiting when the budget is used up (the estimate was wrong) is refused then.

Password hashing also runs in threads of its own, not in the event loop's shared worker
threads (see `password_pool`), so that its memory stays bounded.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from functools import lru_cache
from typing import TypeVar
from weakref import WeakKeyDictionary

import anyio.to_thread
from anyio import CapacityLimiter

from anb.core.errors import Unavailable
from anb.core.settings import get_settings

T = TypeVar("T")

BUSY = "El servidor está ocupado; inténtalo de nuevo en {seconds} s."
_SMOOTHING = 0.2  # weight of the newest call in the pool's service-time average
_waited: ContextVar[float] = ContextVar("anb_pool_wait", default=0.0)
"""Seconds this request (its task) has already waited for pool threads."""


class Overloaded(Unavailable):
    def __init__(self, *, retry_after: int) -> None:
        super().__init__(BUSY.format(seconds=retry_after))
        self.retry_after = retry_after


class WorkPool:
    def __init__(self, *, threads: int, max_wait_seconds: float, own_threads: bool = False) -> None:
        """`own_threads`: run the calls in `threads` threads kept for this pool alone (for
        the process's life), instead of the event loop's shared worker threads."""
        self.threads = threads
        self.max_wait_seconds = max_wait_seconds
        self.service_seconds = 0.005  # a running average, updated by every call
        self._limiters: WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[CapacityLimiter, CapacityLimiter]
        ] = WeakKeyDictionary()
        self._executor = (
            ThreadPoolExecutor(threads, thread_name_prefix="anb-pool") if own_threads else None
        )

    async def run(self, func: Callable[..., T], *args: object) -> T:
        """`func(*args)` in one of the pool's threads, or `Overloaded`: at once when the
        expected wait exceeds what is left of the request's waiting budget, else as soon
        as the wait has used it up."""
        limiter, threads = self._limiters_of_this_loop()
        try:
            limiter.acquire_nowait()
        except anyio.WouldBlock:
            await self._wait_for_a_thread(limiter)
        try:
            return await self._in_a_thread(func, args, threads)
        finally:
            limiter.release()

    async def _in_a_thread(
        self, func: Callable[..., T], args: tuple[object, ...], threads: CapacityLimiter
    ) -> T:
        if self._executor is None:
            return await anyio.to_thread.run_sync(self._timed, func, args, limiter=threads)
        future = self._executor.submit(self._timed, func, args)
        # As `run_sync`: a call ends when its thread does. The result is returned after the
        # block: a cancel scope may swallow its own cancellation, which this one never gets.
        with anyio.CancelScope(shield=True):
            result = await asyncio.wrap_future(future)
        return result

    async def _wait_for_a_thread(self, limiter: CapacityLimiter) -> None:
        budget = self.max_wait_seconds - _waited.get()
        expected = self.expected_wait(limiter)
        if expected > budget:
            raise Overloaded(retry_after=max(1, math.ceil(expected)))
        started = time.monotonic()
        try:
            with anyio.fail_after(budget):
                await limiter.acquire()
        except TimeoutError:
            raise Overloaded(retry_after=max(1, math.ceil(self.max_wait_seconds))) from None
        finally:
            _waited.set(_waited.get() + time.monotonic() - started)

    def expected_wait(self, limiter: CapacityLimiter) -> float:
        ahead = limiter.statistics().tasks_waiting + 1
        return ahead * self.service_seconds / self.threads

    def _timed(self, func: Callable[..., T], args: tuple[object, ...]) -> T:
        started = time.monotonic()
        try:
            return func(*args)
        finally:
            spent = time.monotonic() - started
            self.service_seconds += _SMOOTHING * (spent - self.service_seconds)

    def _limiters_of_this_loop(self) -> tuple[CapacityLimiter, CapacityLimiter]:
        """The admission limiter and the thread limiter (as large: a call holding an
        admission token never waits for a thread), one pair per event loop."""
        loop = asyncio.get_running_loop()
        pair = self._limiters.get(loop)
        if pair is None:
            pair = self._limiters[loop] = (
                CapacityLimiter(self.threads),
                CapacityLimiter(self.threads),
            )
        return pair


@lru_cache
def database_pool() -> WorkPool:
    settings = get_settings()
    return WorkPool(threads=settings.db_pool_size, max_wait_seconds=settings.max_wait_seconds)


@lru_cache
def storage_pool() -> WorkPool:
    settings = get_settings()
    return WorkPool(threads=settings.storage_threads, max_wait_seconds=settings.max_wait_seconds)


@lru_cache
def password_pool() -> WorkPool:
    """At most `ANB_PASSWORD_THREADS` (the CPUs) argon2id hashes at once, in as many threads
    of the pool's own. Hashing is CPU bound: more at once would buy no throughput, only
    memory (19 MiB each). Own threads, because glibc's malloc keeps a freed block that large
    in the arena of the thread that used it (its mmap threshold rises to the block's size),
    so hashes run in the loop's shared worker threads (which also run database and storage
    work) left 19 MiB behind in each thread that ever hashed: an `anb serve` grew from 104
    to 289 MiB over five bursts of 60 sign-ups and 60 logins, and was still growing. In the
    pool's own threads, hashing holds at most threads x 19 MiB (38 MiB on a 2-vCPU instance),
    at peak and ever after: the same bursts left it at 153 MiB."""
    settings = get_settings()
    return WorkPool(
        threads=settings.password_threads,
        max_wait_seconds=settings.password_max_wait_seconds,
        own_threads=True,
    )
