"""Rate limits on what attackers and scripts abuse: sign-ups, logins and votes."""

from __future__ import annotations

import hashlib

from anb.cache.base import Cache
from anb.core.errors import TooManyRequests


def enforce(cache: Cache, *, rule: str, subject: str, detail: str) -> None:
    """Count one event of `subject` under `rule` ("COUNT/SECONDS" or "off"); past the count
    within the window, refuse with 429 and the seconds to wait."""
    if rule == "off":
        return
    count, seconds = (int(part) for part in rule.split("/"))
    key = "anb:rate:" + hashlib.sha256(subject.encode()).hexdigest()[:32]
    events, retry_after = cache.hit(key, window_seconds=seconds)
    if events > count:
        raise TooManyRequests(detail.format(seconds=retry_after), retry_after=retry_after)
