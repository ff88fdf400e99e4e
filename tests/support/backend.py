"""What the configured backend (embedded or AWS) holds, seen from a test."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from anb.cache import get_cache
from anb.core.db import unit_of_work
from anb.public.service import invalidate_views_of
from anb.queue import get_queue
from anb.queue.local import LocalQueue
from anb.storage import get_storage
from anb.storage.local import LocalStorage
from anb.users.models import User
from anb.videos.models import Video, VideoStatus


def local_only(reason: str) -> None:
    """Skip a test of the embedded storage when the backend is S3."""
    if not isinstance(get_storage(), LocalStorage):
        pytest.skip(f"embedded storage only: {reason}")


def pending_jobs() -> list[dict]:
    """Take the jobs waiting in the configured queue (in-process or SQS)."""
    queue = get_queue()
    if isinstance(queue, LocalQueue):
        return [json.loads(record["body"]) for record in queue.receive(10, wait_seconds=0)]
    messages = queue.client.receive_message(
        QueueUrl=queue.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


def publish(video_id: str) -> None:
    """Mark a video processed as the worker does (its original stands in for the output)."""
    with unit_of_work() as session:
        video = session.get(Video, video_id)
        session.execute(
            update(Video)
            .where(Video.id == video_id)
            .values(
                status=VideoStatus.processed,
                processed_key=video.original_key,
                processed_at=datetime.now(UTC),
            )
        )
        owner = session.get(User, video.owner_id)
    invalidate_views_of(get_cache(), owner)
