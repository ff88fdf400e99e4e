"""Processing one job: claim the video, render it and its poster, publish them — idempotently.

SQS delivers at least once, so a job may arrive twice, late, or for a video deleted
meanwhile. Every attempt claims the video with a fresh token (the last claim wins) and
writes its outputs (the clip and its poster) under keys of its own; publishing is a
conditional update on that token, so exactly one attempt publishes and the others discard
their output.

A poster that cannot be made fails the attempt as a failed render does: it is retried, and
the last attempt marks the video failed. Publishing without it would leave the video
without a poster until someone ran `anb posters` (made for the clips published before
posters), and what stops a poster (ffmpeg missing, the disk full, a clip that cannot be
read back) would have stopped the render too.
"""

from __future__ import annotations

import enum
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import select, update

from anb.cache import Cache
from anb.core.db import rows_affected, unit_of_work, utcnow
from anb.core.settings import Settings
from anb.processing import pipeline, poster
from anb.processing.probe import MediaInfo, UnacceptableVideo, UploadRules, check_upload
from anb.public.service import invalidate_views_of
from anb.storage import Storage
from anb.users.models import User
from anb.videos.models import (
    Video,
    VideoStatus,
    poster_key_for,
    processed_key_for,
    processed_prefix_for,
)

log = logging.getLogger(__name__)

GAVE_UP = "No pudimos procesar este video después de varios intentos. Vuelve a subirlo más tarde."
ORIGINAL_MISSING = "El archivo original del video no está disponible. Vuelve a subirlo."
RETRIABLE = (VideoStatus.uploaded, VideoStatus.processing)


class PoisonMessage(ValueError):
    """The message is not a job at all; retrying cannot help (it ends in the DLQ)."""


class RetryLater(Exception):
    """A passing failure (storage, database, a concurrent attempt): try the job again."""


class ClaimLost(RetryLater):
    """A later attempt claimed the video meanwhile; it will publish, not this one."""


class Outcome(enum.StrEnum):
    processed = "processed"
    failed = "failed"  # the video is marked failed, with a reason for the player
    skipped = "skipped"  # nothing to do: processed, deleted or failed already


@dataclass(frozen=True)
class Job:
    video_id: str
    task_id: str

    @classmethod
    def parse(cls, body: str) -> Job:
        try:
            data = json.loads(body)
            job = cls(video_id=data["video_id"], task_id=data["task_id"])
        except (ValueError, TypeError, KeyError) as exc:
            raise PoisonMessage(f"not a job: {body[:200]!r}") from exc
        if not all(isinstance(value, str) and value for value in (job.video_id, job.task_id)):
            raise PoisonMessage(f"not a job: {body[:200]!r}")
        return job


@dataclass(frozen=True)
class Report:
    outcome: Outcome
    seconds: float = 0.0
    input_bytes: int = 0
    output_bytes: int = 0


@dataclass(frozen=True)
class Worker:
    """What processing needs from outside: settings and adapters."""

    settings: Settings
    storage: Storage
    cache: Cache

    def handle(
        self, job: Job, *, attempt: int, on_progress: Callable[[float], None] | None = None
    ) -> Report:
        """Process one job. Permanent problems mark the video failed and return; passing ones
        raise `RetryLater` (or the underlying error) until the last attempt, which gives up
        and marks the video failed."""
        try:
            return self._process(job, on_progress)
        except ClaimLost:
            if attempt < self.settings.max_attempts:
                raise
            log.warning("another attempt owns the video; leaving it to that attempt")
            return Report(Outcome.skipped)
        except Exception as exc:
            if attempt < self.settings.max_attempts:
                raise
            log.exception("giving up after %d attempts", attempt)
            marked = _mark_failed(job, GAVE_UP, exc)
            return Report(Outcome.failed if marked else Outcome.skipped)

    def _process(self, job: Job, on_progress: Callable[[float], None] | None) -> Report:
        started = time.monotonic()
        claim = _claim(job)
        if claim is None:
            return Report(Outcome.skipped)
        with tempfile.TemporaryDirectory(dir=self._scratch(), prefix="job-") as scratch:
            source, output = Path(scratch) / "original.mp4", Path(scratch) / "processed.mp4"
            if not self._fetch(claim, source):
                return Report(_fail_or_skip(job, ORIGINAL_MISSING))
            try:
                info = check_upload(source, UploadRules.from_settings(self.settings))
            except UnacceptableVideo as refused:
                return Report(_fail_or_skip(job, refused.detail.removeprefix("video_file: ")))
            image = Path(scratch) / "poster.jpg"
            self._render(source, output, image, info, on_progress)
            sizes = {"input_bytes": source.stat().st_size, "output_bytes": output.stat().st_size}
            outputs = Outputs(
                clip=processed_key_for(job.video_id, claim.token),
                poster=poster_key_for(job.video_id, claim.token),
            )
            self._store({outputs.clip: output, outputs.poster: image})
            try:
                outcome = self._publish(job, claim, outputs)
            except ClaimLost:
                raise
            except Exception:
                self.storage.delete(*outputs)  # never published: no file may stay behind
                raise
            return Report(outcome, seconds=time.monotonic() - started, **sizes)

    def _render(
        self,
        source: Path,
        output: Path,
        image: Path,
        info: MediaInfo,
        on_progress: Callable[[float], None] | None,
    ) -> None:
        """The clip, then its poster, within one budget of ffmpeg time per job (the queue's
        visibility timeout counts on it)."""
        deadline = time.monotonic() + self.settings.job_timeout_seconds
        pipeline.render(
            source, output, info,
            on_progress=on_progress, timeout_seconds=self.settings.job_timeout_seconds,
        )  # fmt: skip
        poster.make_poster(output, image, info, timeout_seconds=deadline - time.monotonic())

    def _store(self, files: dict[str, Path]) -> None:
        """Store every file under its key, or none: a failure deletes those already stored."""
        stored: list[str] = []
        try:
            for key, path in files.items():
                self.storage.put_file(path, key)
                stored.append(key)
        except Exception:
            if stored:
                self.storage.delete(*stored)
            raise

    def _scratch(self) -> Path:
        self.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.settings.tmp_dir

    def _fetch(self, claim: Claim, target: Path) -> bool:
        if self.storage.exists(claim.original_key):
            self.storage.get_file(claim.original_key, target)
            return True
        return False

    def _publish(self, job: Job, claim: Claim, outputs: Outputs) -> Outcome:
        with unit_of_work() as session:
            published = rows_affected(
                session,
                update(Video)
                .where(
                    Video.id == job.video_id,
                    Video.claim_token == claim.token,
                    Video.status == VideoStatus.processing,
                )
                .values(
                    status=VideoStatus.processed,
                    processed_key=outputs.clip,
                    thumbnail_key=outputs.poster,
                    processed_at=utcnow(),
                    claim_token=None,
                    error=None,
                ),
            )
            if published:
                owner = session.get(User, claim.owner_id)
            else:
                status = session.scalar(select(Video.status).where(Video.id == job.video_id))
        if published:
            if owner is not None:
                invalidate_views_of(self.cache, owner)
            self._remove_other_outputs(job.video_id, keep=set(outputs))
            return Outcome.processed
        self.storage.delete(*outputs)  # deleted meanwhile, or another attempt owns the video
        if status is None or status in (VideoStatus.processed, VideoStatus.failed):
            return Outcome.skipped
        raise ClaimLost("another attempt claimed this video; trying again later")

    def _remove_other_outputs(self, video_id: str, *, keep: set[str]) -> None:
        """Delete outputs of attempts that died between storing and publishing."""
        stale = [
            key for key in self.storage.keys(processed_prefix_for(video_id)) if key not in keep
        ]
        if stale:
            log.info("removing %d output(s) of attempts that never published", len(stale))
            self.storage.delete(*stale)


class Outputs(NamedTuple):
    """The storage keys of an attempt's outputs."""

    clip: str
    poster: str


@dataclass(frozen=True)
class Claim:
    token: str
    original_key: str
    owner_id: str


def _claim(job: Job) -> Claim | None:
    """Take the video for this attempt, or None when there is nothing to do."""
    token = str(uuid.uuid4())
    with unit_of_work() as session:
        claimed = rows_affected(
            session,
            update(Video)
            .where(
                Video.id == job.video_id,
                Video.task_id == job.task_id,
                Video.status.in_(RETRIABLE),
            )
            .values(status=VideoStatus.processing, claim_token=token),
        )
        video = session.get(Video, job.video_id) if claimed else None
    if video is None:
        log.info("nothing to do: the video is processed, failed or deleted")
        return None
    return Claim(token=token, original_key=video.original_key, owner_id=video.owner_id)


def _fail_or_skip(job: Job, reason: str) -> Outcome:
    return Outcome.failed if _mark_failed(job, reason) else Outcome.skipped


def _mark_failed(job: Job, reason: str, cause: BaseException | None = None) -> bool:
    """Mark the video failed with a reason for the player, unless it is finished already."""
    log.warning("video failed: %s", reason, exc_info=cause)
    with unit_of_work() as session:
        marked = rows_affected(
            session,
            update(Video)
            .where(Video.id == job.video_id, Video.status.in_(RETRIABLE))
            .values(status=VideoStatus.failed, error=reason, claim_token=None),
        )
    return bool(marked)
