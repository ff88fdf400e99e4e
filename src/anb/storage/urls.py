"""Download URLs signed once and handed out again while they have time left.

Signing is not free: an S3 presigned URL costs ~160 µs of CPU in botocore, and a page of the
public list holds 40 of them (each video and its poster), ~6.5 ms: more than the rest of the
page. A URL valid for `expires_in` seconds is handed out again for a quarter of that, at
most REUSE_MAX_SECONDS (`reuse_seconds`); meanwhile every client gets the same URL for a
file, which lets browsers and caches keep the file by its URL. What keeps URLs longer (a
cached page of the public list) keeps them at most half their lifetime less this, so a
client still gets at least half the lifetime it was promised.

On AWS the URLs are signed with the role's temporary credentials, and a presigned URL stops
working when the credentials that signed it expire, whatever its own expiry. botocore
renews them 10-15 minutes before they expire, so a URL is at least 10 minutes from that when
signed; reused and then kept in a page for at most 5 minutes together, it leaves a client 5
of them."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from anb.storage.base import Storage

REUSE_MAX_SECONDS = 150
URLS_KEPT = 10_000
"""Per process: the hot pages' files (a first page of every scope: a few thousand URLs),
~6 MB of S3 URLs. The oldest are dropped first."""


def reuse_seconds(expires_in: int) -> float:
    """How long a URL valid for `expires_in` seconds is handed out again."""
    return min(expires_in / 4, REUSE_MAX_SECONDS)


class ReusedUrls:
    def __init__(
        self,
        storage: Storage,
        *,
        kept: int = URLS_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.kept = kept
        self.clock = clock
        self._urls: OrderedDict[tuple[str, str, int], tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def url(self, key: str, *, expires_in: int, base_url: str) -> str:
        """`storage.url(…)`, or the URL it gave for the same file less than
        `reuse_seconds(expires_in)` ago."""
        entry = (key, base_url, expires_in)
        now = self.clock()
        with self._lock:
            found = self._urls.get(entry)
        if found is not None and now < found[1]:
            return found[0]
        url = self.storage.url(key, expires_in=expires_in, base_url=base_url)
        with self._lock:
            self._urls[entry] = (url, now + reuse_seconds(expires_in))
            self._urls.move_to_end(entry)
            while len(self._urls) > self.kept:
                self._urls.popitem(last=False)
        return url
