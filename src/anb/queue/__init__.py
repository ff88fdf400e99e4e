"""Job queues: in-process (embedded) or SQS."""

from __future__ import annotations

from functools import lru_cache

from anb.core.settings import get_settings
from anb.queue.base import JobQueue
from anb.queue.local import LocalQueue
from anb.queue.sqs import SqsQueue

__all__ = ["JobQueue", "get_queue", "region_of"]


@lru_cache
def get_queue() -> JobQueue:
    url = get_settings().queue_url
    if url == "local":
        return LocalQueue()
    from anb.core.aws import client

    return SqsQueue(url, client("sqs", region_name=region_of(url)))


def region_of(queue_url: str) -> str | None:
    """The region in an SQS URL (https://sqs.REGION.amazonaws.com/…), else None (the default
    region of the AWS configuration, e.g. for a local endpoint)."""
    host = queue_url.split("/")[2] if queue_url.count("/") >= 2 else ""
    parts = host.split(".")
    return parts[1] if len(parts) >= 4 and parts[0] == "sqs" else None
