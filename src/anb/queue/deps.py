"""The job queue as a FastAPI dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from anb.queue import JobQueue, get_queue


async def _queue() -> JobQueue:
    return get_queue()


QueueDep = Annotated[JobQueue, Depends(_queue)]
