"""What the configured backend (embedded or AWS) holds, seen from a test."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from anb.cache import get_cache
from anb.core.db import unit_of_work
from anb.core.text import search_key
from anb.public import service
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
    service.invalidate_views_of(get_cache(), owner)


def add_user(first: str, last: str, city: str, country: str) -> str:
    """A player inserted as signup inserts one (no password to sign in with): their id."""
    with unit_of_work() as session:
        user = User(
            email=f"{uuid.uuid4().hex[:12]}@example.com", password_hash="x",
            first_name=first, last_name=last, city=city, country=country,
            city_key=search_key(city), country_key=search_key(country),
        )  # fmt: skip
        session.add(user)
        session.flush()
        return user.id


def add_public_video(owner_id: str, *, processed_at: datetime | None = None) -> str:
    """A processed video (published now, or at `processed_at`), published as the worker
    publishes it (`invalidate_views_of`): its id."""
    with unit_of_work() as session:
        video = Video(
            owner_id=owner_id, title="Jugada", original_key="k", processed_key="k",
            status=VideoStatus.processed, processed_at=processed_at or datetime.now(UTC),
        )  # fmt: skip
        session.add(video)
        session.flush()
        owner = session.get(User, owner_id)
        video_id = video.id
    service.invalidate_views_of(get_cache(), owner)
    return video_id


def vote(voter_id: str, video_id: str) -> None:
    """A vote as the API records it (and counts it on the boards, after the commit)."""
    with unit_of_work() as session:
        service.vote(session, cache=get_cache(), voter_id=voter_id, video_id=video_id)
