"""How long a failed job waits before its next attempt."""

from __future__ import annotations

import random


def retry_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with "equal jitter" (AWS Architecture Blog, "Exponential Backoff
    And Jitter", 2015): half of min(cap, base x 2^(attempt-1)) plus a random share of the
    other half, so jobs that failed together (a storage outage) do not all come back at
    the same moment, and none comes back sooner than half its backoff."""
    growth: int = 2 ** max(0, attempt - 1)  # typeshed types int ** int as Any (a power < 0)
    ceiling = min(cap, base * growth)
    return ceiling / 2 + random.uniform(0, ceiling / 2)
