from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)

from anb.core.responses import ThumbnailUrl, Timestamp
from anb.core.text import NO_NUL
from anb.videos.models import TITLE_MAX_CHARS, VideoStatus


class _OmitsErrorUnlessFailed(BaseModel):
    error: str | None = None

    @model_serializer(mode="wrap")
    def _drop_empty_error(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)  # a model serializes to a dict
        if data.get("error") is None:
            data.pop("error", None)
        return data


class VideoSummary(_OmitsErrorUnlessFailed):
    """One of the player's videos, in their list."""

    video_id: str
    title: str
    status: VideoStatus
    uploaded_at: Timestamp
    processed_at: Timestamp | None
    processed_url: str | None
    thumbnail_url: ThumbnailUrl
    votes: int


class VideoRead(VideoSummary):
    original_url: str | None


class UploadAccepted(BaseModel):
    """A video recorded and its processing enqueued: the answer of an upload through the API
    and of a completed direct upload alike."""

    message: str
    task_id: str
    video_id: str


class VideoDeleted(BaseModel):
    message: str
    video_id: str


class DirectUploadRequest(BaseModel):
    title: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=TITLE_MAX_CHARS, pattern=NO_NUL
        ),
    ]
    size: Annotated[int, Field(gt=0, description="The file's size in bytes")]


class DirectUploadStarted(BaseModel):
    video_id: str
    upload_url: str
    upload_fields: dict[str, str]
    """Send them, then the file as the field `file`, in a multipart/form-data POST."""
    expires_in: int
