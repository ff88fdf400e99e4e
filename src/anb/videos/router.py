from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request, status

from anb.core.concurrency import Overloaded, storage_pool
from anb.core.db import run_db
from anb.core.deps import SettingsDep, VideoId
from anb.core.errors import InvalidInput
from anb.core.multipart import MalformedForm, StreamedForm, read_request_form
from anb.core.responses import error_responses
from anb.core.settings import Settings
from anb.processing.probe import UploadRules
from anb.queue.deps import QueueDep
from anb.storage import Storage
from anb.storage.deps import FileUrls, StorageDep
from anb.users.deps import CurrentCaller
from anb.videos import service
from anb.videos.models import TITLE_MAX_CHARS, Video
from anb.videos.schemas import (
    DirectUploadRequest,
    DirectUploadStarted,
    UploadAccepted,
    VideoDeleted,
    VideoRead,
    VideoSummary,
)

router = APIRouter(prefix="/api/videos", tags=["videos"])

UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["video_file", "title"],
                "properties": {
                    "video_file": {"type": "string", "format": "binary"},
                    "title": {"type": "string", "minLength": 1, "maxLength": TITLE_MAX_CHARS},
                },
            }
        }
    },
}


@router.post(
    "/upload",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadAccepted,
    responses=error_responses(400, 401, 503),
    openapi_extra={"requestBody": UPLOAD_BODY},
    summary="Upload a skill video (MP4, 20-60 s, 1080p or better, up to 100 MB)",
)
async def upload_video(
    request: Request,
    caller: CurrentCaller,
    settings: SettingsDep,
    storage: StorageDep,
    queue: QueueDep,
) -> UploadAccepted:
    form = await _upload_form(request, settings)
    try:
        if "video_file" not in form.files:
            raise InvalidInput(f"video_file: campo requerido. {UPLOAD_FIELDS}")
        title = service.clean_title(form.fields.get("title"))
        await run_db(caller.user)  # a deleted account stores nothing
        video = await storage_pool().run(
            lambda: service.store_upload(
                form.files["video_file"],
                owner_id=caller.user_id,
                title=title,
                rules=UploadRules.from_settings(settings),
                storage=storage,
            )
        )
    finally:
        form.discard()
    async with _deleted_on_failure(storage, video.original_key):
        await run_db(
            lambda session: service.record_upload(session, video, storage=storage, queue=queue)
        )
    return UploadAccepted(
        message="Video subido correctamente. Procesamiento en curso.",
        task_id=video.task_id,
        video_id=video.id,
    )


UPLOAD_FIELDS = "Envía el video MP4 en el campo video_file y el título en title."


async def _upload_form(request: Request, settings: Settings) -> StreamedForm:
    """The upload's form. One that cannot be read names the fields expected: the usual cause
    is a video sent under another name (`file`), refused as an unexpected file once it passes
    1 MiB, so the player never learns that `video_file` was missing."""
    try:
        return await read_request_form(request, file_field="video_file", settings=settings)
    except MalformedForm as exc:
        raise InvalidInput(f"video_file: {exc.detail} {UPLOAD_FIELDS}") from exc


@asynccontextmanager
async def _deleted_on_failure(storage: Storage, key: str) -> AsyncIterator[None]:
    """Delete a stored file if what follows fails before it is recorded (e.g. refused with
    503 because the database pool is saturated)."""
    try:
        yield
    except Overloaded:
        await anyio.to_thread.run_sync(storage.delete, key)
        raise


@router.post(
    "/uploads",
    status_code=status.HTTP_201_CREATED,
    response_model=DirectUploadStarted,
    responses=error_responses(400, 401, 429, 503),
    summary="Start a direct upload to storage (for large files and API Gateway)",
)
async def start_direct_upload(
    data: DirectUploadRequest,
    request: Request,
    caller: CurrentCaller,
    settings: SettingsDep,
    storage: StorageDep,
) -> DirectUploadStarted:
    """Answers where to POST the file: `upload_url` with the `upload_fields` and then the
    file as `file` (multipart/form-data), before `expires_in` seconds pass. Then call
    `/api/videos/{video_id}/complete`. The file is judged by the worker, with the same
    rules as `/api/videos/upload`; a broken file ends the video `failed` with an `error`."""
    base_url = settings.base_url_for(str(request.base_url))
    granted = await run_db(
        lambda session: service.start_direct_upload(
            session,
            owner=caller.user(session),
            title=data.title,
            size=data.size,
            max_bytes=settings.upload_max_bytes,
            expires_in=settings.url_ttl_seconds,
            base_url=base_url,
            storage=storage,
            most_open=settings.max_open_uploads,
        )
    )
    return DirectUploadStarted(**vars(granted))


@router.post(
    "/{video_id}/complete",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    responses=error_responses(400, 401, 403, 404, 503),
    summary="Finish a direct upload: the video is recorded and its processing enqueued",
)
async def complete_direct_upload(
    video_id: VideoId,
    caller: CurrentCaller,
    settings: SettingsDep,
    storage: StorageDep,
    queue: QueueDep,
) -> UploadAccepted:
    pending = await run_db(
        lambda session: service.pending_upload(
            session, owner=caller.user(session), video_id=video_id
        )
    )
    if isinstance(pending, Video):
        video = pending
    else:
        size = await storage_pool().run(
            lambda: service.move_uploaded_file(
                pending, max_bytes=settings.upload_max_bytes, storage=storage
            )
        )
        video = await run_db(
            lambda session: service.record_completed_upload(
                session,
                pending,
                owner=caller.user(session),
                size=size,
                storage=storage,
                queue=queue,
            )
        )
    return UploadAccepted(
        message="Video subido correctamente. Procesamiento en curso.",
        task_id=video.task_id,
        video_id=video.id,
    )


@router.get(
    "",
    summary="List my videos, newest first",
    response_model=list[VideoSummary],
    responses=error_responses(401, 503),
)
async def list_my_videos(caller: CurrentCaller, urls: FileUrls) -> list[VideoSummary]:
    """The signed-in player's videos, newest first."""
    videos = await run_db(lambda session: service.list_videos(session, owner_id=caller.user_id))
    return [VideoSummary(**_common_fields(video), **_output_urls(video, urls)) for video in videos]


@router.get(
    "/{video_id}",
    summary="One of my videos, with its download URLs",
    response_model=VideoRead,
    responses=error_responses(401, 403, 404, 503),
)
async def get_my_video(video_id: VideoId, caller: CurrentCaller, urls: FileUrls) -> VideoRead:
    video = await run_db(
        lambda session: service.get_own_video(
            session, owner=caller.user(session), video_id=video_id
        )
    )
    return VideoRead(
        **_common_fields(video),
        original_url=urls(video.original_key),
        **_output_urls(video, urls),
    )


@router.delete(
    "/{video_id}",
    summary="Delete one of my videos (until it is published)",
    response_model=VideoDeleted,
    responses=error_responses(400, 401, 403, 404, 503),
)
async def delete_my_video(
    video_id: VideoId, caller: CurrentCaller, storage: StorageDep
) -> VideoDeleted:
    """Allowed until the video is published (processed)."""
    await run_db(
        lambda session: service.delete_video(
            session, owner=caller.user(session), video_id=video_id, storage=storage
        )
    )
    return VideoDeleted(message="El video ha sido eliminado exitosamente.", video_id=video_id)


def _output_urls(video: Video, urls: Callable[[str | None], str | None]) -> dict[str, str | None]:
    """The signed URLs of the processed clip and its poster (null until processed)."""
    return {"processed_url": urls(video.processed_key), "thumbnail_url": urls(video.thumbnail_key)}


def _common_fields(video: Video) -> dict[str, Any]:
    return {
        "video_id": video.id,
        "title": video.title,
        "status": video.status,
        "error": video.error,
        "uploaded_at": video.uploaded_at,
        "processed_at": video.processed_at,
        "votes": video.votes,
    }
