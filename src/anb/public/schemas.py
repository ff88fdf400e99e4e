from __future__ import annotations

from pydantic import BaseModel

from anb.core.responses import ThumbnailUrl, Timestamp


class PublicVideo(BaseModel):
    video_id: str
    title: str
    username: str
    city: str
    country: str
    processed_url: str | None
    thumbnail_url: ThumbnailUrl
    votes: int
    processed_at: Timestamp
    voted: bool
    """Whether the caller has voted for it (always false without a token)."""


class RankingEntry(BaseModel):
    position: int
    username: str
    city: str
    votes: int


class VoteRecorded(BaseModel):
    message: str
