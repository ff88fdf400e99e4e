"""Job queues: in-process (embedded) or SQS."""

from __future__ import annotations

from functools import lru_cache

from anb.core.settings import get_settings
from anb.queue.base import JobQueue
from anb.queue.local import LocalQueue

__all__ = ["JobQueue", "get_queue"]


@lru_cache
def get_queue() -> JobQueue:
    url = get_settings().queue_url
    if url != "local":
        raise NotImplementedError(f"queue {url!r} is not available yet")
    return LocalQueue()
