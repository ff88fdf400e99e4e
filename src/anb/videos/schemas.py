from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from anb.core.responses import ThumbnailUrl, Timestamp
from anb.core.text import NO_NUL
from anb.videos.models import TITLE_MAX_CHARS, VideoStatus


class _OmitsErrorUnlessFailed(BaseModel):
    # `exclude_if` rather than a wrapping model serializer: that one typed the answer as
    # dict[str, Any], and OpenAPI showed the videos' shapes as bare objects.
    error: Annotated[
        str | None,
        Field(
            description="Why processing failed, in words for the player (only when failed)",
            exclude_if=lambda error: error is None,
        ),
    ] = None


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
