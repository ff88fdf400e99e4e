"""Posters for the clips published before the worker made them (`anb posters`).

Each processed video without a poster gets one made from its published clip, at the moments
the worker would have tried (`poster.make_poster_of_published`), stored beside the clip
under a key of its own, and published by a conditional update: a video deleted, re-published
or given a poster meanwhile keeps what it has, and the image made for it is deleted. Runs
again safely (a video that has a poster is not selected) and in parallel with the worker.
The public list shows the poster when its page is next refreshed (within
`LIST_PAGE_FRESH_SECONDS`, as for a vote); a player's own list and video are read uncached.
"""

from __future__ import annotations

import enum
import logging
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from anb.core.db import in_session, rows_affected, unit_of_work
from anb.core.settings import Settings
from anb.processing import pipeline, poster
from anb.processing.probe import UnacceptableVideo
from anb.storage import Storage
from anb.videos.models import Video, VideoStatus, poster_key_for

log = logging.getLogger(__name__)
BATCH = 100  # videos read from the database at a time


class Backfilled(enum.Enum):
    made = "made"
    clip_missing = "clip missing"  # the published clip is not in storage
    failed = "failed"  # ffmpeg could not make a poster of it
    changed = "changed meanwhile"  # deleted, re-published or given a poster during the run


def backfill_posters(
    settings: Settings,
    storage: Storage,
    *,
    on_video: Callable[[str, Backfilled], None] | None = None,
) -> Counter[Backfilled]:
    """Make the poster of every processed video that has none; how many of each outcome.
    `on_video(video_id, outcome)` is told of each video as it is done."""
    outcomes: Counter[Backfilled] = Counter()
    after = ""
    while batch := in_session(partial(_without_poster, after=after)):
        for video_id, clip_key in batch:
            outcome = _backfill(settings, storage, video_id, clip_key)
            outcomes[outcome] += 1
            if on_video:
                on_video(video_id, outcome)
        after = batch[-1][0]
    return outcomes


def _without_poster(session: Session, after: str) -> list[tuple[str, str]]:
    """The next `BATCH` processed videos without a poster (id, clip key), by id."""
    rows = session.execute(
        select(Video.id, Video.processed_key)
        .where(
            Video.status == VideoStatus.processed,
            Video.thumbnail_key.is_(None),
            Video.processed_key.is_not(None),
            Video.id > after,
        )
        .order_by(Video.id)
        .limit(BATCH)
    )
    return [(video_id, clip_key) for video_id, clip_key in rows if clip_key]


def _backfill(settings: Settings, storage: Storage, video_id: str, clip_key: str) -> Backfilled:
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    # `job-`: the sweeper removes what a killed run leaves, as it does for the worker's jobs
    with tempfile.TemporaryDirectory(dir=settings.tmp_dir, prefix="job-") as scratch:
        clip, image = Path(scratch) / "clip.mp4", Path(scratch) / "poster.jpg"
        if not storage.exists(clip_key):
            log.warning("video %s: its published clip %s is not in storage", video_id, clip_key)
            return Backfilled.clip_missing
        storage.get_file(clip_key, clip)
        try:
            poster.make_poster_of_published(
                clip, image, timeout_seconds=settings.job_timeout_seconds
            )
        except (pipeline.PipelineFailed, UnacceptableVideo) as exc:  # both say why in str()
            log.warning("video %s: no poster could be made: %s", video_id, exc)
            return Backfilled.failed
        poster_key = poster_key_for(video_id, uuid.uuid4().hex)
        storage.put_file(image, poster_key)
    return _publish(storage, video_id, clip_key, poster_key)


def _publish(storage: Storage, video_id: str, clip_key: str, poster_key: str) -> Backfilled:
    """Set the poster if the video still shows the clip it was made from and has none;
    the image is deleted when it is not published (or the database fails)."""
    try:
        with unit_of_work() as session:
            published = rows_affected(
                session,
                update(Video)
                .where(
                    Video.id == video_id,
                    Video.status == VideoStatus.processed,
                    Video.processed_key == clip_key,
                    Video.thumbnail_key.is_(None),
                )
                .values(thumbnail_key=poster_key),
            )
    except Exception:
        storage.delete(poster_key)
        raise
    if not published:
        storage.delete(poster_key)
        return Backfilled.changed
    return Backfilled.made
