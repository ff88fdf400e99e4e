"""argon2id's memory in an API process: at most ANB_PASSWORD_THREADS hashes at once, in as
many threads, whatever the mix of sign-ups and logins (known and unknown emails)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest

from anb.core import security
from anb.core.concurrency import password_pool
from tests.support.api import PASSWORD

THREADS = 2


class CountingHasher:
    """The real hasher, counting the hashes running at once and the threads running them;
    each also sleeps a little (the GIL released) so that a burst really overlaps."""

    def __init__(self) -> None:
        self.real = security._hasher()
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls = 0
        self.threads: set[int] = set()

    def hash(self, password: str) -> str:
        with self._counted():
            return self.real.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        with self._counted():
            return self.real.verify(password_hash, password)

    @contextmanager
    def _counted(self) -> Iterator[None]:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
            self.threads.add(threading.get_ident())
        try:
            time.sleep(0.05)
            yield
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def hasher(configure, monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingHasher]:
    configure(
        ANB_PASSWORD_THREADS=str(THREADS),
        ANB_SIGNUP_RATE_LIMIT="off",
        ANB_LOGIN_RATE_LIMIT="off",
    )
    counting = CountingHasher()
    monkeypatch.setattr(security, "_hasher", lambda: counting)
    password_pool.cache_clear()
    security.dummy_password_hash.cache_clear()  # a fresh process: made on the first need
    yield counting
    password_pool.cache_clear()
    security.dummy_password_hash.cache_clear()


def _burst(base_url: str, requests: list[tuple[str, dict]]) -> list[int]:
    with (
        httpx.Client(base_url=base_url, timeout=30) as http,
        ThreadPoolExecutor(len(requests)) as pool,
    ):
        return list(pool.map(lambda call: http.post(call[0], json=call[1]).status_code, requests))


def _signup_body(email: str) -> dict[str, str]:
    return {
        "first_name": "Ana", "last_name": "Pérez", "email": email, "password1": PASSWORD,
        "password2": PASSWORD, "city": "Bogotá", "country": "Colombia",
    }  # fmt: skip


def test_argon2id_runs_at_most_password_threads_at_once_in_as_many_threads(
    hasher: CountingHasher, live_server: str
) -> None:
    emails = [f"{uuid.uuid4().hex[:10]}@example.com" for _ in range(12)]
    signups = _burst(live_server, [("/api/auth/signup", _signup_body(email)) for email in emails])
    assert set(signups) <= {201, 503} and 201 in signups
    logins = [("/api/auth/login", {"email": email, "password": PASSWORD}) for email in emails]
    unknown = [
        ("/api/auth/login", {"email": f"nadie-{index}@example.com", "password": PASSWORD})
        for index in range(12)
    ]  # the first ones also make the dummy hash
    mixed = [call for pair in zip(logins, unknown, strict=True) for call in pair]
    codes = _burst(live_server, mixed)
    assert set(codes) <= {200, 401, 503} and 200 in codes and 401 in codes
    assert hasher.calls >= 12 + 12 + 1
    assert hasher.peak == THREADS, "more hashes at once than ANB_PASSWORD_THREADS"
    assert len(hasher.threads) <= THREADS, "hashes ran in threads outside the password pool"
