"""Download URLs are signed once per quarter of their lifetime and handed out again meanwhile."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from anb.public.service import page_ttl_seconds
from anb.storage.local import LocalStorage, signed_url_is_valid
from anb.storage.urls import REUSE_MAX_SECONDS, ReusedUrls, reuse_seconds

BASE = "http://api.example/"
TTL = 3600


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStorage(LocalStorage):
    """A real local storage that counts what it signs."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.signed: list[str] = []

    def url(self, key: str, *, expires_in: int, base_url: str) -> str:
        self.signed.append(key)
        return super().url(key, expires_in=expires_in, base_url=base_url)


@pytest.fixture
def storage(tmp_path: Path) -> CountingStorage:
    return CountingStorage(tmp_path)


def test_a_url_is_handed_out_again_until_a_quarter_of_its_lifetime_is_gone(
    storage: CountingStorage, configure
) -> None:
    short = 400  # a quarter of it is under REUSE_MAX_SECONDS
    clock = Clock()
    urls = ReusedUrls(storage, clock=clock)
    first = urls.url("videos/a/processed.mp4", expires_in=short, base_url=BASE)
    clock.now += short / 4 - 1
    again = urls.url("videos/a/processed.mp4", expires_in=short, base_url=BASE)
    clock.now += 2
    renewed = urls.url("videos/a/processed.mp4", expires_in=short, base_url=BASE)

    assert again == first
    assert storage.signed == ["videos/a/processed.mp4"] * 2
    query = parse_qs(urlsplit(renewed).query)
    assert signed_url_is_valid("videos/a/processed.mp4", int(query["expires"][0]),
                               query["signature"][0])  # fmt: skip


def test_a_long_lived_url_is_reused_for_minutes_not_for_half_its_life(
    storage: CountingStorage, configure
) -> None:
    """Signed with temporary role credentials, a URL dies with them (botocore renews them
    10 minutes before): reused for days, it could be handed out dead."""
    clock = Clock()
    urls = ReusedUrls(storage, clock=clock)
    for elapsed in (0, REUSE_MAX_SECONDS - 1, REUSE_MAX_SECONDS + 1):
        clock.now = 1000.0 + elapsed
        urls.url("videos/a/processed.mp4", expires_in=7 * 24 * 3600, base_url=BASE)

    assert storage.signed == ["videos/a/processed.mp4"] * 2


@pytest.mark.parametrize("lifetime", [60, 61, 400, 600, 3600, 7 * 24 * 3600])
def test_a_cached_list_page_hands_out_urls_with_half_their_life_and_5_minutes_left(
    lifetime: int,
) -> None:
    """Reused, then kept in a cached page of the public list: together at most half the
    URL's lifetime, and at most 5 minutes (what is left of role credentials, renewed 10
    minutes before they expire, at the most)."""
    held = reuse_seconds(lifetime) + page_ttl_seconds(lifetime)

    assert page_ttl_seconds(lifetime) >= 1
    assert held <= lifetime / 2
    assert held <= 300
    assert REUSE_MAX_SECONDS <= 300


def test_each_file_host_and_lifetime_has_its_own_url(storage: CountingStorage, configure) -> None:
    urls = ReusedUrls(storage, clock=Clock())
    asked = [
        ("videos/a/processed.mp4", BASE, TTL),
        ("videos/b/processed.mp4", BASE, TTL),
        ("videos/a/processed.mp4", "https://anb.example/", TTL),
        ("videos/a/processed.mp4", BASE, 60),
    ]
    answers = [urls.url(key, expires_in=ttl, base_url=base) for key, base, ttl in asked]

    assert len(storage.signed) == 4
    assert answers[2].startswith("https://anb.example/api/files/videos/a/processed.mp4?")
    assert len(set(answers)) == 4


def test_the_oldest_urls_are_dropped_past_the_limit(storage: CountingStorage, configure) -> None:
    urls = ReusedUrls(storage, kept=2, clock=Clock())
    for key in ("a.mp4", "b.mp4", "c.mp4", "c.mp4", "b.mp4", "a.mp4"):
        urls.url(key, expires_in=TTL, base_url=BASE)

    assert storage.signed == ["a.mp4", "b.mp4", "c.mp4", "a.mp4"]
