"""VideoService: a player's uploads, their list, one video, deletion."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from anb.core.db import after_commit, in_session, on_rollback, rows_affected, utcnow
from anb.core.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unavailable,
)
from anb.core.text import megabytes
from anb.processing.probe import UploadRules, check_upload
from anb.queue import JobQueue
from anb.storage import Storage
from anb.users.models import User, new_id
from anb.users.service import AccountGone
from anb.videos.models import (
    TITLE_MAX_CHARS,
    UploadSession,
    Video,
    VideoStatus,
    incoming_key_for,
    original_key_for,
)

log = logging.getLogger(__name__)


class VideoNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Video no encontrado.")


class NotYourVideo(Forbidden):
    def __init__(self) -> None:
        super().__init__("No tienes permiso sobre este video: pertenece a otro jugador.")


class VideoAlreadyPublished(InvalidInput):
    def __init__(self) -> None:
        super().__init__(
            "El video ya fue procesado y publicado para votación; no se puede eliminar."
        )


class EnqueueFailed(Unavailable):
    def __init__(self) -> None:
        super().__init__("No se pudo encolar el procesamiento del video; inténtalo de nuevo.")


class StorageFailed(Unavailable):
    def __init__(self) -> None:
        super().__init__("No se pudo guardar el video; inténtalo de nuevo en unos minutos.")


def clean_title(title: str | None) -> str:
    cleaned = (title or "").strip()
    if not cleaned:
        raise InvalidInput(f"title: campo requerido (texto de 1 a {TITLE_MAX_CHARS} caracteres).")
    if "\x00" in cleaned:
        raise InvalidInput("title: contiene caracteres no válidos.")
    if len(cleaned) > TITLE_MAX_CHARS:
        raise InvalidInput(f"title: máximo {TITLE_MAX_CHARS} caracteres.")
    return cleaned


def store_upload(
    source: Path, *, owner_id: str, title: str, rules: UploadRules, storage: Storage
) -> Video:
    """Validate the file and store it as the original of a new video, not yet recorded
    (`record_upload` does that; if it cannot, the caller deletes the original)."""
    check_upload(source, rules)
    video = Video(id=new_id(), owner_id=owner_id, title=title)
    video.original_key = original_key_for(video.id)
    video.original_bytes = source.stat().st_size
    with _storage_failures(video.id):
        storage.put_file(source, video.original_key)
    return video


def record_upload(session: Session, video: Video, *, storage: Storage, queue: JobQueue) -> Video:
    """Record a stored upload and enqueue its processing job. Whatever fails, nothing
    half-done stays behind: no object without a row, no row without a job."""
    return _record_and_enqueue(session, video, storage=storage, queue=queue)


@contextmanager
def _storage_failures(video_id: str) -> Iterator[None]:
    """A storage that fails is a 503 for the client (StorageFailed), never a 500."""
    try:
        yield
    except DomainError:
        raise
    except Exception as exc:
        log.exception("storage failed", extra={"video_id": video_id})
        raise StorageFailed() from exc


def _record_and_enqueue(
    session: Session, video: Video, *, storage: Storage, queue: JobQueue
) -> Video:
    """Record the video (its original is stored already) and send its job once that is
    committed. Undone if either fails: a unit that does not commit deletes the original; a
    job that cannot be sent removes the video again (`EnqueueFailed`, 503)."""
    video.task_id = new_id()
    session.add(video)
    session.flush()
    on_rollback(session, lambda: storage.delete(video.original_key))
    job = {"video_id": video.id, "task_id": video.task_id}
    after_commit(session, lambda: _enqueue_or_remove(job, storage=storage, queue=queue))
    return video


def _enqueue_or_remove(job: dict[str, str], *, storage: Storage, queue: JobQueue) -> None:
    try:
        queue.send(job)
    except Exception as exc:
        log.exception("enqueue failed", extra={"video_id": job["video_id"]})
        in_session(lambda session: _remove_by_id(session, storage, job["video_id"]))
        raise EnqueueFailed() from exc


@dataclass(frozen=True)
class DirectUpload:
    video_id: str
    upload_url: str
    upload_fields: dict[str, str]
    expires_in: int


def start_direct_upload(
    session: Session,
    *,
    owner: User,
    title: str,
    size: int,
    max_bytes: int,
    expires_in: int,
    base_url: str,
    storage: Storage,
    most_open: int,
) -> DirectUpload:
    """Grant a direct upload to storage (an S3 presigned POST, or the API's signed form);
    a player may hold `most_open` grants whose forms have not expired."""
    if size > max_bytes:
        raise InvalidInput(f"size: el archivo supera el tamaño máximo de {megabytes(max_bytes)}.")
    _forget_abandoned_uploads(session, owner=owner, storage=storage)
    _check_open_uploads(session, owner=owner, expires_in=expires_in, most=most_open)
    upload = UploadSession(video_id=new_id(), owner_id=owner.id, title=title, size=size)
    url, fields = storage.upload_form(
        incoming_key_for(upload.video_id),
        max_bytes=size,  # the declared size is the most the storage will accept
        expires_in=expires_in,
        base_url=base_url,
    )
    session.add(upload)
    return DirectUpload(upload.video_id, url, fields, expires_in)


@dataclass(frozen=True)
class PendingUpload:
    video_id: str
    title: str
    size: int  # as declared when the upload was granted


def pending_upload(session: Session, *, owner: User, video_id: str) -> PendingUpload | Video:
    """The direct upload to complete, or the video it already became (completing twice
    answers the same job)."""
    upload = session.get(UploadSession, video_id)
    if upload is None:
        return get_own_video(session, owner=owner, video_id=video_id)
    if upload.owner_id != owner.id:
        raise NotYourVideo()
    return PendingUpload(upload.video_id, upload.title, upload.size)


def move_uploaded_file(upload: PendingUpload, *, max_bytes: int, storage: Storage) -> int:
    """Move the uploaded file to where originals are kept; its size. The worker judges its
    content. A concurrent completion of the same upload (a double click, a client's retry)
    may have moved it first: then the original it left is the answer."""
    incoming, original = incoming_key_for(upload.video_id), original_key_for(upload.video_id)
    with _storage_failures(upload.video_id):
        size = storage.size(incoming)
        if size is None and (moved := storage.size(original)) is not None:
            return moved
    if size is None:
        raise InvalidInput("El archivo aún no se ha subido: súbelo antes de completar la carga.")
    if size > min(max_bytes, upload.size):
        storage.delete(incoming)
        raise InvalidInput(f"El archivo supera el tamaño declarado ({upload.size} bytes).")
    with _storage_failures(upload.video_id):
        try:
            storage.move(incoming, original)
        except Exception:
            if storage.size(original) != size:  # not a concurrent completion's move
                raise
    return size


def record_completed_upload(
    session: Session,
    upload: PendingUpload,
    *,
    owner: User,
    size: int,
    storage: Storage,
    queue: JobQueue,
) -> Video:
    """Turn a moved direct upload into a video and enqueue it. The grant is claimed first:
    of concurrent completions one records the video, the others answer the video it
    recorded (on PostgreSQL their claim waits for the first's commit; SQLite runs them in
    turn)."""
    claim = delete(UploadSession).where(UploadSession.video_id == upload.video_id)
    if rows_affected(session, claim) == 0:
        return get_own_video(session, owner=owner, video_id=upload.video_id)
    video = Video(id=upload.video_id, owner_id=owner.id, title=upload.title, original_bytes=size)
    video.original_key = original_key_for(upload.video_id)
    return _record_and_enqueue(session, video, storage=storage, queue=queue)


ABANDONED_AFTER = timedelta(days=2)


class TooManyOpenUploads(TooManyRequests):
    def __init__(self, most: int, retry_after: int) -> None:
        super().__init__(
            f"Tienes {most} cargas directas abiertas: complétalas, o espera {retry_after} s a "
            "que caduque la más antigua.",
            retry_after=retry_after,
        )


def _check_open_uploads(session: Session, *, owner: User, expires_in: int, most: int) -> None:
    """Refuse a grant past `most` whose upload forms are still usable (each may bring a
    file of up to the size limit)."""
    usable_since = utcnow() - timedelta(seconds=expires_in)
    open_grants = session.scalars(
        select(UploadSession.created_at)
        .where(UploadSession.owner_id == owner.id, UploadSession.created_at > usable_since)
        .order_by(UploadSession.created_at)
    ).all()
    if len(open_grants) >= most:
        oldest_expires = open_grants[-most] + timedelta(seconds=expires_in)
        raise TooManyOpenUploads(most, max(1, int((oldest_expires - utcnow()).total_seconds())))


def sweep_abandoned_uploads(session: Session, *, storage: Storage) -> int:
    """Forget every player's abandoned direct uploads and their files; how many. (S3
    buckets also expire the files by a lifecycle rule; the embedded storage has only this.)"""
    return _forget_abandoned_uploads(session, storage=storage)


def _forget_abandoned_uploads(
    session: Session, *, storage: Storage, owner: User | None = None
) -> int:
    """Drop the direct uploads (of `owner`, or everyone's) granted over ABANDONED_AFTER ago
    and never completed, with their files once that is committed; how many."""
    query = select(UploadSession).where(UploadSession.created_at < utcnow() - ABANDONED_AFTER)
    if owner is not None:
        query = query.where(UploadSession.owner_id == owner.id)
    stale = session.scalars(query).all()
    for upload in stale:
        session.delete(upload)
    if stale:
        keys = [incoming_key_for(upload.video_id) for upload in stale]
        after_commit(session, lambda: _delete_files(storage, keys))
    return len(stale)


def list_videos(session: Session, *, owner_id: str) -> list[Video]:
    """The player's videos, newest first, read with the account in one query:
    `AccountGone` (401) if the account no longer exists."""
    query = (
        select(User.id, Video)
        .outerjoin(Video, Video.owner_id == User.id)
        .where(User.id == owner_id)
        .order_by(Video.uploaded_at.desc(), Video.id)
    )
    rows = session.execute(query).all()
    if not rows:
        raise AccountGone()
    return [video for _, video in rows if video is not None]


def unfinished_jobs(session: Session) -> list[dict[str, str]]:
    """Jobs of the videos still waiting for processing (left by a stopped worker)."""
    query = (
        select(Video.id, Video.task_id)
        .where(Video.status.in_((VideoStatus.uploaded, VideoStatus.processing)))
        .order_by(Video.uploaded_at)
    )
    return [
        {"video_id": video_id, "task_id": task_id} for video_id, task_id in session.execute(query)
    ]


def get_own_video(session: Session, *, owner: User, video_id: str) -> Video:
    video = session.get(Video, video_id)
    if video is None:
        raise VideoNotFound()
    if video.owner_id != owner.id:
        raise NotYourVideo()
    return video


def delete_video(session: Session, *, owner: User, video_id: str, storage: Storage) -> None:
    video = get_own_video(session, owner=owner, video_id=video_id)
    if video.status == VideoStatus.processed:
        raise VideoAlreadyPublished()
    if not _remove(session, storage, video):  # a worker published it meanwhile
        raise VideoAlreadyPublished()


def _remove(session: Session, storage: Storage, video: Video) -> bool:
    """Delete the row unless it was published meanwhile, and its files once that is
    committed (its URLs then lead nowhere). A worker still busy with it finds the row gone
    and discards its output."""
    unpublished = (Video.id == video.id) & (Video.status != VideoStatus.processed)
    deleted = rows_affected(session, delete(Video).where(unpublished))
    if not deleted:
        return False
    session.expunge(video)
    keys = [key for key in (video.original_key, video.processed_key, video.thumbnail_key) if key]
    after_commit(session, lambda: _delete_files(storage, keys, video_id=video.id))
    return True


def _remove_by_id(session: Session, storage: Storage, video_id: str) -> None:
    video = session.get(Video, video_id)
    if video is not None:
        _remove(session, storage, video)


def _delete_files(storage: Storage, keys: list[str], *, video_id: str | None = None) -> None:
    """After the rows are gone: a file left behind costs storage, not correctness (S3's
    lifecycle rules and the sweeper catch some), so it is logged, not raised."""
    try:
        storage.delete(*keys)
    except Exception:
        log.exception("could not delete the files of deleted rows", extra={"video_id": video_id})
